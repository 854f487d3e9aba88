"""torch < 0.4's tar checkpoint, read in place: members sys_info, pickle, tensors, storages.

The reference is `legacy_load` in torch/serialization.py (torch still loads these files with
`weights_only=False`). Every member is one stream; integers and raw bytes are in the writer's
byte order (`sys_info['little_endian']`):

    sys_info   pickle {'protocol_version': 1001, 'little_endian': ..., 'type_sizes': ...}
    storages   pickle(count); per storage pickle((key, location, storage class)), then
               int64 element count + raw bytes (storage._write_file); then
               pickle([(view_key, root_key, offset, numel), ...]): storage views
    tensors    pickle(count); per tensor pickle((key, storage_key, tensor class)), then
               int32 ndim, 4 padding bytes, int64 sizes[ndim], int64 strides[ndim], int64 offset
    pickle     the object; a persistent id is str(key) of a tensor (or a storage), or a tuple
               (nn.Module class, source file, source) for a pickled module

Keys are ints (the objects' addresses at save time). Members are located with `tar_safe`
(links, absolute paths and `..` refused) and never extracted: each storage is a `Storage` at its
absolute offset in the tar. Every pickle is read by the restricted unpickler; record pickles
with an empty allow-list (they hold ints, strings and class names, nothing to call).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any

from .. import dtypes
from ..errors import (
    CheckpointError,
    DuplicateKeyError,
    MissingRecordError,
    PickleError,
    ShapeError,
    TensorDataError,
    TruncatedFileError,
    UnsafePickleError,
)
from ..model import ByteSource, Storage, TensorInfo
from ..sources import Slices, Source, name_of, opened
from . import Loaded, ReadOptions
from .tar_safe import Member, read_members
from .torch_pickle import MAX_DIMS, check_root, storage_dtype, tensor_view
from .unpickler import BuildError, GlobalRef, Unpickler, scan_globals

MEMBERS = ("sys_info", "pickle", "tensors", "storages")
RECORD_MEMBERS = ("storages", "tensors")
_MAX_KEY_DIGITS = 32  # persistent ids are str(address): far shorter
# Record pickles are read from a copy of the member: first a small window (records are tens of
# bytes), then a larger one for the storage-view list; a pickle longer than that is refused.
_WINDOWS = (1 << 10, 1 << 26)


@dataclass
class _Cursor:
    """Reads one member front to back; nothing is read outside [member.offset, member end)."""

    data: Any  # the whole tar file: anything that slices to bytes (Slices, _FileBytes, bytes)
    member: Member
    where: str
    order: str  # struct byte-order prefix: "<" or ">"
    strict: bool = False
    pos: int = 0
    spans: list[tuple[int, int]] = field(default_factory=list)  # every pickle read: [start, end)
    globals: list[GlobalRef] = field(default_factory=list)
    unreadable: bool = False  # the last pickle could not be read

    def __post_init__(self) -> None:
        self.pos = self.member.offset

    @property
    def end(self) -> int:
        return self.member.offset + self.member.size

    @property
    def left(self) -> int:
        return self.end - self.pos

    def key(self, what: str | int) -> str:
        return f"{self.member.key}/{what}"

    def pickle(self, what: str) -> Any:
        """The pickle at the cursor, read from a copy of at most `_WINDOWS[-1]` bytes of the
        member (so that it cannot run into the next member); the cursor moves past it."""
        if self.left <= 0:
            raise TruncatedFileError(
                self.where, f"member ends before the {what}", key=self.key(what)
            )
        start = self.pos
        for window in _WINDOWS:
            chunk = self.data[start : start + min(window, self.left)]
            machine = Unpickler(
                chunk, path=self.where, key=self.key(what), builders={}, strict=self.strict
            )
            try:
                value, used = machine.load_at(0)
                break
            except UnsafePickleError:
                self.unreadable = True
                raise
            except PickleError:
                if len(chunk) == self.left or window == _WINDOWS[-1]:
                    self.unreadable = True
                    raise
        self.spans.append((start, start + used))
        self.globals.extend(_shifted(machine.globals, start))
        self.pos = start + used
        return value

    def ints(self, fmt: str, what: str) -> tuple[int, ...]:
        size = struct.calcsize(self.order + fmt)
        if size > self.left:
            raise TruncatedFileError(
                self.where,
                f"member ends inside the {what} ({size} bytes needed, {self.left} left)",
                key=self.key(what),
            )
        values = struct.unpack(self.order + fmt, self.data[self.pos : self.pos + size])
        self.pos += size
        return tuple(values)

    def skip(self, nbytes: int, what: str) -> int:
        """Step over `nbytes` of raw data; returns where they start (absolute)."""
        if nbytes > self.left:
            raise TruncatedFileError(
                self.where,
                f"{what} of {nbytes} bytes at {self.pos} runs past the end of its member "
                f"({self.left} bytes left)",
                key=self.key(what),
            )
        start, self.pos = self.pos, self.pos + nbytes
        return start

    def count(self, what: str, min_record: int) -> int:
        """A leading count, bounded by what the member can hold (`min_record` bytes each)."""
        n = self.pickle(f"{what} count")
        if type(n) is not int or n < 0 or n * min_record > self.left:
            raise TensorDataError(
                self.where,
                f"{what} count {str(n)[:40]} does not fit the {self.left} bytes left in the member",
                key=self.member.key,
            )
        return n


@dataclass(frozen=True)
class _TensorRecord:
    key: int
    storage_key: Any
    shape: tuple[int, ...]
    strides: tuple[int, ...]
    offset: int


def read(path: Path | Source, options: ReadOptions, format_name: str) -> Loaded:
    with opened(path) as src:
        where = src.name
        members = _members(src)
        data = Slices(src)  # reads, not a map: records are small and far apart
        sys_info = Unpickler(
            _member_bytes(data, members["sys_info"]),
            path=where,
            key="sys_info",
            strict=options.strict,
        ).load_at(0)[0]
        order, byteorder = ("<", "little") if _is_little(sys_info) else (">", "big")
        storages_cur = _Cursor(data, members["storages"], where, order, options.strict)
        storages = read_storages(storages_cur, byteorder)
        tensors_cur = _Cursor(data, members["tensors"], where, order, options.strict)
        tensors = _link(read_tensors(tensors_cur), storages, where)
        objects = {**storages, **tensors}  # torch's one table: a tensor wins a shared key
        machine = Unpickler(
            _member_bytes(data, members["pickle"]),
            path=where,
            key="pickle",
            persistent_load=lambda pid: _persistent(pid, objects, where),
            strict=options.strict,
        )
        tree, _ = machine.load_at(0)
        check_root(tree, path=where, key="pickle")
    notes = ["torch < 0.4 tar layout (members sys_info, pickle, tensors, storages)"]
    notes += _leftovers(storages_cur, tensors_cur, members)
    if byteorder == "big":
        notes.append("tensors are stored big-endian")
    if machine.unsupported:
        notes.append(
            "unsupported globals shown as records, not called: " + ", ".join(machine.unsupported)
        )
    meta = {"byteorder": byteorder, "sys_info": sys_info, "layout": "tar"}
    return Loaded(format_name, tree, metadata=meta, notes=notes)


def scan(path: Path | Source) -> list[GlobalRef]:
    """Every global the tar's pickles would import, record pickles included; nothing is built.
    The walk of a record member stops after a record that is not what torch writes."""
    found: list[GlobalRef] = []
    with opened(path) as src:
        where = src.name
        members = _members(src)
        data = Slices(src)  # reads, not a map: records are small and far apart
        info = members["sys_info"]
        m = Unpickler(_member_bytes(data, info), path=where, key="sys_info", builders={})
        order = "<" if _is_little(m.load_at(0)[0]) else ">"  # the records' byte order
        found.extend(_shifted(m.globals, info.offset))
        obj = members["pickle"]
        refs = scan_globals(_member_bytes(data, obj), path=where, key="pickle")
        found.extend(_shifted(refs, obj.offset))
        for name in RECORD_MEMBERS:
            cur = _Cursor(data, members[name], where, order)
            try:
                _read_records(cur)
            except CheckpointError:
                # Past a record that is not what torch writes (a payload, say) no further
                # pickle can be located: the globals so far are the answer. A pickle that
                # cannot be read at all is an error, as in the stream format's scan.
                if cur.unreadable:
                    raise
            found.extend(cur.globals)
    return found


@dataclass(frozen=True)
class MemberWalk:
    spans: list[tuple[int, int]]  # [start, end) of every pickle, relative to the member
    globals: list[GlobalRef]
    error: str | None  # why the walk stopped early
    stop: int  # where it stopped: the start of the pickle or field it could not read


def member_pickles(f: IO[bytes], name: str, size: int, where: str) -> MemberWalk:
    """Walk a `storages` or `tensors` member read from `f` (positioned anywhere; the member is
    f's bytes [0, size)): where its pickles are, found by following the layout."""
    cur = _Cursor(_FileBytes(f), Member(name, "file", 0, size), where, "<")
    try:
        _read_records(cur)
    except CheckpointError as e:
        return MemberWalk(cur.spans, cur.globals, str(e), cur.pos)
    return MemberWalk(cur.spans, cur.globals, None, cur.pos)


def _read_records(cur: _Cursor) -> None:
    """Read a record member for its pickles only."""
    if cur.member.key == "storages":
        read_storages(cur, "little" if cur.order == "<" else "big")
    else:
        read_tensors(cur)


class _FileBytes:
    """Slicing reads a seekable file: enough of a buffer for `_Cursor`. (An mmap would do, but
    each record touched would map its neighbourhood of storage pages into the process.)"""

    def __init__(self, f: IO[bytes]):
        self.f = f

    def __getitem__(self, span: slice) -> bytes:
        self.f.seek(span.start)
        return self.f.read(span.stop - span.start)


def _members(path: Path | Source) -> dict[str, Member]:
    members = {m.key: m for m in read_members(path) if m.kind == "file"}
    for name in MEMBERS:
        if name not in members:
            raise MissingRecordError(
                name_of(path), "torch tar checkpoint without this member", key=name
            )
    return members


def _shifted(refs: list[GlobalRef], offset: int) -> list[GlobalRef]:
    """Positions relative to a copied chunk made absolute in the file."""
    return [replace(r, position=r.position + offset) for r in refs]


def _is_little(sys_info: Any) -> bool:
    return not isinstance(sys_info, dict) or bool(sys_info.get("little_endian", True))


def _member_bytes(data: Any, member: Member) -> bytes:
    """A copy of a (small) member: the sys_info and object pickles."""
    chunk: bytes = data[member.offset : member.offset + member.size]
    return chunk


def read_storages(cur: _Cursor, byteorder: str) -> dict[int, Storage]:
    """The storages member: every root storage at its absolute offset, then the views."""
    storages: dict[int, Storage] = {}
    for i in range(cur.count("storage", min_record=8)):
        record = cur.pickle(f"storage record {i}")
        if not (isinstance(record, tuple) and len(record) == 3 and type(record[0]) is int):
            raise PickleError(
                cur.where, f"storage record is {str(record)[:120]}", key=cur.key(f"record {i}")
            )
        key, _location, storage_class = record
        label = cur.key(key)
        dtype = storage_dtype(storage_class, path=cur.where, key=label)
        (numel,) = cur.ints("q", f"element count of storage {key}")
        if numel < 0:
            raise TensorDataError(cur.where, f"negative element count {numel}", key=label)
        nbytes = numel * dtypes.get(dtype).itemsize
        start = cur.skip(nbytes, f"storage {key}")
        if key in storages:
            raise DuplicateKeyError(cur.where, "storage key appears twice", key=label)
        src = ByteSource(cur.where, start, nbytes)
        storages[key] = Storage(f"storages/{key}", dtype, nbytes, src, byteorder=byteorder)
    _add_views(cur, cur.pickle("storage views"), storages)
    return storages


def _add_views(cur: _Cursor, views: Any, storages: dict[int, Storage]) -> None:
    """torch < 0.4 `storage[offset:offset + numel]` slices: sub-ranges of a root storage."""
    if not isinstance(views, list):
        raise PickleError(cur.where, "storage views are not a list", key=cur.key("views"))
    for view in views:
        if not (
            isinstance(view, tuple)
            and len(view) == 4
            and all(type(v) is int for v in view)
            and view[2] >= 0
            and view[3] >= 0
        ):
            raise PickleError(
                cur.where, f"malformed storage view {str(view)[:120]}", key=cur.key("views")
            )
        key, root_key, offset, numel = view
        root = storages.get(root_key)
        if root is None:
            raise MissingRecordError(
                cur.where, f"storage view of missing storage {root_key}", key=cur.key(key)
            )
        if key in storages:
            raise DuplicateKeyError(cur.where, "storage view key appears twice", key=cur.key(key))
        itemsize = dtypes.get(root.dtype).itemsize
        lo, n = offset * itemsize, numel * itemsize
        if lo + n > root.nbytes:
            raise ShapeError(
                cur.where,
                f"view [{lo}, {lo + n}) beyond storage {root_key} of {root.nbytes} bytes",
                key=cur.key(key),
            )
        src = ByteSource(cur.where, root.source.offset + lo, n)
        storages[key] = Storage(f"storages/{key}", root.dtype, n, src, root.byteorder)


def read_tensors(cur: _Cursor) -> list[_TensorRecord]:
    """The tensors member: each tensor's storage key and strided view, unchecked."""
    records = []
    for i in range(cur.count("tensor", min_record=16)):
        record = cur.pickle(f"tensor record {i}")
        if not (isinstance(record, tuple) and len(record) == 3 and type(record[0]) is int):
            raise PickleError(
                cur.where, f"tensor record is {str(record)[:120]}", key=cur.key(f"record {i}")
            )
        key, storage_key, _tensor_class = record
        ndim, _padding = cur.ints("iI", f"dimensions of tensor {key}")
        if not 0 <= ndim <= MAX_DIMS:
            raise ShapeError(cur.where, f"{ndim} dimensions (at most {MAX_DIMS})", key=cur.key(key))
        shape = cur.ints(f"{ndim}q", f"sizes of tensor {key}")
        strides = cur.ints(f"{ndim}q", f"strides of tensor {key}")
        (offset,) = cur.ints("q", f"storage offset of tensor {key}")
        records.append(_TensorRecord(key, storage_key, shape, strides, offset))
    return records


def _link(records: list[_TensorRecord], storages: dict[int, Storage], where: str) -> dict[int, Any]:
    tensors: dict[int, TensorInfo] = {}
    for r in records:
        label = f"tensors/{r.key}"
        if r.key in tensors:
            raise DuplicateKeyError(where, "tensor key appears twice", key=label)
        storage = storages.get(r.storage_key) if type(r.storage_key) is int else None
        if storage is None:
            raise MissingRecordError(
                where,
                f"tensor views storage {str(r.storage_key)[:40]}, absent from the storages member",
                key=label,
            )
        try:
            tensors[r.key] = tensor_view(storage, r.offset, r.shape, r.strides, None)
        except BuildError as e:
            raise e.error(where, e.what, key=label) from None
    return tensors


def _persistent(pid: Any, objects: dict[int, Any], where: str) -> Any:
    if isinstance(pid, tuple) and pid:
        return pid[0]  # a pickled nn.Module: (class, source file, source); the class only
    key = _int_key(pid)
    if key is None or key not in objects:
        raise MissingRecordError(
            where,
            f"the pickle refers to {str(pid)[:40]!r}, neither a tensor nor a storage of the file",
            key="pickle",
        )
    return objects[key]


def _int_key(pid: Any) -> int | None:
    if type(pid) is int:
        return pid
    if isinstance(pid, bytes):
        pid = pid.decode("ascii", "replace")
    text = pid.removeprefix("-") if isinstance(pid, str) else ""
    if not text.isascii() or not text.isdigit() or len(text) > _MAX_KEY_DIGITS:
        return None
    return int(pid)


def _leftovers(storages: _Cursor, tensors: _Cursor, members: dict[str, Member]) -> list[str]:
    notes = [f"{c.left} bytes after the last record of {c.member.key!r} are ignored"
             for c in (storages, tensors) if c.left]  # fmt: skip
    extra = sorted(k for k in members if k not in MEMBERS)
    if extra:
        notes.append("members ignored: " + ", ".join(extra))
    return notes
