"""Rules and transforms: each kind, validation errors that point at the rule, inversion."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inspector.errors import PlanError
from inspector.mapping import (
    apply_rules,
    builtin_rule_sets,
    invert_rules,
    load_rules,
    rules_from_list,
    substring_table,
)
from inspector.mapping.transforms import (
    Cast,
    Concat,
    Pad,
    Reshape,
    Select,
    Slice,
    Split,
    Transpose,
    chain_inverse,
    chain_shape,
)


def run(rules: list[dict[str, object]], name: str, label: str = "") -> tuple[str, ...]:
    return apply_rules(rules_from_list(rules), name, label).names


def test_each_rule_kind() -> None:
    assert run([{"rename": {"from": "a.w", "to": "b.w"}}], "a.w") == ("b.w",)
    assert run([{"strip_prefix": "module."}], "module.enc.w") == ("enc.w",)
    assert run([{"add_prefix": "model."}], "enc.w") == ("model.enc.w",)
    # both names, the first the target has wins: a head model's body or the bare base model
    assert run([{"optional_prefix": "hubert."}], "hubert.enc.w") == ("hubert.enc.w", "enc.w")
    assert run([{"optional_prefix": "hubert."}], "lm_head.w") == ("lm_head.w",)
    assert run([{"optional_prefix": "hubert."}], "hubert.") == ("hubert.",)
    assert run(
        [{"suffix": {"from": "weight_g", "to": "parametrizations.weight.original0"}}], "c.weight_g"
    ) == ("c.parametrizations.weight.original0",)
    assert run(
        [
            {
                "template": {
                    "from": "encoder.layers.*.ffn1.w_1",
                    "to": "encoder.layers.*.ffn1.intermediate_dense",
                }
            }
        ],
        "encoder.layers.12.ffn1.w_1.bias",
    ) == ("encoder.layers.12.ffn1.intermediate_dense.bias",)
    assert run(
        [{"template": {"from": "blocks.{layer}.{part}", "to": "layers.{layer}.{part}"}}],
        "blocks.3.attn.w",
    ) == ("layers.3.attn.w",)
    assert run(
        [{"regex": {"pattern": r"conv_layers\.(\d+)\.0\.(\w+)", "to": r"conv_layers.\1.conv.\2"}}],
        "conv_layers.4.0.weight",
    ) == ("conv_layers.4.conv.weight",)
    assert run(
        [
            {
                "substring": {
                    "key": "self_attn.linear_q",
                    "to": "enc.layers.*.q",
                    "suffixes": ["weight", "bias"],
                }
            }
        ],
        "w2v.encoder.layers.7.self_attn.linear_q.bias",
    ) == ("enc.layers.7.q.bias",)
    res = apply_rules(rules_from_list([{"drop": "optimizer.*"}]), "optimizer.x")
    assert res.dropped
    assert res.fired == ("rules[0]",)
    assert run([{"rename": {"from": "a", "to": "b"}, "source": "enc"}], "a", "dec") == ("a",)


def test_pipeline_and_first_match_table() -> None:
    rules = [
        {"strip_prefix": "module."},
        {
            "table": [
                {"substring": {"key": "ffn", "to": "mlp"}},
                {"substring": {"key": "mlp", "to": "ffn"}},
            ]
        },
    ]
    res = apply_rules(rules_from_list(rules), "module.x.ffn.w")
    assert res.names == ("mlp.w",)
    assert res.fired == ("rules[0]", "rules[1].table[0]")


def test_substring_suffix_alternatives_and_star_needs_an_index() -> None:
    table = substring_table(
        {"pos_conv.0": "pos_conv_embed.conv", "linear_q": "layers.*.q"},
        {"weight_g": ["weight_g", "parametrizations.weight.original0"], "bias": ["bias"]},
    )
    r = apply_rules([table], "encoder.pos_conv.0.weight_g")
    assert r.names == (
        "pos_conv_embed.conv.weight_g",
        "pos_conv_embed.conv.parametrizations.weight.original0",
    )
    assert apply_rules([table], "encoder.pos_conv.0.weight_x").names == (
        "encoder.pos_conv.0.weight_x",
    )
    assert apply_rules([table], "linear_q.bias").names == (
        "linear_q.bias",
    )  # no layer index before it


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        (
            [{"rename": {"from": "a"}}],
            r"rules\[0\]\.rename: expected a mapping with keys \['from', 'to'\]",
        ),
        (
            [{"strip_prefix": "m."}, {"template": {"from": "a.*", "to": "b.{x}"}}],
            r"rules\[1\]\.template: 'to' uses placeholders \['x'\]",
        ),
        ([{"regex": {"pattern": "a(", "to": "b"}}], r"rules\[0\]\.regex: bad regular expression"),
        (
            [{"regex": {"pattern": "(a)", "to": r"\2"}}],
            r"rules\[0\]\.regex: 'to' refers to group 2",
        ),
        (
            [{"rename": {"from": "a", "to": "b"}, "drop": "x"}],
            r"rules\[0\]: needs exactly one rule kind",
        ),
        ([{"frobnicate": 1}], r"rules\[0\]: unknown key 'frobnicate'"),
        (
            [{"table": [{"keep": "x"}, {"substring": {"key": "a"}}]}],
            r"rules\[0\]\.table\[1\]\.substring",
        ),
        (
            [{"rename": {"from": "a", "to": "b"}, "transforms": [{"op": "pad", "init": "random"}]}],
            r"rules\[0\]\.transforms\[0\]: pad: init must be one of",
        ),
        ("not a list", "expected a list of rules"),
    ],
)
def test_validation_points_at_the_rule(rules, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(PlanError, match=message):
        rules_from_list(rules)


def test_builtin_rule_sets_load_and_files_too(tmp_path) -> None:  # type: ignore[no-untyped-def]
    assert set(builtin_rule_sets()) == {
        "ddp",
        "lightning",
        "nemo",
        "nemo-encoder",
        "nemo-encoder-export",
        "weight-norm",
        "wav2vec2-conformer-fairseq-to-hf",
        "wav2vec2-fairseq-to-hf",
        "hubert-fairseq-to-hf",
        "whisper-openai-to-hf",
        "whisper-hf-to-openai",
        "whisper-hf-to-wenet",
        "whisper-wenet-to-hf",
    }
    for name in builtin_rule_sets():
        assert load_rules(name)
    w2v = load_rules("wav2vec2-conformer-fairseq-to-hf")
    assert len(w2v[0].rules) == 35  # type: ignore[attr-defined]
    path = tmp_path / "r.yaml"
    path.write_text("rules:\n  - strip_prefix: module.\n  - template: {from: 'a.*', to: 'b.{y}'}\n")
    with pytest.raises(PlanError, match=r"r\.yaml: rules\[1\]\.template"):
        load_rules(path)
    with pytest.raises(PlanError, match="no such rules file or built-in rule set"):
        load_rules("no-such-set")


@pytest.mark.parametrize(
    ("source", "target"),
    [  # the configurations the reference converts besides a fine-tuned group-norm rel_pos model;
        # tests/real/test_transformers_wav2vec2.py checks them against transformers' models
        (
            "w2v_encoder.w2v_model.feature_extractor.conv_layers.3.2.1.weight",  # layer norm mode
            "wav2vec2_conformer.feature_extractor.conv_layers.3.layer_norm.weight",
        ),
        (
            "feature_extractor.conv_layers.0.2.bias",  # group norm mode, pretraining
            "wav2vec2_conformer.feature_extractor.conv_layers.0.layer_norm.bias",
        ),
        ("layer_norm.weight", "wav2vec2_conformer.feature_projection.layer_norm.weight"),
        (
            "encoder.layers.0.self_attn.rotary_emb.inv_freq",
            "wav2vec2_conformer.encoder.embed_positions.inv_freq",
        ),
        ("encoder.layers.1.self_attn.rotary_emb.inv_freq", None),  # dropped: HF has one copy
        (
            "encoder.pos_conv.0.parametrizations.weight.original0",
            "wav2vec2_conformer.encoder.pos_conv_embed.conv.parametrizations.weight.original0",
        ),
    ],
)
def test_wav2vec2_conformer_rules_cover_every_configuration(
    source: str, target: str | None
) -> None:
    res = apply_rules(load_rules("wav2vec2-conformer-fairseq-to-hf"), source)
    if target is None:
        assert res.dropped
    else:
        assert res.names[0] == target


def test_rule_round_trip_through_dicts() -> None:
    for name in builtin_rule_sets():
        rules = load_rules(name)
        assert rules_from_list([r.to_dict() for r in rules]) == rules, name


def test_transforms_shapes_and_inverses() -> None:
    assert Transpose().out_shape([(3, 5)]) == (5, 3)
    assert Reshape((-1, 4)).out_shape([(2, 2, 4)]) == (4, 4)
    assert Split(0, (4, 4, 8), 2).out_shape([(16, 3)]) == (8, 3)
    assert Concat(1).out_shape([(2, 3), (2, 5)]) == (2, 8)
    assert Pad(0, 0, 996).out_shape([(29, 640)]) == (1025, 640)
    assert Slice(0, 0, 29).out_shape([(1025, 640)]) == (29, 640)
    assert Select(0, 1).out_shape([(3, 8, 32)]) == (8, 32)  # adapter 1 of 3 stacked
    assert Select(-1, 0).out_shape([(3, 8)]) == (3,)
    assert not Select(0, 0).invertible([(1, 8)], ["float32"])
    with pytest.raises(PlanError, match="index out of range for size 3"):
        Select(0, 3).out_shape([(3, 8)])
    assert chain_shape([Cast("float16")], [(2,)], ["float32"]) == ((2,), "float16")
    assert not Cast("float16").invertible([(2,)], ["float32"])
    assert Cast("float32").inverse([(2,)], ["float16"]) == Cast("float16")
    assert chain_inverse([Pad(0, 1, 2), Transpose()], [(3, 4)], ["float32"]) == [
        Transpose((1, 0)),
        Slice(0, 1, 4),
    ]
    with pytest.raises(PlanError, match="sizes sum to 15, axis has 16"):
        Split(0, (5, 5, 5), 0).out_shape([(16, 3)])
    with pytest.raises(PlanError, match="drops rows"):
        Slice(0, 0, 29).inverse([(1025, 4)], ["float32"])


SEGMENT = st.from_regex(r"[a-z][a-z_]{0,6}", fullmatch=True)
NAME = st.lists(st.one_of(SEGMENT, st.integers(0, 30).map(str)), min_size=1, max_size=5).map(
    ".".join
)


@st.composite
def invertible_pipeline(draw):  # type: ignore[no-untyped-def]
    rules = []
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(["add_prefix", "template", "suffix", "rename"]))
        if kind == "add_prefix":
            rules.append({"add_prefix": draw(SEGMENT) + "."})
        elif kind == "template":
            rules.append(
                {
                    "template": {
                        "from": draw(SEGMENT) + ".*." + draw(SEGMENT),
                        "to": "zz" + draw(SEGMENT) + ".*.x" + draw(SEGMENT),
                    }
                }
            )
        elif kind == "suffix":
            rules.append({"suffix": {"from": draw(SEGMENT), "to": "q" + draw(SEGMENT)}})
        else:
            rules.append({"rename": {"from": draw(NAME), "to": "r." + draw(NAME)}})
    return rules_from_list(rules)


@settings(max_examples=60, deadline=None)
@given(rules=invertible_pipeline(), name=NAME)
def test_rules_applied_then_inverted_give_the_identity(rules, name) -> None:  # type: ignore[no-untyped-def]
    forward = apply_rules(rules, name).names
    assert len(forward) == 1
    back = apply_rules(invert_rules(rules), forward[0]).names
    # Inversion is exact where the forward mapping is injective; a name that already looked like
    # an output of some rule (e.g. started with the 'to' side) is the only way to collide.
    if _injective_for(rules, name):
        assert back == (name,)


def _injective_for(rules, name) -> bool:  # type: ignore[no-untyped-def]
    """True when no rule's inverse would match `name`'s intermediate forms except by its own hit."""
    inv = invert_rules(rules)
    current = name
    for rule, rev in zip(rules, reversed(inv), strict=True):
        hit = rule.rewrite(current)
        nxt = hit[0] if hit else current
        if hit is None and rev.rewrite(nxt) is not None:
            return False
        current = nxt
    return True


def test_ckpt_map_rules_alone_lists_the_builtin_sets_one_line_each() -> None:
    from subproc import ckpt

    r = ckpt("map", "--rules")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    sets = builtin_rule_sets()
    assert len(lines) == len(sets)
    for line, (name, description) in zip(lines, sets.items(), strict=True):
        assert line.split()[0] == name
        assert line.endswith(description)
    mixed = ckpt("map", "a.pt", "b.pt", "--rules")
    assert mixed.returncode == 2
    assert "lists the built-in sets" in mixed.stderr
