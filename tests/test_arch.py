"""Architecture inference from names and shapes."""

from __future__ import annotations

import pytest
from mapping_fixtures import _t, fairseq_w2v2_conformer, hf_w2v2_conformer_ctc, nemo_rnnt

import inspector
from inspector.mapping import arch, propose
from inspector.mapping import names as nm


def test_infer_nemo_rnnt() -> None:
    mods = arch.infer(inspector.open(nemo_rnnt(1024, n_layers=3, d=64, heads=8)))
    assert list(mods) == ["preprocessor", "encoder", "decoder", "joint"]
    (layers,) = mods["encoder"].stacks  # pre_encode.conv.{0,2} is a Sequential, not a stack
    assert layers.path == "encoder.layers"
    assert (layers.n_layers, layers.d_model, layers.ffn, layers.heads, layers.conv_kernels) == (
        3,
        64,
        256,
        8,
        ((9,),),
    )
    assert mods["decoder"].vocab == 1025
    assert mods["joint"].vocab == 1025


def _layer(prefix: str, extra: str = "") -> dict[str, tuple[int, ...]]:
    out = {f"{prefix}.attn.weight": (4, 4), f"{prefix}.norm.weight": (4,)}
    if extra:
        out[f"{prefix}.{extra}"] = (4,)
    return out


def _shapes(*parts: dict[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
    return {k: v for p in parts for k, v in p.items()}


@pytest.mark.parametrize(
    ("shapes", "expected"),
    [
        # two Sequential slots with the same structure: not layers
        (_shapes(_layer("pre_encode.conv.0"), _layer("pre_encode.conv.2")), {}),
        # the same two under a layer-list name: a 2-layer stack
        (_shapes(_layer("encoder.layers.0"), _layer("encoder.layers.1")), {"encoder.layers": 2}),
        (_shapes(_layer("transformer.h.0"), _layer("transformer.h.1")), {"transformer.h": 2}),
        (
            _shapes(_layer("vocoder.res_blocks.0"), _layer("vocoder.res_blocks.1")),
            {"vocoder.res_blocks": 2},
        ),
        # three or more members with the same structure: a stack whatever its name (Jasper blocks)
        (_shapes(*(_layer(f"encoder.{i}") for i in range(3))), {"encoder": 3}),
        # members that differ in structure are not a stack, even under a layer-list name
        (
            _shapes(
                _layer("enc.layers.0", "extra"), _layer("enc.layers.1"), _layer("enc.layers.2")
            ),
            {},
        ),
        # a numbered leaf (`joint_net.2.weight`) alone is one slot
        ({"joint.joint_net.2.weight": (5, 4), "joint.joint_net.2.bias": (5,)}, {}),
    ],
)
def test_layer_stacks(shapes: dict[str, tuple[int, ...]], expected: dict[str, int]) -> None:
    assert {p: len(layers) for p, layers in nm.layer_stacks(shapes).items()} == expected
    assert {p: len(m) for p, m in arch.stacks(shapes).items()} == {
        p: sum(1 for n in shapes if n.startswith(p + ".")) for p in expected
    }


def test_fairseq_conv_layers_differ_in_structure_but_encoder_layers_stack() -> None:
    stacks = arch.stacks(inspector.open(fairseq_w2v2_conformer(n_layers=2)))
    # conv_layers.0 has a norm (`.2`), conv_layers.1 and .2 only the conv: not one structure
    assert list(stacks) == ["w2v_encoder.w2v_model.encoder.layers"]


def test_summary_counts_layers_of_stacks_only() -> None:
    sd = {
        "sub.conv.0.weight": _t(8, 1, 3),
        "sub.conv.0.bias": _t(8),
        "sub.conv.2.weight": _t(8, 8, 3),
        "sub.conv.2.bias": _t(8),
        "head.weight": _t(3, 8),
    }
    plan = propose(inspector.open(sd), inspector.open(sd))
    assert [s.line() for s in plan.summary().values()] == ["sub 100%", "head 100%"]
    sd.update({k.replace("sub.conv", "sub.blocks"): v for k, v in sd.items() if "conv" in k})
    plan = propose(inspector.open(sd), inspector.open(sd))
    assert plan.summary()["sub"].line() == "sub 100% (2/2 layers complete)"


def test_explain_vocabulary_change_and_summary() -> None:
    src, tgt = inspector.open(nemo_rnnt(28)), inspector.open(nemo_rnnt(1024))
    plan = propose(src, tgt)
    assert arch.explain(plan, {"source": src}, tgt) == [
        "decoder, joint: vocabulary changed 29 -> 1025 (kept at target init)"
    ]
    assert arch.transfer_summary(plan) == [
        "preprocessor 100%",
        "encoder 100% (4/4 layers complete)",
        "decoder 0%",
        "joint 0%",
    ]


def _explain(src_sd: dict, tgt_sd: dict) -> list[str]:  # type: ignore[type-arg]
    src, tgt = inspector.open(src_sd), inspector.open(tgt_sd)
    return arch.explain(propose(src, tgt), {"source": src}, tgt)


def test_infer_records_where_each_kernel_is() -> None:
    (layers,) = arch.infer(inspector.open(nemo_rnnt(28, kernel=31)))["encoder"].stacks
    assert layers.kernels == (("conv.depthwise_conv", (31,)),)
    assert layers.layer_indices == (0, 1, 2, 3)
    assert "kernel 31" in layers.describe()


def test_explain_names_a_kernel_change_with_the_nemo_config_name() -> None:
    assert _explain(nemo_rnnt(28, kernel=31), nemo_rnnt(28, kernel=9)) == [
        "encoder.layers: conv kernel 31 -> 9 in encoder.layers.{0..3}.conv.depthwise_conv: "
        "set conv_kernel_size=31 in the target config to transfer it"
    ]


def test_explain_uses_the_targets_own_config_path(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from inspector.demo import build_demo

    files = build_demo(tmp_path)
    src, tgt = inspector.open(files.source), inspector.open(files.target)
    assert arch.explain(propose(src, tgt), {src.path.name: src}, tgt) == [  # type: ignore[union-attr]
        "encoder.layers: conv kernel 31 -> 9 in encoder.layers.{0..3}.conv.depthwise_conv: "
        "set encoder.conv_kernel_size=31 in the target config to transfer it",
        "decoder, joint: vocabulary changed 29 -> 257 (kept at target init)",
    ]


def test_explain_uses_hf_config_names() -> None:
    assert _explain(hf_w2v2_conformer_ctc(2, 32, 32), hf_w2v2_conformer_ctc(3, 64, 32)) == [
        "wav2vec2_conformer.encoder.layers: layers 2 -> 3, d_model 32 -> 64, ffn 128 -> 256: "
        "set num_hidden_layers=2, hidden_size=32, intermediate_size=128 in the target config "
        "to transfer it"
    ]
    assert _explain(hf_w2v2_conformer_ctc(vocab=32), hf_w2v2_conformer_ctc(vocab=40)) == [
        "lm_head: vocabulary changed 32 -> 40 (kept at target init; set vocab_size=32 to "
        "transfer it instead)"
    ]


def _unknown_family(sd: dict) -> dict:  # type: ignore[type-arg]
    """The same tensors under names no config family is recognised by."""
    words = {"feed_forward": "mlpx", "pre_encode": "stem", "norm_self_att": "ln_att"}
    out = {}
    for k, v in sd.items():
        for a, b in words.items():
            k = k.replace(a, b)
        out[k] = v
    return out


def test_explain_stays_generic_without_a_known_config_name() -> None:
    assert arch.family_of(_unknown_family(nemo_rnnt(28))) is None
    assert _explain(
        _unknown_family(nemo_rnnt(28, kernel=31)), _unknown_family(nemo_rnnt(28, kernel=9))
    ) == [
        "encoder.layers: conv kernel 31 -> 9 in encoder.layers.{0..3}.conv.depthwise_conv: "
        "configure the target with conv kernel 31 to transfer it"
    ]


def test_explain_names_mismatched_tensors_when_no_size_explains_them() -> None:
    src, tgt = nemo_rnnt(28), nemo_rnnt(28)
    for i in range(4):
        tgt[f"encoder.layers.{i}.self_attn.linear_pos.weight"] = _t(32, 16)
    assert _explain(src, tgt) == [
        "encoder.layers: shapes differ: encoder.layers.{0..3}.self_attn.linear_pos.weight "
        "[32, 32] -> [32, 16] (no layer count, width or kernel explains it)"
    ]
