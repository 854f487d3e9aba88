"""Turn the target checkpoint plus replacement values into an `Output` to write.

Every tensor of the target's whole tree (optimizer state included) becomes an `OutTensor` viewing
an `OutStorage` made from the target's storage, so untouched tensors keep their exact layout and
tied tensors stay tied. A replacement with the target tensor's dtype and shape is written into
the target storage at the tensor's place (its tied twins follow); one that changes dtype or shape
gets a storage of its own. `drop` removes a tensor from the output.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .. import dtypes
from ..containers import dotted
from ..errors import PlanError
from ..formats.unpickler import AttrDict
from ..model import Checkpoint, Storage, TensorInfo, TreePath, contiguous_strides
from .output import Output, OutStorage, OutTensor
from .produce import ArrayValue, Concatenated, Producer, RawBytes, View, ViewValue


@dataclass
class _StorageBuild:
    storage: Storage
    views: list[TensorInfo] = field(default_factory=list)
    patches: list[tuple[TensorInfo, Producer]] = field(default_factory=list)
    out: OutStorage | None = None


def build_output(
    target: Checkpoint,
    replacements: Mapping[str, Producer],
    drop: frozenset[str] | set[str] = frozenset(),
) -> Output:
    """The output: `target` with `replacements` (name -> value) and without `drop`."""
    unknown = [n for n in (*replacements, *drop) if n not in target.tensors]
    if unknown:
        raise PlanError(f"{target.label}: no such target tensor(s): {', '.join(unknown[:5])}")
    by_id = _names_by_leaf(target)
    storages = _group_storages(target)
    own: dict[str, OutStorage] = {}
    for name, value in replacements.items():
        t = target.tensors[name]
        if _same_layout(t, value):
            storages[t.storage.key].patches.append((t, value))
        else:
            own[name] = OutStorage(f"new:{name}", value.dtype, value.nbytes, value)
    for sb in storages.values():
        sb.out = _out_storage(target, sb)
    ctx = _Tree(target, storages, own, replacements, by_id, set(drop))
    tree = ctx.convert(target.tree, ())
    root_node: Any = tree
    for k in target.root:
        root_node = root_node[k]
    tensors = dict(_iter_named(root_node, ()))
    return Output(tree, target.root, tensors, target, notes=ctx.notes)


def _names_by_leaf(ckpt: Checkpoint) -> dict[int, str]:
    """id of each TensorInfo leaf under the weights root -> its dotted name (the Checkpoint's
    own map may hold renamed copies of the leaves)."""
    from ..containers import iter_tensors, subtree

    return {id(t): dotted(p) for p, t in iter_tensors(subtree(ckpt.tree, ckpt.root))}


def _group_storages(ckpt: Checkpoint) -> dict[str, _StorageBuild]:
    from ..containers import iter_tensors

    groups: dict[str, _StorageBuild] = {}
    for _, t in iter_tensors(ckpt.tree):
        sb = groups.setdefault(t.storage.key, _StorageBuild(t.storage))
        sb.views.append(t)
    return groups


def _same_layout(t: TensorInfo, value: Producer) -> bool:
    return value.dtype == t.dtype and tuple(value.shape) == t.shape


def _out_storage(ckpt: Checkpoint, sb: _StorageBuild) -> OutStorage:
    s = sb.storage
    base = _storage_bytes(ckpt, s)
    if not sb.patches:
        return OutStorage(s.key, s.dtype, s.nbytes, base)
    item = dtypes.get(s.dtype).itemsize
    pieces: list[tuple[int, Producer]] = []
    for t, value in sb.patches:
        start = t.storage_offset * item
        pieces.append((start, storage_order(t, value, ckpt.label)))
    pieces.sort(key=lambda p: p[0])
    pieces = _dedupe(pieces, s)
    parts: list[Producer] = []
    pos = 0
    for start, value in pieces:
        if start > pos:
            parts.append(_slice_of(ckpt, s, pos, start - pos))
        parts.append(value)
        pos = start + value.nbytes
    if pos < s.nbytes:
        parts.append(_slice_of(ckpt, s, pos, s.nbytes - pos))
    producer = parts[0] if len(parts) == 1 else Concatenated(parts)
    return OutStorage(s.key, s.dtype, s.nbytes, producer)


def _dedupe(pieces: list[tuple[int, Producer]], s: Storage) -> list[tuple[int, Producer]]:
    """Tied views replaced twice must agree (same range, same value); partial overlaps refused."""
    out: list[tuple[int, Producer]] = []
    for start, value in pieces:
        if out:
            prev_start, prev = out[-1]
            if start == prev_start and value.nbytes == prev.nbytes and same_value(prev, value):
                continue
            if start < prev_start + prev.nbytes:
                raise PlanError(
                    f"storage {s.key!r}: two tensors that share it (tied) would get different "
                    "values; give them the same source or keep one of them"
                )
        out.append((start, value))
    return out


def same_value(a: Producer, b: Producer) -> bool:
    if isinstance(a, ViewValue) and isinstance(b, ViewValue):
        # a storage key is unique within one checkpoint only (two sources may each hold a `w`)
        return (a.ckpt is b.ckpt and a.storage.key == b.storage.key and a.view == b.view
                and a.dtype == b.dtype)
    return a is b


def storage_order(t: TensorInfo, value: Producer, where: str = "") -> Producer:
    """`value` (C order of t's shape) reordered to the order t's elements lie in its storage.

    A contiguous view needs nothing; a dense permuted view (a stored transpose) gets the value
    permuted the same way; any other view (strided with gaps, overlapping) is refused.
    """
    if t.is_contiguous:
        return value
    perm = sorted(range(len(t.shape)), key=lambda i: -t.strides[i])
    permuted_shape = tuple(t.shape[i] for i in perm)
    if tuple(t.strides[i] for i in perm) != contiguous_strides(permuted_shape):
        raise PlanError(
            f"{where + ': ' if where else ''}{t.name}: its target view (stride "
            f"{list(t.strides)}) has gaps or overlaps in its storage; it cannot be replaced in "
            "place"
        )
    if isinstance(value, ViewValue):
        v = value.view
        return value.with_view(View(v.dtype, permuted_shape, tuple(v.strides[i] for i in perm),
                                    v.offset))
    import numpy as np

    from .produce import materialize

    arr = np.transpose(materialize(value, value.dtype, value.shape), perm)
    return ArrayValue(np.require(arr, requirements="C"), value.dtype)  # keeps 0-d arrays 0-d


def _storage_bytes(ckpt: Checkpoint, s: Storage) -> Producer:
    """The whole storage, little-endian (a big-endian one is byte-swapped by the core)."""
    item = dtypes.get(s.dtype).itemsize
    if s.byteorder == "big" and item > 1:
        n = s.nbytes // item
        return ViewValue(ckpt, s, View(s.dtype, (n,), (1,), 0))
    return RawBytes(ckpt, s)


def _slice_of(ckpt: Checkpoint, s: Storage, start: int, nbytes: int) -> Producer:
    item = dtypes.get(s.dtype).itemsize
    if s.byteorder == "big" and item > 1:
        return ViewValue(ckpt, s, View(s.dtype, (nbytes // item,), (1,), start // item))
    return RawBytes(ckpt, s, start, nbytes)


class _Tree:
    def __init__(self, target: Checkpoint, storages: dict[str, _StorageBuild],
                 own: dict[str, OutStorage], replacements: Mapping[str, Producer],
                 by_id: dict[int, str], drop: set[str]):
        self.target, self.storages, self.own = target, storages, own
        self.replacements, self.by_id, self.drop = replacements, by_id, drop
        self.done: dict[int, OutTensor] = {}
        self.copies: dict[int, Any] = {}  # id of a target dict/list -> its output copy
        self.notes: list[str] = []

    def convert(self, node: Any, path: TreePath) -> Any:
        """The output copy of `node`. A dict or list is copied once and registered before its
        items are, so a container shared between places stays shared and one that points back
        into itself (legal in pickles) does not recurse forever."""
        if isinstance(node, TensorInfo):
            return self._tensor(node)
        if not isinstance(node, (dict, list, tuple)):
            return node
        copied = self.copies.get(id(node))
        if copied is not None:
            return copied
        if isinstance(node, tuple):
            return tuple(self.convert(v, (*path, i)) for i, v in enumerate(node))
        out: Any = [] if isinstance(node, list) else {}
        if isinstance(node, AttrDict):
            out = AttrDict()
        self.copies[id(node)] = out
        if isinstance(node, AttrDict):
            out.attrs = node.attrs
        if isinstance(node, dict):
            out.update(self._items(node, path))
        else:
            out.extend(self.convert(v, (*path, i)) for i, v in enumerate(node))
        return out

    def _items(self, node: dict[Any, Any], path: TreePath) -> list[tuple[Any, Any]]:
        items = []
        for k, v in node.items():
            if isinstance(v, TensorInfo) and self.by_id.get(id(v)) in self.drop:
                continue
            items.append((k, self.convert(v, (*path, k))))
        return items

    def _tensor(self, t: TensorInfo) -> OutTensor:
        done = self.done.get(id(t))
        if done is not None:
            return done
        name = self.by_id.get(id(t), t.name)
        value = self.replacements.get(name)
        if name in self.own and value is not None:
            storage = self.own[name]
            out = OutTensor(name, value.dtype, tuple(value.shape),
                            contiguous_strides(tuple(value.shape)), 0, storage, value,
                            t.is_parameter, t.requires_grad, changed=True)
        else:
            sb = self.storages[t.storage.key]
            assert sb.out is not None
            patched = self._tied_value(sb, t)
            out = OutTensor(name, t.dtype, t.shape, t.strides, t.storage_offset, sb.out,
                            value or patched or ViewValue(self.target, t.storage, View.of(t)),
                            t.is_parameter, t.requires_grad,
                            changed=value is not None or patched is not None)
        self.done[id(t)] = out
        return out

    def _tied_value(self, sb: _StorageBuild, t: TensorInfo) -> Producer | None:
        """The new value of an untouched tensor whose storage a tied twin's replacement wrote."""
        for other, value in sb.patches:
            if other is t:
                return value
            if View.of(other) == View.of(t):
                return value
            if _overlaps(other, t):
                raise PlanError(
                    f"{t.name}: shares its storage with the replaced {other.name} through another "
                    "view; replace both or neither"
                )
        return None


def _overlaps(a: TensorInfo, b: TensorInfo) -> bool:
    from ..model import element_span

    alo, ahi = element_span(a.shape, a.strides, a.storage_offset)
    blo, bhi = element_span(b.shape, b.strides, b.storage_offset)
    return alo < bhi and blo < ahi


def _iter_named(node: Any, path: TreePath) -> list[tuple[str, OutTensor]]:
    from .output import iter_out_tensors

    return [(dotted(p), t) for p, t in iter_out_tensors(node, path)]
