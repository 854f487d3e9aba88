"""shape_diff() against a plain Python set/dict reference."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from inspector import _core as core

names = st.text(alphabet="ab.0123é", min_size=0, max_size=12)
shapes = st.lists(st.integers(0, 3), max_size=3).map(tuple)
dtypes = st.sampled_from(["float32", "bfloat16", "int64"])
side = st.dictionaries(names, st.tuples(shapes, dtypes), max_size=40)


def reference(a: dict, b: dict) -> dict[str, list[int]]:
    ia = {n: i for i, n in enumerate(a)}
    ib = {n: i for i, n in enumerate(b)}
    out: dict[str, list[int]] = {
        k: []
        for k in (
            "only_a",
            "only_b",
            "shape_a",
            "shape_b",
            "dtype_a",
            "dtype_b",
            "equal_a",
            "equal_b",
        )
    }
    for n, (sh, dt) in a.items():
        if n not in b:
            out["only_a"].append(ia[n])
            continue
        kind = "shape" if b[n][0] != sh else "dtype" if b[n][1] != dt else "equal"
        out[f"{kind}_a"].append(ia[n])
        out[f"{kind}_b"].append(ib[n])
    out["only_b"] = [ib[n] for n in b if n not in a]
    return out


def run(a: dict, b: dict) -> dict[str, list[int]]:
    return core.shape_diff(
        list(a),
        [s for s, _ in a.values()],
        [d for _, d in a.values()],
        list(b),
        [s for s, _ in b.values()],
        [d for _, d in b.values()],
    )


@given(side, side)
def test_matches_python_reference(a: dict, b: dict) -> None:
    # overlap the two sides so that every category shows up
    b = {**{n: v for n, v in list(a.items())[::2]}, **b}
    assert run(a, b) == reference(a, b)


def test_large_and_lists_as_shapes() -> None:
    a = {f"layers.{i}.w": ((i % 7, 4), "float32") for i in range(20000)}
    b = {
        f"layers.{i}.w": ((i % 5, 4), "float32" if i % 3 else "float16") for i in range(5000, 30000)
    }
    assert run(a, b) == reference(a, b)
    got = core.shape_diff(["x"], [[2, 3]], ["float32"], ["x"], [(2, 3)], ["float32"])
    assert got["equal_a"] == [0]


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="'x' appears twice in b"):
        core.shape_diff([], [], [], ["x", "y", "x"], [(), (), ()], ["f", "f", "f"])
    with pytest.raises(ValueError, match="appears twice in a"):
        core.shape_diff(["x", "x"], [(), ()], ["f", "f"], [], [], [])
    with pytest.raises(ValueError, match="differ in length"):
        core.shape_diff(["x"], [], ["f"], [], [], [])
    with pytest.raises(TypeError):
        core.shape_diff([1], [()], ["f"], [], [], [])
    with pytest.raises(TypeError):
        core.shape_diff(["x"], [("a",)], ["f"], [], [], [])
    with pytest.raises(OverflowError):
        core.shape_diff(["x"], [(2**70,)], ["f"], [], [], [])
