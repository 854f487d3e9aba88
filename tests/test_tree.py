from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import inspector
from inspector.tree import build_tree, collapse_chains, fold_names, format_ranges


def test_format_ranges():
    assert format_ranges([3, 0, 1, 2, 5, 7, 8]) == "0..3,5,7..8"
    assert format_ranges([4]) == "4"
    assert format_ranges([]) == ""


def test_fold_names_folds_the_varying_layer_index():
    names = [f"encoder.layers.{i}.ffn.{w}" for i in range(16) for w in ("weight", "bias")]
    assert fold_names(names) == [
        "encoder.layers.{0..15}.ffn.weight",
        "encoder.layers.{0..15}.ffn.bias",
    ]


def test_fold_names_keeps_gaps_and_other_indices_literal():
    names = ["a.0.conv.1.w", "a.1.conv.1.w", "a.3.conv.1.w", "a.0.conv.2.w"]
    assert fold_names(names) == ["a.{0..1,3}.conv.1.w", "a.0.conv.2.w"]


@pytest.mark.parametrize(
    ("indices", "folded"),
    [
        ([7], "layers.7.w"),
        ([0, 1], "layers.{0..1}.w"),
        ([2, 0, 1], "layers.{0..2}.w"),
        ([0, 2], "layers.{0,2}.w"),
        ([5, 3, 4, 9, 10, 40], "layers.{3..5,9..10,40}.w"),
        ([1, 3, 5, 6, 7], "layers.{1,3,5..7}.w"),
    ],
)
def test_fold_names_writes_sorted_runs(indices, folded):
    assert fold_names([f"layers.{i}.w" for i in indices]) == [folded]


def _unfold(folded: str) -> set[int]:
    """The indices a folded name stands for, parsed here (not with the code under test)."""
    middle = folded.removeprefix("layers.").removesuffix(".w").strip("{}")
    out: set[int] = set()
    for part in middle.split(","):
        lo, _, hi = part.partition("..")
        out.update(range(int(lo), int(hi or lo) + 1))
    return out


@given(st.lists(st.integers(0, 40), min_size=1, unique=True))
def test_fold_names_loses_no_index(indices):
    folded = fold_names([f"layers.{i}.w" for i in indices])
    assert len(folded) == 1
    assert _unfold(folded[0]) == set(indices)


def _ckpt(shapes: dict[str, tuple[int, ...]]):
    return inspector.open({k: np.zeros(s, np.float32) for k, s in shapes.items()})


def test_tree_totals_and_folding_of_identical_layers():
    shapes = {f"enc.layers.{i}.w": (4, 4) for i in range(3)}
    shapes["dec.out.weight"] = (29, 4)
    tree = build_tree(_ckpt(shapes).tensors)
    assert tree.tensors == 4
    assert tree.params == 3 * 16 + 29 * 4
    layers = tree.children["enc"].children["layers"]
    assert list(layers.children) == ["{0..2}"]
    folded = layers.children["{0..2}"]
    assert folded.repeat == 3
    assert folded.tensors == 3
    assert folded.nbytes == 3 * 64


def test_layers_with_different_shapes_do_not_fold_together():
    shapes = {"l.0.w": (4,), "l.1.w": (4,), "l.2.w": (8,), "l.3.w": (8,)}
    tree = build_tree(_ckpt(shapes).tensors)
    assert list(tree.children["l"].children) == ["{0..1}", "{2..3}"]


def test_collapse_chains_keeps_top_totals_and_stops_at_folded_layers():
    shapes = {f"encoder.layers.{i}.ff.w": (2, 2) for i in range(4)}
    tree = build_tree(_ckpt(shapes).tensors)
    shown = collapse_chains(tree.children["encoder"])
    assert shown.name == "encoder.layers.{0..3}"
    assert shown.tensors == 4
    assert list(shown.children) == ["ff"]


def test_fold_names_does_not_confuse_a_literal_segment_with_an_index():
    names = ["a.#.w", "a.1.w", "a.2.w"]
    assert fold_names(names) == ["a.#.w", "a.{1..2}.w"]
