"""The linear tree fold (issue 12) folds exactly as the former quadratic one did.

The oracle below is the former implementation (membership in a list, signatures rebuilt as nested
tuples at every level), kept here as the reference: `ckpt ls` output must not change.
"""

from __future__ import annotations

import re
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from inspector.model import ByteSource, Storage, TensorInfo, contiguous_strides
from inspector.tree import ModuleNode, build_tree, format_ranges

_INDEX = re.compile(r"^\d+$")


def _reference(tensors: dict[str, TensorInfo]) -> ModuleNode:
    root = _reference_unfolded(tensors)
    _ref_fold(root)
    return root


def _ref_sig(node: ModuleNode) -> tuple[object, ...]:
    own = (node.tensor.dtype, node.tensor.shape) if node.tensor is not None else None
    return (own, tuple((k, _ref_sig(c)) for k, c in node.children.items()))


def _ref_fold(node: ModuleNode) -> None:
    for child in node.children.values():
        _ref_fold(child)
    numbered = [k for k in node.children if _INDEX.match(k)]
    if len(numbered) < 2:
        return
    folded: dict[str, ModuleNode] = {}
    run: list[str] = []
    for key in node.children:
        if key in numbered:
            if run and _ref_sig(node.children[run[-1]]) != _ref_sig(node.children[key]):
                _ref_emit(node, run, folded)
                run = []
            run.append(key)
        else:
            if run:
                _ref_emit(node, run, folded)
                run = []
            folded[key] = node.children[key]
    if run:
        _ref_emit(node, run, folded)
    node.children = folded


def _ref_emit(parent: ModuleNode, run: list[str], out: dict[str, ModuleNode]) -> None:
    if len(run) == 1:
        out[run[0]] = parent.children[run[0]]
        return
    first = parent.children[run[0]]
    label = "{" + format_ranges(int(k) for k in run) + "}"
    merged = ModuleNode(name=label, children=first.children, repeat=len(run))
    merged.tensor = first.tensor
    for k in run:
        c = parent.children[k]
        merged.tensors += c.tensors
        merged.params += c.params
        merged.nbytes += c.nbytes
        for d, n in c.dtypes.items():
            merged.dtypes[d] = merged.dtypes.get(d, 0) + n
    out[label] = merged


def _rows(node: ModuleNode, depth: int = 0) -> list[Any]:
    """Everything `ckpt ls` can show of a tree, dtype order included."""
    out = []
    for key, c in node.children.items():
        shape = c.tensor.shape if c.tensor is not None else None
        out.append((depth, key, c.name, c.tensors, c.params, c.nbytes,
                    list(c.dtypes.items()), c.repeat, shape))
        out += _rows(c, depth + 1)
    return out


def _tensor(name: str, dtype: str, shape: tuple[int, ...]) -> TensorInfo:
    size = 4 * max(1, len(shape))
    storage = Storage(name, dtype, size, ByteSource("f", 0, size))
    return TensorInfo(name, dtype, shape, contiguous_strides(shape), 0, storage)


_PART = st.one_of(st.sampled_from(["a", "b", "w", "weight", "bias", "007", "1\n"]),
                  st.integers(0, 12).map(str))
_NAMES = st.lists(st.lists(_PART, min_size=1, max_size=4).map(".".join), max_size=40,
                  unique=True)


def _drawn_tensors(names: list[str], data: st.DataObject) -> dict[str, TensorInfo]:
    """A tensor per name, of a dtype and shape drawn from a few (so that siblings fold or not)."""
    return {
        n: _tensor(n, data.draw(st.sampled_from(["float32", "bfloat16", "int64"])),
                   data.draw(st.sampled_from([(2,), (2, 3), (3,)])))
        for n in names
    }


@settings(max_examples=300, deadline=None)
@given(names=_NAMES, data=st.data())
def test_fold_matches_the_former_implementation(names: list[str], data: st.DataObject) -> None:
    tensors = _drawn_tensors(names, data)
    assert _rows(build_tree(tensors)) == _rows(_reference(tensors))
    assert _rows(build_tree(tensors, fold=False)) == _rows(_reference_unfolded(tensors))


def _reference_unfolded(tensors: dict[str, TensorInfo]) -> ModuleNode:
    root = ModuleNode(name="")
    for name, t in tensors.items():
        root.add(t)
        node = root
        parts = name.split(".")
        for part in parts:
            child = node.children.get(part)
            if child is None:
                child = ModuleNode(name=part)
                node.children[part] = child
            child.add(t)
            node = child
        node.tensor = t
    return root


def test_fifty_thousand_numbered_siblings_fold_to_runs() -> None:
    """The case that was quadratic: one node with tens of thousands of numbered children,
    with one odd layer in the middle that breaks the run."""
    tensors = {}
    for i in range(50_000):
        shape = (3,) if i == 20_000 else (2,)
        for part in ("w1", "w2"):
            name = f"state.{i}.{part}"
            tensors[name] = _tensor(name, "float32", shape)
    (state,) = build_tree(tensors).children.values()
    assert list(state.children) == ["{0..19999}", "20000", "{20001..49999}"]
    assert [c.repeat for c in state.children.values()] == [20_000, 1, 29_999]
    assert state.tensors == 100_000


# The compiled tree (csrc/module_tree.cpp) is built from CORE_MIN_TENSORS tensors on; here it is
# called at every size and held to the Python tree, signatures included. It declines (None) only
# for the names it leaves to Python, and those still give the same tree through build_tree.
_CORE_PART = st.one_of(
    _PART, st.sampled_from(["01", "{0..1}", "x{", "٣", "", "12345678901234567890"]))
_CORE_NAMES = st.lists(st.lists(_CORE_PART, min_size=1, max_size=5).map(".".join), max_size=40,
                       unique=True)


def _signatures(node: ModuleNode) -> list[int]:
    out = []
    for c in node.children.values():
        out.append(c.signature)
        out += _signatures(c)
    return out


def _declined(names: list[str]) -> bool:
    parts = [p for n in names for p in n.split(".")]
    return any(not n.isascii() or "\n" in n for n in names) or any(
        "{" in p or (p.isdecimal() and (len(p) > 18 or (len(p) > 1 and p[0] == "0"))) for p in parts
    )


@settings(max_examples=400, deadline=None)
@given(names=_CORE_NAMES, data=st.data())
def test_the_compiled_tree_is_the_python_tree(names: list[str], data: st.DataObject) -> None:
    from inspector.tree import _build_tree, _core_tree

    tensors = _drawn_tensors(names, data)
    for fold in (True, False):
        python, core = _build_tree(tensors, fold), _core_tree(tensors, fold)
        if fold and _declined(names):
            assert core is None
            continue
        assert core is not None
        assert _rows(core) == _rows(python)
        assert (core.tensors, core.params, core.nbytes, core.dtypes) == (
            python.tensors, python.params, python.nbytes, python.dtypes)
        assert _signatures(core) == _signatures(python)


def test_the_compiled_tree_takes_large_checkpoints_and_totals_past_int64() -> None:
    from inspector.tree import CORE_MIN_TENSORS, _build_tree, _core_tree

    n = CORE_MIN_TENSORS
    tensors = {f"model.layers.{i // 4}.w{i % 4}": _tensor(f"w{i}", "float32", (2, 3))
               for i in range(n)}
    assert _rows(build_tree(tensors)) == _rows(_build_tree(tensors, True))
    assert list(build_tree(tensors).children["model"].children["layers"].children) == [
        f"{{0..{n // 4 - 1}}}"]
    huge = {"a": _tensor("a", "float32", (2**62,)), "b": _tensor("b", "float32", (2**62,))}
    assert _core_tree(huge, True) is None  # 2^65 bytes: past what the core adds up
    assert build_tree(huge).nbytes == 2**65


def test_names_thousands_of_segments_deep_build_and_walk() -> None:
    """Iterative throughout (a RecursionError before, on a 5000-segment name)."""
    from inspector.tree import _core_tree, walk

    tensors = {".".join(["a"] * k + ["w"]): _tensor("w", "float32", (2,)) for k in (1, 5000)}
    for tree in (build_tree(tensors), build_tree(tensors, fold=False), _core_tree(tensors, True)):
        assert tree is not None
        depths: list[int] = []

        def visit(node: ModuleNode, depth: int, depths: list[int] = depths) -> ModuleNode:
            depths.append(depth)
            return node

        walk(tree, visit)
        assert max(depths) == 5000


def test_the_compiled_tree_is_the_python_tree_across_its_node_blocks() -> None:
    """The core keeps its nodes in blocks of 4096 (growing never copies them): a tree of tens of
    thousands of nodes, with runs that fold and runs that do not, modules of two dtypes and
    folded nodes made past the first blocks, is the Python tree."""
    from inspector.tree import _build_tree, _core_tree

    tensors = {}
    for layer in range(1500):
        odd = layer % 97 == 0  # breaks the run of identical layers now and then
        for expert in range(4):
            for w in ("w1", "w2"):
                name = f"model.layers.{layer}.experts.{expert}.{w}.weight"
                dtype = "bfloat16" if expert == 3 else "float32"
                tensors[name] = _tensor(name, dtype, (3, 2) if odd and w == "w2" else (2, 3))
        tensors[f"model.layers.{layer}.norm"] = _tensor("n", "float32", (2,))
    for fold in (True, False):
        python, core = _build_tree(tensors, fold), _core_tree(tensors, fold)
        assert core is not None
        assert _rows(core) == _rows(python)
        assert _signatures(core) == _signatures(python)
    layers = _core_tree(tensors, True).children["model"].children["layers"]  # type: ignore[union-attr]
    assert list(layers.children)[:3] == ["0", "{1..96}", "97"]
    assert layers.children["{1..96}"].dtypes == {"float32": 96 * 7, "bfloat16": 96 * 2}
