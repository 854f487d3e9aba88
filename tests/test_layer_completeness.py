"""Layer completeness counts the layer stack: a NeMo Conformer's `pre_encode.conv.{0,2,3}` (an
`nn.Sequential` with activations between its convolutions) is not the encoder's layers."""

from __future__ import annotations

import numpy as np
import pytest

import inspector
from inspector.mapping import names as nm
from inspector.mapping import propose


def _t(*shape: int) -> np.ndarray:
    return np.zeros(shape, dtype=np.float32)


def _conformer(convs: tuple[int, ...], last_in: int) -> dict[str, np.ndarray]:
    """Subsampling convs at `convs`, three layers; the last layer's feed-forward takes `last_in`
    inputs (another width in the target: that layer cannot copy whole)."""
    sd = {}
    for i in convs:
        sd[f"encoder.pre_encode.conv.{i}.weight"] = _t(4, 1, 3, 3)
        sd[f"encoder.pre_encode.conv.{i}.bias"] = _t(4)
    for i in range(3):
        sd[f"encoder.layers.{i}.feed_forward.linear1.weight"] = _t(16, last_in if i == 2 else 8)
        sd[f"encoder.layers.{i}.feed_forward.linear1.bias"] = _t(16)
        sd[f"encoder.layers.{i}.norm.weight"] = _t(8)
    sd["decoder.out.weight"] = _t(5, 8)
    return sd


@pytest.mark.parametrize("convs", [(0, 2), (0, 2, 3), (0, 2, 4), (0, 2, 3, 5, 6)])
def test_summary_counts_the_encoder_layers(convs: tuple[int, ...]) -> None:
    src = inspector.open(_conformer(convs, last_in=8))
    tgt = inspector.open(_conformer(convs, last_in=12))
    summary = propose(src, tgt).summary()["encoder"]
    assert (summary.layers, summary.layers_copied) == (3, 2)
    assert "2/3 layers complete" in summary.line()


def test_sequential_slots_with_gaps_are_not_a_stack() -> None:
    names = [f"m.conv.{i}.{p}" for i in (0, 2, 3) for p in ("weight", "bias")]
    assert nm.layer_stacks(names) == {}
    gapless = [f"m.conv.{i}.{p}" for i in (0, 1, 2) for p in ("weight", "bias")]
    assert list(nm.layer_stacks(gapless)) == ["m.conv"]
    named = [f"m.layers.{i}.{p}" for i in (0, 2, 3) for p in ("weight", "bias")]
    assert list(nm.layer_stacks(named)) == ["m.layers"]


def test_a_named_stack_wins_over_a_larger_unnamed_one() -> None:
    """Five numbered blocks without a layer-list name and two `layers`: the layers count."""
    sd = {f"enc.convs.{i}.weight": _t(2) for i in range(5)}
    sd.update({f"enc.layers.{i}.weight": _t(3) for i in range(2)})
    sd["head.weight"] = _t(1)
    summary = propose(inspector.open(sd), inspector.open(sd)).summary()["enc"]
    assert summary.line() == "enc 100% (2/2 layers complete)"
