"""torch.save's pre-1.6 format (`_use_new_zipfile_serialization=False`), still written today.

One file of consecutive pickles, then raw storages:

    pickle(MAGIC)  pickle(1001)  pickle(sys_info)  pickle(object)  pickle([storage keys])
    for each key in that list: element count (8 bytes, the writer's byte order) + raw bytes

The object pickle names storages by persistent ids ('storage', type, key, location, numel,
view) where view is None or (view_key, offset, size) in elements of a root storage. Storage
offsets are computed by stepping over the count headers (8 bytes read per storage, no data).

The even older tar layout (members sys_info, pickle, tensors, storages: torch < 0.4) is read
by `torch_tar`, in place.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .. import dtypes
from ..errors import (
    MissingRecordError,
    PickleError,
    ShapeError,
    TensorDataError,
    TruncatedFileError,
    UnsupportedFormatError,
)
from ..model import ByteSource, Storage
from ..sources import Source, buffer, opened
from . import Loaded, ReadOptions, tar_safe, torch_tar
from .torch_pickle import check_root, parse_storage_id, storage_dtype
from .unpickler import GlobalRef, GlobalScan, Unpickler, scan_pickle

FORMAT = "torch-legacy"
MAGIC = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION = 1001
STREAM_PICKLES = 5  # magic number, protocol version, sys_info, object, storage keys
_TAR_MEMBERS = tuple(name.encode() for name in torch_tar.MEMBERS)


def sniff(path: Path, head: bytes) -> bool:
    return path.is_file() and (_is_legacy_tar(head) or _starts_with_magic(head, str(path)))


def sniff_source(name: str, head: bytes) -> bool:
    return _is_legacy_tar(head) or _starts_with_magic(head, name)


def _starts_with_magic(head: bytes, where: str) -> bool:
    try:
        value, _ = Unpickler(head, path=where, builders={}).load_at(0)
    except PickleError:
        return False
    return type(value) is int and value == MAGIC


def _is_legacy_tar(head: bytes) -> bool:
    return tar_safe.is_tar_head(head) and head[:100].rstrip(b"\0") in _TAR_MEMBERS


def read(path: Path | Source, options: ReadOptions) -> Loaded:
    with opened(path) as src:
        if _is_legacy_tar(src.read(0, min(512, src.size))):
            return torch_tar.read(src, options, FORMAT)
        # The stream is parsed where it lies (a map of a local file): pickles are searched and
        # sliced, and the storages between them are stepped over, never read.
        return _Legacy(buffer(src), src.name, options).read()


def scan(path: str | os.PathLike[str] | Source) -> list[GlobalRef]:
    """Every global the file's pickles would import; nothing is built. PickleError when a
    pickle is broken or missing (`ckpt scan` reports those as findings: `scan_stream`)."""
    with opened(path) as src:
        if _is_legacy_tar(src.read(0, min(512, src.size))):
            return torch_tar.scan(src)
        where = src.name
        scans = scan_stream(buffer(src), path=where)
    for found in scans:
        if found.error is not None:
            raise found.error
    if len(scans) < STREAM_PICKLES:
        raise PickleError(where, f"{len(scans)} pickles, a legacy file has {STREAM_PICKLES}")
    return [g for found in scans for g in found.globals]


def scan_stream(
    data: Any, *, path: str, offset: int = 0, end: int | None = None
) -> list[GlobalScan]:
    """The globals of each pickle of the stream at [offset, end) of `data`, as torch.load reads
    them (up to five; any non-zip file is read this way). The list stops after a broken pickle
    (its scan holds the error) or at the end of the data; it never raises for bad data."""
    end = len(data) if end is None else end
    scans: list[GlobalScan] = []
    pos = offset
    while len(scans) < STREAM_PICKLES and pos < end:
        found = scan_pickle(data, path=path, offset=pos, end=end)
        scans.append(found)
        if found.error is not None:
            break
        pos = found.end
    return scans


class _Legacy:
    def __init__(self, data: Any, where: str, options: ReadOptions):
        self.data, self.where, self.options = data, where, options
        self.pos = 0

    def _next(self, key: str, **kwargs: Any) -> tuple[Any, Unpickler]:
        machine = Unpickler(self.data, path=self.where, key=key, **kwargs)
        value, self.pos = machine.load_at(self.pos)
        return value, machine

    def read(self) -> Loaded:
        magic, _ = self._next("magic number", builders={})
        if magic != MAGIC:
            raise UnsupportedFormatError(self.where, "not a legacy torch file (no magic number)")
        version, _ = self._next("protocol version", builders={})
        if version != PROTOCOL_VERSION:
            raise UnsupportedFormatError(
                self.where, f"legacy protocol version {version!r}, expected {PROTOCOL_VERSION}"
            )
        sys_info, _ = self._next("sys_info")
        little = not isinstance(sys_info, dict) or sys_info.get("little_endian", True)
        byteorder = "little" if little else "big"
        object_pos = self.pos
        # Pass 1: learn the storages' dtypes and where the object pickle ends, building nothing.
        declared: dict[str, tuple[str, int]] = {}
        self._next("object", builders={}, persistent_load=lambda pid: self._declare(pid, declared))
        keys, _ = self._next("storage keys")
        roots = self._layout(keys, declared, byteorder)
        # Pass 2: the object itself, with tensors viewing the storages found above.
        end, self.pos = self.pos, object_pos
        views: dict[str, Storage] = {}
        tree, machine = self._next(
            "object",
            persistent_load=lambda pid: self._storage(pid, roots, views),
            strict=self.options.strict,
        )
        check_root(tree, path=self.where, key="object")
        notes = []
        if end < len(self.data):
            notes.append(f"{len(self.data) - end} bytes after the last storage are ignored")
        if byteorder == "big":
            notes.append("tensors are stored big-endian")
        if machine.unsupported:
            notes.append(
                "unsupported globals shown as records, not called: "
                + ", ".join(machine.unsupported)
            )
        meta = {"byteorder": byteorder, "sys_info": sys_info}
        return Loaded(FORMAT, tree, metadata=meta, notes=notes)

    def _declare(self, pid: Any, declared: dict[str, tuple[str, int]]) -> Any:
        if isinstance(pid, tuple) and pid and pid[0] == "module":
            return None
        _, stype, key, _, numel, _ = parse_storage_id(pid, length=6, path=self.where, key="object")
        declared.setdefault(key, (storage_dtype(stype, path=self.where, key=key), numel))
        return None

    def _layout(
        self, keys: Any, declared: dict[str, tuple[str, int]], byteorder: str
    ) -> dict[str, Storage]:
        """Step over the raw storages: one Storage per key, at its absolute offset."""
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise PickleError(self.where, "storage key list is not a list of strings")
        roots: dict[str, Storage] = {}
        size = len(self.data)
        for key in keys:
            if key not in declared:
                raise MissingRecordError(
                    self.where, "storage listed but never used by the pickle", key=key
                )
            dtype, numel = declared[key]
            itemsize = dtypes.get(dtype).itemsize
            if self.pos + 8 > size:
                raise TruncatedFileError(self.where, "file ends before this storage", key=key)
            count = int.from_bytes(self.data[self.pos : self.pos + 8], byteorder)  # type: ignore[arg-type]
            start, nbytes = self.pos + 8, count * itemsize
            if count < numel:
                raise TensorDataError(
                    self.where,
                    f"storage holds {count} elements, the pickle declares {numel}",
                    key=key,
                )
            if start + nbytes > size:
                raise TruncatedFileError(
                    self.where,
                    f"storage of {nbytes} bytes at {start} runs past the end of the file ({size})",
                    key=key,
                )
            src = ByteSource(self.where, start, nbytes)
            roots[key] = Storage(f"storage:{key}", dtype, nbytes, src, byteorder=byteorder)
            self.pos = start + nbytes
        return roots

    def _storage(self, pid: Any, roots: dict[str, Storage], views: dict[str, Storage]) -> Any:
        if isinstance(pid, tuple) and len(pid) == 4 and pid[0] == "module":
            return pid[1]  # a whole pickled nn.Module: its class, never its source
        _, _, key, _, _, view = parse_storage_id(pid, length=6, path=self.where, key="object")
        root = roots.get(key)
        if root is None:
            raise MissingRecordError(
                self.where, "the pickle uses a storage absent from the key list", key=key
            )
        return root if view is None else self._view(root, view, views)

    def _view(self, root: Storage, view: Any, views: dict[str, Storage]) -> Storage:
        """A storage view (torch < 1.0 `storage[offset:offset + size]`): a sub-range of root."""
        if not (
            isinstance(view, tuple)
            and len(view) == 3
            and isinstance(view[0], str)
            and all(type(v) is int and v >= 0 for v in view[1:])
        ):
            raise PickleError(self.where, f"malformed storage view {view!r}", key=root.key)
        view_key, offset, count = view
        if view_key in views:
            return views[view_key]
        itemsize = dtypes.get(root.dtype).itemsize
        lo, n = offset * itemsize, count * itemsize
        if lo + n > root.nbytes:
            raise ShapeError(
                self.where,
                f"view [{lo}, {lo + n}) beyond its storage of {root.nbytes} bytes",
                key=view_key,
            )
        src = ByteSource(self.where, root.source.offset + lo, n)
        views[view_key] = Storage(f"storage:{view_key}", root.dtype, n, src, root.byteorder)
        return views[view_key]
