"""Module trees over dotted tensor names, with repeated layers folded (`layers.{0..15}`).

Used by `ckpt ls`, diff and check messages, and the TUI. Pure functions over names and
`TensorInfo`s: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from .bulk import rare_gc
from .model import TensorInfo

_INDEX = re.compile(r"^\d+$")


def format_ranges(indices: Iterable[int]) -> str:
    """[0,1,2,3,5,7,8] -> '0..3,5,7..8'."""
    xs = sorted(set(indices))
    parts: list[str] = []
    i = 0
    while i < len(xs):
        j = i
        while j + 1 < len(xs) and xs[j + 1] == xs[j] + 1:
            j += 1
        parts.append(str(xs[i]) if i == j else f"{xs[i]}..{xs[j]}")
        i = j + 1
    return ",".join(parts)


# From this many names on the core folds them (csrc/fold.hpp); for fewer, Python is as fast as
# the call into C++.
FOLD_IN_CORE_FROM = 1000


def fold_names(names: Iterable[str]) -> list[str]:
    """Fold names that differ in one numeric segment: `layers.{0..15}.ffn.weight`.

    Names are grouped by their shape with every numeric segment blanked; inside a group, the
    first segment position whose numbers vary is folded (the others stay literal). Order of
    first appearance is kept. Long lists are folded by the core, in the same steps
    (`fold_names_python` stays the reference, and folds what the core leaves to it).
    """
    listed = names if isinstance(names, list) else list(names)
    if len(listed) >= FOLD_IN_CORE_FROM:
        from ._native import core

        folded: list[str] | None = core.fold_names(listed)
        if folded is not None:
            return folded
    return fold_names_python(listed)


def fold_names_python(names: Iterable[str]) -> list[str]:
    """`fold_names` in Python: the reference the core is held to."""
    groups: dict[tuple[str | None, ...], list[list[str]]] = {}
    for name in names:
        parts = name.split(".")
        # None: no name collides. `_is_index` inlined (100k names in `ckpt map`), but for the
        # rare name holding a newline, where it differs from str.isdecimal.
        key = (tuple([None if p.isdecimal() else p for p in parts]) if "\n" not in name
               else tuple(None if _is_index(p) else p for p in parts))
        groups.setdefault(key, []).append(parts)
    out: list[str] = []
    for members in groups.values():
        out.extend(_fold_group(members))
    return out


def _fold_group(members: list[list[str]]) -> list[str]:
    if len(members) == 1:
        return [".".join(members[0])]
    positions = [i for i, p in enumerate(members[0]) if _is_index(p)]
    varying = [i for i in positions if len({m[i] for m in members}) > 1]
    if not varying:
        return [".".join(members[0])]
    pos = varying[0]
    # Keep the other numeric positions literal: group by them, fold `pos` within each.
    buckets: dict[tuple[str, ...], list[int]] = {}
    for m in members:
        rest = tuple(p for i, p in enumerate(m) if i != pos)
        buckets.setdefault(rest, []).append(int(m[pos]))
    out = []
    for rest, idx in buckets.items():
        parts = list(rest)
        parts.insert(pos, "{" + format_ranges(idx) + "}" if len(idx) > 1 else str(idx[0]))
        out.append(".".join(parts))
    return out


@dataclass(slots=True)
class ModuleNode:
    """A module (dotted prefix) with totals over the tensors below it."""

    name: str  # segment, e.g. "encoder", "layers.{0..15}", "weight"
    tensors: int = 0
    params: int = 0
    nbytes: int = 0
    dtypes: dict[str, int] = field(default_factory=dict)
    children: dict[str, ModuleNode] = field(default_factory=dict)
    tensor: TensorInfo | None = None  # set on leaves
    repeat: int = 1  # >1 when this node stands for folded identical siblings
    signature: int = field(default=-1, repr=False, compare=False)  # set by folding

    def add(self, t: TensorInfo) -> None:
        self.tensors += 1
        self.params += t.numel
        self.nbytes += t.nbytes
        self.dtypes[t.dtype] = self.dtypes.get(t.dtype, 0) + 1

    @property
    def is_leaf(self) -> bool:
        return self.tensor is not None and not self.children


# Below this many tensors the Python tree is built as fast as the core's columns are made.
CORE_MIN_TENSORS = 2_000


def build_tree(tensors: Mapping[str, TensorInfo], *, fold: bool = True) -> ModuleNode:
    """The module tree of `tensors`; with `fold`, identical numbered siblings are folded.

    Linear in the number of tensors times their depth (a million tensors is routine): each
    tensor's totals are computed once, and folding compares siblings by an interned signature
    number, not by walking their subtrees. From CORE_MIN_TENSORS tensors on, the compiled core
    builds it (csrc/module_tree.hpp, the same steps), unless a name is outside what it covers.
    """
    with rare_gc():  # half a million nodes, none cyclic (see inspector/bulk.py)
        found = _core_tree(tensors, fold) if len(tensors) >= CORE_MIN_TENSORS else None
        return found if found is not None else _build_tree(tensors, fold)


def _core_tree(tensors: Mapping[str, TensorInfo], fold: bool) -> ModuleNode | None:
    """The tree the core builds, or None where it leaves it to `_build_tree`."""
    from ._native import core

    kinds: dict[tuple[object, ...], int] = {}
    leaves: dict[tuple[str, tuple[int, ...]], int] = {}
    dtype_ids: dict[str, int] = {}
    rows: list[tuple[int, int, int, int]] = []
    kind_of: list[int] = []
    for t in tensors.values():
        # A plain TensorInfo's sizes follow from its dtype and shape; other kinds say their own.
        key = (t.dtype, t.shape) if type(t) is TensorInfo else (t.dtype, t.shape, t.numel, t.nbytes)
        k = kinds.get(key)
        if k is None:
            k = kinds[key] = len(rows)
            leaf = leaves.setdefault((t.dtype, t.shape), len(leaves))
            rows.append((leaf, dtype_ids.setdefault(t.dtype, len(dtype_ids)), t.numel, t.nbytes))
        kind_of.append(k)
    names = list(tensors)
    cols = core.module_tree(names, kind_of, rows, fold)
    del kinds, kind_of
    if cols is None:
        return None
    dtype_names = list(dtype_ids)
    nodes: list[ModuleNode] = []
    for parent, name, at, count, params, nbytes, dtypes, repeat, signature in zip(
        cols["parents"], cols["names"], cols["tensors"], cols["counts"], cols["params"],
        cols["nbytes"], cols["dtypes"], cols["repeats"], cols["signatures"], strict=True,
    ):
        node = ModuleNode(name, count, params, nbytes, {dtype_names[d]: n for d, n in dtypes}, {},
                          tensors[names[at]] if at >= 0 else None, repeat, signature)
        if parent >= 0:
            nodes[parent].children[name] = node
        nodes.append(node)
    return nodes[0]


def _build_tree(tensors: Mapping[str, TensorInfo], fold: bool) -> ModuleNode:
    root = ModuleNode(name="")
    sizes: dict[tuple[str, tuple[int, ...]], tuple[int, int]] = {}
    for name, t in tensors.items():
        numel, nbytes, dtype = _sizes(t, sizes)
        node = root
        for part in [None, *name.split(".")]:  # None: the root's own totals
            if part is not None:
                child = node.children.get(part)
                if child is None:
                    child = node.children[part] = ModuleNode(name=part)
                node = child
            node.tensors += 1
            node.params += numel
            node.nbytes += nbytes
            counts = node.dtypes
            counts[dtype] = counts.get(dtype, 0) + 1
        node.tensor = t
    if fold:
        _fold_tree(root, {})
    return root


def _sizes(
    t: TensorInfo, known: dict[tuple[str, tuple[int, ...]], tuple[int, int]]
) -> tuple[int, int, str]:
    """numel, nbytes and dtype of `t`, worked out once per dtype and shape for plain
    `TensorInfo`s (whose sizes depend on nothing else)."""
    dtype = t.dtype
    if type(t) is not TensorInfo:
        return t.numel, t.nbytes, dtype
    key = (dtype, t.shape)
    found = known.get(key)
    if found is None:
        found = known[key] = (t.numel, t.nbytes)
    return found[0], found[1], dtype


Signatures = dict[tuple[object, ...], int]


def _signature(node: ModuleNode, table: Signatures) -> int:
    """What must agree for siblings to fold (names, shapes and dtypes of everything below), as
    a number: equal numbers mean equal subtrees. Children are already folded and numbered."""
    own = (node.tensor.dtype, node.tensor.shape) if node.tensor is not None else None
    key = (own, tuple([(k, c.signature) for k, c in node.children.items()]))
    return table.setdefault(key, len(table))


def _fold_tree(root: ModuleNode, table: Signatures) -> None:
    """Fold runs of numbered siblings with equal signatures, bottom-up; sets `signature`.
    Iterative: a name may hold thousands of segments."""
    stack = [(root, iter(list(root.children.values())))]
    while stack:
        node, pending = stack[-1]
        child = next(pending, None)
        if child is not None:
            stack.append((child, iter(list(child.children.values()))))
            continue
        stack.pop()
        children = node.children
        if len(children) >= 2 and sum(1 for k in children if _is_index(k)) >= 2:
            _fold_children(node, table)
        node.signature = _signature(node, table)


def _is_index(part: str) -> bool:
    """`_INDEX.match(part)` without a regex call (fold_names tests millions of components at
    100k names)."""
    # `\d` is a Unicode decimal digit (sre tests Py_UNICODE_ISDECIMAL, as str.isdecimal does);
    # `$` also matches before a final newline.
    return part.isdecimal() or (part[-1:] == "\n" and part[:-1].isdecimal())


def _fold_children(node: ModuleNode, table: Signatures) -> None:
    folded: dict[str, ModuleNode] = {}
    run: list[str] = []
    for key, child in node.children.items():
        if _is_index(key):
            if run and node.children[run[-1]].signature != child.signature:
                _emit_run(node, run, folded, table)
                run = []
            run.append(key)
        else:
            if run:
                _emit_run(node, run, folded, table)
                run = []
            folded[key] = child
    if run:
        _emit_run(node, run, folded, table)
    node.children = folded


def _emit_run(
    parent: ModuleNode, run: list[str], out: dict[str, ModuleNode], table: Signatures
) -> None:
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
    merged.signature = _signature(merged, table)
    out[label] = merged


def walk(
    node: ModuleNode,
    visit: Callable[[ModuleNode, int], ModuleNode | None],
) -> None:
    """Depth-first over the nodes below `node`, in order; `visit(node, depth)` returns the node
    whose children come next (itself, or what stands for it), or None to skip them. Iterative:
    a tree may be thousands of levels deep."""
    stack = [(iter(node.children.values()), 0)]
    while stack:
        children, depth = stack[-1]
        child = next(children, None)
        if child is None:
            stack.pop()
            continue
        below = visit(child, depth)
        if below is not None:
            stack.append((iter(below.children.values()), depth + 1))


def collapse_chains(node: ModuleNode) -> ModuleNode:
    """Join single-child chains into one label (`pre_encode.conv`) for compact display.

    Totals stay those of the chain's top; a chain stops at a folded node (`layers.{0..15}`),
    whose children describe one layer.
    """
    label, last = node.name, node
    while len(last.children) == 1 and last.tensor is None and last.repeat == 1:
        (child,) = last.children.values()
        if child.is_leaf:
            break
        label, last = f"{label}.{child.name}", child
    if last is node:
        return node
    return ModuleNode(
        name=label,
        tensors=node.tensors,
        params=node.params,
        nbytes=node.nbytes,
        dtypes=node.dtypes,
        children=last.children,
        tensor=last.tensor,
        repeat=last.repeat,
    )
