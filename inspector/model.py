"""The checkpoint model every reader produces and every stage consumes.

A `Checkpoint` is lazy: names, dtypes, shapes, strides and byte ranges only. Tensor bytes are
reached through `Checkpoint.storage_bytes()` (a view of the bytes' source, `inspector.sources`:
memory-mapped for local files, no copy) or `Checkpoint.array()` (a numpy view of the logical
tensor).
"""

from __future__ import annotations

import numbers
import threading
import zlib
from collections.abc import ItemsView, Iterator, KeysView, Mapping, ValuesView
from dataclasses import dataclass, field
from math import prod
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import dtypes
from .errors import TensorDataError
from .sharded import open_named
from .sources import Source

if TYPE_CHECKING:  # numpy is imported where arrays are made: listing does not need it
    import numpy as np

TreePath = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class ByteSource:
    """Where a storage's bytes are: a range of a source (`path`: a file path, or the name of a
    `sources.Source` given to the checkpoint), or an in-memory buffer.

    `compression` is "" for raw bytes, or "deflate" for a zip record stored compressed (then
    `offset`/`length` describe the compressed bytes and `size` the decompressed size).
    `assembled`: the source is not a file but a tensor's bytes gathered from chunks in several
    files (`inspector.sharded`): readable, never patched in place.
    """

    path: str | None
    offset: int
    length: int
    compression: str = ""
    size: int = -1
    buffer: Any = None  # object exposing the buffer protocol, when path is None
    assembled: bool = False

    @property
    def nbytes(self) -> int:
        return self.size if self.compression else self.length

    @property
    def patchable(self) -> bool:
        """True when the bytes can be overwritten in place in the file (and copied from it in
        the kernel): never for a remote object, whose name is its URL."""
        return (self.path is not None and not self.compression and not self.assembled
                and "://" not in self.path)


@dataclass(frozen=True, slots=True)
class Storage:
    """A flat run of elements that one or more tensors view (tied weights share one)."""

    key: str  # unique within the checkpoint: zip record name, a safetensors tensor's name, ...
    dtype: str
    nbytes: int
    source: ByteSource
    byteorder: str = "little"


@dataclass(frozen=True, slots=True)
class TensorInfo:
    """One tensor: a strided view (in elements) of a storage."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    strides: tuple[int, ...]
    storage_offset: int
    storage: Storage
    is_parameter: bool = False
    requires_grad: bool = False

    @property
    def numel(self) -> int:
        return prod(self.shape)

    @property
    def itemsize(self) -> int:
        return dtypes.get(self.dtype).itemsize

    @property
    def nbytes(self) -> int:
        """Logical size: numel * itemsize (what the tensor holds, not the storage)."""
        return self.numel * self.itemsize

    @property
    def is_contiguous(self) -> bool:
        return self.strides == contiguous_strides(self.shape) or self.numel <= 1

    @property
    def byte_range(self) -> tuple[int, int] | None:
        """Absolute [start, end) of the bytes this tensor spans in its file, or None.

        None for in-memory and compressed storages. For a non-contiguous view the range is the
        span it touches, which may include elements it does not use.
        """
        src = self.storage.source
        if not src.patchable:
            return None
        lo, hi = element_span(self.shape, self.strides, self.storage_offset)
        return src.offset + lo * self.itemsize, src.offset + hi * self.itemsize


@dataclass(frozen=True, slots=True)
class Record:
    """A non-tensor object from a pickle, kept as data: class name and state, never built.

    kind: "object" (a state-only class such as argparse.Namespace or an OmegaConf container),
    "unsupported-global" (a call to something outside the allow-list: shown, not executed).
    """

    cls: str
    kind: str = "object"
    args: tuple[Any, ...] = ()
    state: Any = None

    def __hash__(self) -> int:
        """Agrees with `__eq__` and is bounded: records are dict keys (DCP's `MetadataIndex`,
        8k of one class), so the hash must see their fields, yet a field may point back at the
        record (OmegaConf's `_parent`). `_bounded_hash` looks `HASH_DEPTH` levels deep at no
        more than `HASH_BUDGET` values, and at a nested record only at its class and kind."""
        budget = [HASH_BUDGET]
        return hash((self.cls, self.kind, _bounded_hash(self.args, HASH_DEPTH, budget),
                     _bounded_hash(self.state, HASH_DEPTH, budget)))

    def __eq__(self, other: object) -> bool:
        """Field equality that terminates on records pointing back at themselves (OmegaConf's
        `_parent`): a pair already being compared further up counts as equal."""
        if self is other:
            return True
        if not isinstance(other, Record):
            return NotImplemented
        pairs = _comparing()
        pair = (id(self), id(other))
        if pair in pairs:
            return True
        pairs.add(pair)
        try:
            return (self.cls, self.kind, self.args, self.state) == (
                other.cls,
                other.kind,
                other.args,
                other.state,
            )
        finally:
            pairs.discard(pair)

    def __str__(self) -> str:
        if self.kind == "unsupported-global":
            return f"<unsupported global {self.cls}>"
        return f"<{self.cls}>"


HASH_DEPTH = 4  # container levels of a record's fields that its hash looks into
HASH_BUDGET = 64  # values its hash looks at, all levels together


def _bounded_hash(value: Any, depth: int, budget: list[int]) -> int:
    """A hash of `value` that agrees with `==` and visits at most `budget[0]` values.

    Equal values hash alike because each part hashed is one that equality compares: a nested
    record's class and kind, a sequence's length and leading items, a dict's length and (when
    the budget covers all of it) its items summed, so that insertion order does not count.
    Numbers and strings hash as Python hashes them (1 == 1.0 == True hash alike); any other
    type counts as 0, which cannot disagree with equality.
    """
    budget[0] -= 1
    if type(value) in _PLAIN:  # most fields: the same hash as below, without the ABC check
        return hash(value)
    if isinstance(value, Record):
        return hash((value.cls, value.kind))
    if value is None or isinstance(value, (str, bytes, numbers.Number)):
        try:
            return hash(value)
        except TypeError:
            return 0
    if isinstance(value, (tuple, list)):
        h = hash((isinstance(value, tuple), len(value)))
        for item in value:
            if depth <= 0 or budget[0] <= 0:
                break
            if type(item) in _PLAIN:  # inlined: records are dict keys by the 100k (DCP)
                budget[0] -= 1
                h = hash((h, hash(item)))
            else:
                h = hash((h, _bounded_hash(item, depth - 1, budget)))
        return h
    if isinstance(value, dict):
        if depth <= 0 or 2 * len(value) > budget[0]:
            return hash(("dict", len(value)))
        share = budget[0] // len(value) if value else 0  # per item, so that order cannot count
        budget[0] -= share * len(value)
        total = len(value)
        for k, v in value.items():
            mine = [share]
            hk = hash(k) if type(k) in _PLAIN else _bounded_hash(k, depth - 1, mine)
            if type(k) in _PLAIN:
                mine[0] -= 1
            hv = hash(v) if type(v) in _PLAIN else _bounded_hash(v, depth - 1, mine)
            total += hash((hk, hv))
        return hash(("dict", total & _MASK))
    return 0


_PLAIN = frozenset({str, int, float, bool, bytes, type(None)})
_MASK = (1 << 64) - 1
_LOCAL = threading.local()


def _comparing() -> set[tuple[int, int]]:
    """The record pairs this thread is comparing now."""
    pairs: set[tuple[int, int]] | None = getattr(_LOCAL, "pairs", None)
    if pairs is None:
        pairs = _LOCAL.pairs = set()
    return pairs


def contiguous_strides(shape: tuple[int, ...]) -> tuple[int, ...]:
    strides, acc = [], 1
    for n in reversed(shape):
        strides.append(acc)
        acc *= max(n, 1)
    return tuple(reversed(strides))


def element_span(shape: tuple[int, ...], strides: tuple[int, ...], offset: int) -> tuple[int, int]:
    """[lo, hi) element indices of the storage a strided view touches (empty: lo == hi)."""
    if any(n == 0 for n in shape):
        return offset, offset
    lo = hi = offset
    for n, s in zip(shape, strides, strict=False):
        if s >= 0:
            hi += (n - 1) * s
        else:
            lo += (n - 1) * s
    return lo, hi + 1


@dataclass
class Checkpoint(Mapping[str, TensorInfo]):
    """A checkpoint opened lazily. A Mapping from dotted tensor name to TensorInfo.

    `tree` is the whole container (dicts, lists, plain values, `Record`s, TensorInfo leaves);
    `root` is the path of the weights sub-tree inside it, whose tensors are `tensors`, named
    relative to the root. `metadata` holds format-specific extras (NeMo config and artifacts,
    safetensors `__metadata__`, the zip root folder, ...); `notes` tells the user things they
    should know (a decompressed cache, unsupported globals, a detected root).
    """

    path: Path | None
    format: str
    tree: Any
    tensors: dict[str, TensorInfo]
    root: TreePath = ()
    metadata: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    sources: dict[str, Source] = field(default_factory=dict, repr=False)  # by storage path
    _owned: set[str] = field(default_factory=set, repr=False)  # opened here: closed by close()
    _inflated: dict[str, bytes] = field(default_factory=dict, repr=False)

    # Mapping interface -------------------------------------------------------------------------
    def __getitem__(self, name: str) -> TensorInfo:
        return self.tensors[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.tensors)

    def __len__(self) -> int:
        return len(self.tensors)

    # The dict's own views: Mapping's would look every name up again (a million tensors).
    def keys(self) -> KeysView[str]:
        return self.tensors.keys()

    def values(self) -> ValuesView[TensorInfo]:
        return self.tensors.values()

    def items(self) -> ItemsView[str, TensorInfo]:
        return self.tensors.items()

    def __hash__(self) -> int:  # identity: checkpoints are handles, not values
        return id(self)

    def __eq__(self, other: object) -> bool:
        return self is other

    @property
    def label(self) -> str:
        return str(self.path) if self.path is not None else f"<{self.format}>"

    @property
    def files(self) -> list[str]:
        """Every file whose bytes this checkpoint references."""
        seen: dict[str, None] = {}
        for t in self.tensors.values():
            src = t.storage.source
            if src.assembled and src.path is not None:  # a sharded tensor: its chunks' files
                seen.update(dict.fromkeys(getattr(self.source(src.path), "files", ())))
            elif src.path is not None:
                seen.setdefault(src.path)
        return list(seen)

    def tied_groups(self) -> list[list[str]]:
        """Names of tensors that share one storage (tied weights), groups of two or more."""
        keys = [t.storage.key for t in self.tensors.values()]
        if len(set(keys)) == len(keys):  # the common case: no storage shared
            return []
        groups: dict[str, list[str]] = {}
        for name, t in self.tensors.items():
            groups.setdefault(t.storage.key, []).append(name)
        return [g for g in groups.values() if len(g) > 1]

    # Byte access --------------------------------------------------------------------------------
    def source(self, name: str) -> Source:
        """The byte source a storage's `path` names: one given when the checkpoint was opened
        (bytes in memory, ...), else the local file, opened and mapped once per checkpoint."""
        src = self.sources.get(name)
        if src is None:
            opened = open_named(name)
            src = self.sources.setdefault(name, opened)
            if src is not opened:  # another thread opened it first
                opened.close()
            self._owned.add(name)
        return src

    def storage_bytes(self, storage: Storage) -> memoryview:
        """The raw bytes of a storage: a view of its source (no copy where the source maps)."""
        src = storage.source
        if src.path is None:
            return memoryview(src.buffer).cast("B")
        if src.compression:
            return memoryview(self._inflate(storage))
        where = self.source(src.path)
        if where.size == 0:
            raise TensorDataError(src.path, "file is empty")
        if src.offset + src.length > where.size:
            raise TensorDataError(
                src.path,
                f"storage bytes [{src.offset}, {src.offset + src.length}) beyond the file "
                f"({where.size} bytes)",
                key=storage.key,
            )
        view = where.view(src.offset, src.length)
        return view if view is not None else memoryview(where.read(src.offset, src.length))

    def array(self, name: str) -> np.ndarray:
        """The logical tensor as a read-only numpy array (a view of the mapped bytes).

        bfloat16 and float8 have no numpy type: they come back as unsigned ints of the same size.
        Big-endian storages come back with a big-endian dtype (numpy handles them correctly).
        """
        t = self.tensors[name]
        return tensor_array(t, self.storage_bytes(t.storage))

    def release(self, storage: Storage) -> None:
        """Drop a storage's pages from this process once its bytes have been used.

        File ranges are mapped shared and read-only: the pages leave the process (its RSS stays
        flat over a multi-GB pass) but stay in the page cache, and a later read faults them back
        in. Inflated records are forgotten. Memory of in-memory objects is never touched.
        """
        src = storage.source
        if src.compression:
            self._inflated.pop(storage.key, None)
            return
        if src.path is not None:
            self.release_range(src.path, src.offset, src.length)

    def release_range(self, path: str, offset: int, length: int) -> None:
        """Drop bytes [offset, offset + length) of a source from this process (`release` for
        part of a storage: a large tensor's finished windows); see `Source.release`."""
        src = self.sources.get(path)
        if src is not None:
            src.release(offset, length)

    def _inflate(self, storage: Storage) -> bytes:
        data = self._inflated.get(storage.key)
        if data is None:
            src = storage.source
            raw = self.source(src.path).read(src.offset, src.length)  # type: ignore[arg-type]
            try:
                data = zlib.decompress(raw, -15)
            except zlib.error as e:
                raise TensorDataError(
                    src.path, f"cannot inflate record: {e}", key=storage.key
                ) from e
            if len(data) != src.size:
                raise TensorDataError(
                    src.path,
                    f"record inflates to {len(data)} bytes, header says {src.size}",
                    key=storage.key,
                )
            self._inflated[storage.key] = data
        return data

    def close(self) -> None:
        """Close the sources this checkpoint opened (sources given to it stay with their
        owner); a view still held keeps its map alive until it goes."""
        for name in self._owned:
            src = self.sources.pop(name, None)
            if src is not None:
                src.close()
        self._owned.clear()
        self._inflated.clear()

    def __enter__(self) -> Checkpoint:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def tensor_array(t: TensorInfo, raw: memoryview) -> np.ndarray:
    """A numpy view of tensor `t` over its storage's raw bytes, with bounds checked."""
    import numpy as np

    d = dtypes.get(t.dtype)
    np_dtype = dtypes.numpy_view_dtype(d)
    if t.storage.byteorder == "big" and d.itemsize > 1:
        np_dtype = np_dtype.newbyteorder(">")
    lo, hi = element_span(t.shape, t.strides, t.storage_offset)
    if lo < 0 or hi * d.itemsize > len(raw):
        raise TensorDataError(
            t.storage.source.path,
            f"tensor spans elements [{lo}, {hi}) of a storage holding {len(raw) // d.itemsize}",
            key=t.name,
        )
    if t.numel == 0:
        return np.empty(t.shape, dtype=np_dtype)
    arr = np.ndarray(
        t.shape,
        dtype=np_dtype,
        buffer=raw,
        offset=t.storage_offset * d.itemsize,
        strides=tuple(s * d.itemsize for s in t.strides),
    )
    arr.flags.writeable = False
    return arr


@dataclass(frozen=True)
class Signature:
    """Tensor i is (names[i], shapes[i], dtypes[i]); dtypes use canonical names ("float32")."""

    names: list[str]
    shapes: list[tuple[int, ...]]
    dtypes: list[str]

    def __post_init__(self) -> None:
        if not len(self.names) == len(self.shapes) == len(self.dtypes):
            raise ValueError("names, shapes and dtypes must have the same length")

    def __len__(self) -> int:
        return len(self.names)

    @classmethod
    def of(cls, ckpt: Checkpoint) -> Signature:
        """The signature of an opened checkpoint (its weights sub-tree, in its order)."""
        tensors = list(ckpt.values())
        return cls(
            [t.name for t in tensors], [t.shape for t in tensors], [t.dtype for t in tensors]
        )
