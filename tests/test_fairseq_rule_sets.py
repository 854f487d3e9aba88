"""The built-in fairseq wav2vec2 / HuBERT -> HF rule sets on synthetic name lists.

Each pair below is (fairseq name, HF name) as transformers' conversion scripts place it, written
out by hand for a one-layer model; tests/real/test_transformers_w2v2_hubert.py checks the same
sets against transformers' own models of each configuration.
"""

from __future__ import annotations

import numpy as np
import pytest
from subproc import ckpt

import inspector
from inspector.errors import PlanError
from inspector.mapping import apply_rules, builtin_rule_sets, load_rules, propose
from inspector.mapping.rules import Substring, Table

FT = "w2v_encoder.w2v_model."
CL = "feature_extractor.conv_layers"
WN = "encoder.pos_conv_embed.conv.parametrizations.weight"

# body: fairseq name (pretraining form, no prefix) -> HF name under the base model's prefix
BODY = [
    ("feature_extractor.conv_layers.0.0.weight", "feature_extractor.conv_layers.0.conv.weight"),
    (f"{CL}.0.2.weight", f"{CL}.0.layer_norm.weight"),
    ("feature_extractor.conv_layers.0.2.bias", "feature_extractor.conv_layers.0.layer_norm.bias"),
    ("feature_extractor.conv_layers.1.0.weight", "feature_extractor.conv_layers.1.conv.weight"),
    ("layer_norm.weight", "feature_projection.layer_norm.weight"),
    ("layer_norm.bias", "feature_projection.layer_norm.bias"),
    ("post_extract_proj.weight", "feature_projection.projection.weight"),
    ("post_extract_proj.bias", "feature_projection.projection.bias"),
    ("mask_emb", "masked_spec_embed"),
    ("encoder.pos_conv.0.bias", "encoder.pos_conv_embed.conv.bias"),
    ("encoder.pos_conv.0.weight_g", f"{WN}.original0"),
    ("encoder.pos_conv.0.weight_v", f"{WN}.original1"),
    ("encoder.layer_norm.weight", "encoder.layer_norm.weight"),
    ("encoder.layer_norm.bias", "encoder.layer_norm.bias"),
    ("encoder.layers.0.self_attn.k_proj.weight", "encoder.layers.0.attention.k_proj.weight"),
    ("encoder.layers.0.self_attn.v_proj.bias", "encoder.layers.0.attention.v_proj.bias"),
    ("encoder.layers.0.self_attn.q_proj.weight", "encoder.layers.0.attention.q_proj.weight"),
    ("encoder.layers.0.self_attn.out_proj.weight", "encoder.layers.0.attention.out_proj.weight"),
    ("encoder.layers.0.self_attn_layer_norm.weight", "encoder.layers.0.layer_norm.weight"),
    ("encoder.layers.0.fc1.weight", "encoder.layers.0.feed_forward.intermediate_dense.weight"),
    ("encoder.layers.0.fc2.bias", "encoder.layers.0.feed_forward.output_dense.bias"),
    ("encoder.layers.0.final_layer_norm.bias", "encoder.layers.0.final_layer_norm.bias"),
]
# layer-norm feature extractor: the LayerNorm inside Sequential(TransposeLast, LN, TransposeLast)
LAYER_NORM_CONV = [
    (f"{CL}.1.2.1.weight", f"{CL}.1.layer_norm.weight"),
    ("feature_extractor.conv_layers.1.0.bias", "feature_extractor.conv_layers.1.conv.bias"),
]
W2V_PRETRAINING = [
    ("quantizer.vars", "quantizer.codevectors"),
    ("quantizer.weight_proj.weight", "quantizer.weight_proj.weight"),
    ("quantizer.weight_proj.bias", "quantizer.weight_proj.bias"),
    ("project_q.weight", "project_q.weight"),
    ("final_proj.weight", "project_hid.weight"),
    ("final_proj.bias", "project_hid.bias"),
]
CTC_HEAD = [
    ("w2v_encoder.proj.weight", "lm_head.weight"),
    ("w2v_encoder.proj.bias", "lm_head.bias"),
]
SEQ_CLASS_HEAD = [
    ("pooling_layer.linear.weight", "projector.weight"),
    ("pooling_layer.projection.bias", "classifier.bias"),
]


# an HF folder saved before torch 2.1 (weight_g / weight_v), from a source re-saved with
# parametrizations: each side's own names
PC = "encoder.pos_conv.0.parametrizations.weight"
OLD_WEIGHT_NORM = [
    (f"{PC}.original0", "encoder.pos_conv_embed.conv.weight_g"),
    (f"{PC}.original1", "encoder.pos_conv_embed.conv.weight_v"),
]


def _finetuned(pairs: list[tuple[str, str]], prefix: str) -> list[tuple[str, str]]:
    return [(FT + f, prefix + h) for f, h in pairs]


CASES = {  # rule set, fairseq -> HF pairs, fairseq names the script's table leaves unused
    "wav2vec2-ctc": ("wav2vec2-fairseq-to-hf",
                     _finetuned(BODY + LAYER_NORM_CONV, "wav2vec2.") + CTC_HEAD, []),
    "wav2vec2-pretraining": ("wav2vec2-fairseq-to-hf",
                             [(f, "wav2vec2." + h) for f, h in BODY] + W2V_PRETRAINING, []),
    "wav2vec2-seqclass": ("wav2vec2-fairseq-to-hf",
                          _finetuned(BODY, "wav2vec2.") + SEQ_CLASS_HEAD, []),
    "wav2vec2-model": ("wav2vec2-fairseq-to-hf", BODY, []),  # the bare Wav2Vec2Model
    "hubert-ctc": ("hubert-fairseq-to-hf", _finetuned(BODY + LAYER_NORM_CONV, "hubert.")
                   + CTC_HEAD, [FT + "label_embs_concat"]),
    "hubert-model": ("hubert-fairseq-to-hf", BODY,  # HubertModel: no `hubert.` prefix
                     ["label_embs_concat", "final_proj.weight", "final_proj.bias"]),
    "hubert-ctc-old-weight-norm": ("hubert-fairseq-to-hf",
                                   _finetuned(OLD_WEIGHT_NORM, "hubert.") + CTC_HEAD, []),
    "wav2vec2-pretraining-old-weight-norm": ("wav2vec2-fairseq-to-hf", [
        (f, "wav2vec2." + h) for f, h in OLD_WEIGHT_NORM], []),
    "hubert-ctc-adapter": ("hubert-fairseq-to-hf", _finetuned(BODY, "hubert.") + CTC_HEAD,
                           [FT + "encoder.layers.0.adapter_layer.W_a"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_rule_set_maps_each_name_as_the_script_does(case: str) -> None:
    rules_name, pairs, _ = CASES[case]
    rules = load_rules(rules_name)
    targets = {h for _, h in pairs}
    for fairseq, hf in pairs:
        res = apply_rules(rules, fairseq)
        assert not res.dropped
        assert next(n for n in res.names if n in targets) == hf, (fairseq, res.names)


@pytest.mark.parametrize("case", sorted(CASES))
def test_propose_places_every_target_and_lists_unused(case: str) -> None:
    rules_name, pairs, unused = CASES[case]
    # every tensor its own shape: a name sent to the wrong place would be a shape mismatch
    source = {f: np.zeros((i + 2,), np.float32) for i, (f, _) in enumerate(pairs)}
    source.update({u: np.zeros((1, 3), np.float32) for u in unused})
    target = {h: np.zeros((i + 2,), np.float32) for i, (_, h) in enumerate(pairs)}
    plan = propose(inspector.open(source), inspector.open(target), rules_name)
    for (fairseq, hf) in pairs:
        entry = plan.entries[hf]
        assert entry.decision == "copy", (hf, entry.reason)
        assert entry.sources[0][1] == fairseq, (hf, entry.reason)
        assert not entry.flags, (hf, entry.flags)
    assert sorted(u.name for u in plan.unused) == sorted(unused)


def _body_table(name: str, prefix: str) -> list[dict[str, object]]:
    """The rule set's table as data, the base model's prefix cut out and the heads left out."""
    table = load_rules(name)[0]
    assert isinstance(table, Table)
    out = []
    for rule in table.rules:
        if isinstance(rule, Table):
            continue  # wav2vec2's MMS adapters: the HuBERT script has no entry for them
        data = rule.to_dict()
        body = next(iter(data.values()))
        assert isinstance(body, dict)
        if not str(body["to"]).startswith(prefix):
            continue  # a head (lm_head, quantizer, ...)
        body["to"] = str(body["to"]).replace(prefix, "", 1)
        out.append(data)
    return out


def test_hubert_and_wav2vec2_share_the_body_table() -> None:
    """The two files repeat the script's shared MAPPING: they must not drift apart."""
    assert _body_table("hubert-fairseq-to-hf", "hubert.") == _body_table(
        "wav2vec2-fairseq-to-hf", "wav2vec2."
    )
    heads = {r.to for r in load_rules("hubert-fairseq-to-hf")[0].rules  # type: ignore[attr-defined]
             if isinstance(r, Substring) and not r.to.startswith("hubert.")}
    assert heads == {"lm_head"}


def test_pretraining_heads_do_not_leak_into_hubert() -> None:
    """HuBERT's final_proj is its pretraining head, not wav2vec2's project_hid: unused."""
    res = apply_rules(load_rules("hubert-fairseq-to-hf"), "final_proj.weight")
    assert res.names == ("final_proj.weight",)
    assert res.fired == ()


def test_wav2vec2_adapters_take_adapter_zero() -> None:
    """MMS adapters: fairseq stacks one entry per adapter, the script keeps value[0]."""
    ad = "encoder.layers.1.adapter_layer"
    pairs = [("W_a", "linear_1.weight", (8, 32)), ("b_a", "linear_1.bias", (8,)),
             ("W_b", "linear_2.weight", (32, 8)), ("b_b", "linear_2.bias", (32,)),
             ("ln_W", "norm.weight", (32,)), ("ln_b", "norm.bias", (32,))]
    source = {f"{FT}{ad}.{f}": np.zeros((3, *shape), np.float32) for f, _, shape in pairs}
    target = {f"wav2vec2.{ad}.{h}": np.zeros(shape, np.float32) for _, h, shape in pairs}
    plan = propose(inspector.open(source), inspector.open(target), "wav2vec2-fairseq-to-hf")
    for fairseq, hf, _ in pairs:
        entry = plan.entries[f"wav2vec2.{ad}.{hf}"]
        assert entry.decision == "copy", (hf, entry.reason)
        assert entry.sources[0][1] == f"{FT}{ad}.{fairseq}"
        assert [t.to_dict() for t in entry.transform] == [{"op": "select", "axis": 0, "index": 0}]
        assert not entry.flags, (hf, entry.flags)
    assert plan.unused == []


def test_ckpt_map_help_and_errors_list_the_sets() -> None:
    r = ckpt("map", "--help")
    assert r.returncode == 0, r.stderr
    help_text = " ".join(r.stdout.split())
    for name in ("hubert-fairseq-to-hf", "wav2vec2-fairseq-to-hf"):
        assert name in help_text.replace("- ", "-")  # argparse may wrap after a hyphen
    assert builtin_rule_sets()["hubert-fairseq-to-hf"].startswith("fairseq HuBERT -> HF")
    with pytest.raises(PlanError, match="hubert-fairseq-to-hf"):
        load_rules("hubert-fairseq-to-hf-typo")
