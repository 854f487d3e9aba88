"""torch.save's zip format (torch >= 1.6): `<root>/data.pkl` + one `<root>/data/<key>` per storage.

The zip directory is parsed and validated by `zipfile_safe`, `data.pkl` by the compiled fast path
(`pickle_fast`) when it is in torch.save's subset, else by the restricted unpickler; each
persistent id ('storage', type, key, location, numel) becomes one `Storage` pointing at the
absolute byte range of its record, shared by every tensor that views it. No
tensor bytes are read; every record but the storages is CRC-checked (zipfile_safe.read_member).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .. import dtypes
from .._native import core
from ..bulk import rare_gc
from ..errors import (
    ArchiveError,
    HeaderError,
    MissingRecordError,
    TensorDataError,
    UnsupportedFormatError,
)
from ..model import ByteSource, Record, Storage
from ..sources import Source, is_source, opened, sliceable
from . import Loaded, ReadOptions, pickle_fast
from .torch_pickle import check_root, parse_storage_id, storage_classes, storage_dtype
from .unpickler import Unpickler
from .zipfile_safe import (
    COMPILED_READS,
    CompiledMembers,
    ZipDirectory,
    ZipMember,
    compiled_walk,
    is_zip_head,
    read_directory,
    read_member,
)

FORMAT = "torch-zip"
_RELEASE_FROM = 1 << 20  # a zip this large gives its pages back once read (a small one: no call)
MAX_PICKLE_BYTES = 1 << 30  # data.pkl holds structure only; real ones are kilobytes to megabytes
_SMALL_MEMBER = 1 << 16  # byteorder, version


def sniff(path: Path, head: bytes) -> bool:
    return path.is_file() and is_zip_head(head)


def sniff_source(name: str, head: bytes) -> bool:
    return is_zip_head(head)


def read(path: Path | Source, options: ReadOptions) -> Loaded:
    with opened(path) as src:
        return read_zip_at(src, 0, src.size, options)


def read_zip_at(
    path: str | os.PathLike[str] | Source,
    offset: int,
    length: int,
    options: ReadOptions,
    *,
    member: str | None = None,
    checkpoint: bool = True,
) -> Loaded:
    """Read a torch zip lying at [offset, offset + length) of `path` (0 and the size for a .pt).

    `member` names the zip inside its container (e.g. `./model_weights.ckpt` in a .nemo): it
    appears in messages and prefixes storage keys. All byte offsets are absolute in `path`.
    `checkpoint`: the zip is a checkpoint, whose top-level object must be one torch's
    weights_only loader builds (False for any object torch.save'd inside another format: a DCP
    bytes item, which torch loads with weights_only=False).
    """
    return ZipReads(options, checkpoint=checkpoint).read(path, offset, length, member=member)


class ZipReads:
    """`read_zip_at` for the zips of one checkpoint, with the ways it may take (the compiled
    walks: INSPECTOR_ZIP_FAST, INSPECTOR_PICKLE_FAST) read from the environment once, not per
    zip: a DCP folder holds a zip per tensor (8,000 reads of the environment took 12 ms)."""

    def __init__(self, options: ReadOptions, *, checkpoint: bool = True):
        self.options, self.checkpoint = options, checkpoint
        self.compiled_zip = compiled_walk()
        self.compiled_pickle = pickle_fast.enabled()

    def read(
        self,
        path: str | os.PathLike[str] | Source,
        offset: int,
        length: int,
        *,
        member: str | None = None,
    ) -> Loaded:
        if is_source(path):  # no context manager: a DCP folder reads a zip per tensor
            return self._read(path, offset, length, member)
        with opened(path) as src:
            return self._read(src, offset, length, member)

    def _read(self, src: Source, offset: int, length: int, member: str | None) -> Loaded:
        where = f"{src.name}:{member}" if member else src.name
        found, pkl, metadata, notes = self._parse(src, offset, length, member, where)
        # A state dict comes as columns (pickle_fast.try_load); its objects are made here, once
        # data.pkl, its tape and the zip's table (`_parse`'s) are gone, not beside them.
        tree = pickle_fast.tree(found)
        if self.checkpoint:
            check_root(tree, path=where, key=pkl)
        # What a checkpoint's zip says of itself; a zip inside another format (a DCP chunk) has
        # its container's instead.
        return Loaded(FORMAT, tree, metadata=metadata if self.checkpoint else {}, notes=notes)

    def _parse(
        self, src: Source, offset: int, length: int, member: str | None, where: str
    ) -> tuple[Any, str, dict[str, Any], list[str]]:
        """data.pkl's tree (or a state dict's columns), its record's name, the zip's metadata
        and the notes on its storages."""
        prefix = f"{member}:" if member else ""
        handled, tree = False, None
        # An object or a few per member and tensor, none cyclic (the Python machine's are:
        # it runs outside).
        with rare_gc():
            directory, root, small = _layout(src, offset, length, where, self.compiled_zip)
            byteorder = _byteorder(directory, root, small)
            pkl = root + "data.pkl"
            data = _record(directory, small, pkl, MAX_PICKLE_BYTES)
            if length >= _RELEASE_FROM:
                # Done with the zip's bytes (its directory, local headers, data.pkl copied): their
                # pages leave this process (a million records: ~300 MB of the file mapped).
                src.release(offset, length)
            storages = _StorageTable(directory, root, byteorder, prefix)
            if self.compiled_pickle:
                handled, tree = pickle_fast.try_load(
                    data, storages.load, storages.stored_records(), columns=True
                )
        unsupported: list[str] = []
        if not handled:  # the Python machine, the reference: anything else, and every error
            storages = _StorageTable(directory, root, byteorder, prefix)
            machine = Unpickler(data, path=where, key=pkl, persistent_load=storages.load,
                                strict=self.options.strict)
            tree, _ = machine.load_at(0)
            unsupported = machine.unsupported
        return tree, pkl, _metadata(root, byteorder, small), _notes(storages, unsupported)


def _layout(
    src: Source, offset: int, length: int, where: str, compiled: bool
) -> tuple[ZipDirectory, str, dict[str, bytes]]:
    """The zip's directory, root folder and small records (`_small_records`). A mapped zip with
    nothing to report is read in one compiled pass (csrc/torch_zip_layout.hpp: a DCP folder
    holds one small zip per tensor); anything else, or any zip with `compiled` False
    (`INSPECTOR_ZIP_FAST=0`), by the steps below, the reference, which say what is wrong."""
    mapped = sliceable(src)
    if compiled and isinstance(mapped, COMPILED_READS) and offset >= 0 and length >= 0:
        found = core.torch_zip_layout(mapped, offset, length, _SMALL_MEMBER, ZipMember)
        if found is not None:
            table, root, small = found
            return ZipDirectory(where, src.name, CompiledMembers(table), src), root, small
    directory = read_directory(src, offset, length, where=where)
    root = _root_folder(directory)
    return directory, root, _small_records(directory, root)


def _root_folder(directory: ZipDirectory) -> str:
    """The single top folder holding data.pkl (`archive/`, `<stem>/`, ...: it varies)."""
    roots = [
        n[: -len("data.pkl")]
        for n in directory.members
        if n.endswith("/data.pkl") and n.count("/") == 1
    ]
    if not roots:
        raise UnsupportedFormatError(
            directory.where, "zip has no <folder>/data.pkl: not a torch checkpoint"
        )
    if len(roots) > 1:
        raise ArchiveError(directory.where, f"several data.pkl folders: {sorted(roots)}")
    root = roots[0]
    for name in directory.members:
        if not name.startswith(root):
            raise ArchiveError(
                directory.where, f"member outside the root folder {root!r}", key=name
            )
    return root


def _small_records(directory: ZipDirectory, root: str) -> dict[str, bytes]:
    """Every small record besides the storages (version, byteorder, .data/serialization_id...),
    read once, so its CRC-32 is checked (read_member refuses a mismatch); data.pkl is checked
    when it is read. A few KB: an edit left with a stale CRC is refused, not read as if sound.
    By name: what the rest of the reader reads of them."""
    return {
        m.name: read_member(directory, m, _SMALL_MEMBER)
        for m in directory.members.values()
        if not m.name.startswith(root + "data/") and m.size <= _SMALL_MEMBER
    }


def _record(directory: ZipDirectory, small: dict[str, bytes], name: str, max_size: int) -> bytes:
    """Record `name`'s bytes: from the small records read with the layout, else read now (a
    DCP folder reads a zip per tensor: no member object is made for what the layout read)."""
    data = small.get(name)
    return data if data is not None else read_member(directory, directory.members[name], max_size)


def _byteorder(directory: ZipDirectory, root: str, small: dict[str, bytes]) -> str:
    name = root + "byteorder"
    if name not in small and name not in directory.members:
        return "little"  # torch < 1.10 wrote none: little-endian
    value = _record(directory, small, name, _SMALL_MEMBER).decode("ascii", "replace").strip()
    if value not in ("little", "big"):
        raise HeaderError(
            directory.where, f"byteorder is {value!r}, not 'little' or 'big'", key=name
        )
    return value


class _StorageTable:
    """persistent_load for data.pkl: one Storage per record key, shared by its tensors."""

    def __init__(self, directory: ZipDirectory, root: str, byteorder: str, prefix: str):
        self.directory, self.root, self.byteorder, self.prefix = directory, root, byteorder, prefix
        self.data_dir, self.members = f"{root}data/", directory.members
        self.storages: dict[str, Storage] = {}
        self.deflated: list[str] = []
        self.locations: set[str] = set()
        self.dtypes: dict[str, tuple[str, int]] = {}  # storage class -> dtype, itemsize

    def _dtype(self, stype: Any, name: str) -> tuple[str, int]:
        """The dtype and itemsize of a storage class, worked out once per class (a checkpoint
        names one or two classes for hundreds of thousands of storages)."""
        cls = stype.cls if isinstance(stype, Record) and stype.kind == "global" else None
        found = self.dtypes.get(cls) if cls is not None else None
        if found is None:
            dtype = storage_dtype(stype, path=self.directory.where, key=name)
            found = (dtype, dtypes.get(dtype).itemsize)
            if cls is not None:
                self.dtypes[cls] = found
        return found

    def stored_records(self) -> tuple[Any, ...]:
        """What `load` does for a storage kept uncompressed in the zip, as data, for the compiled
        fast path to do it without a call per storage (register_pickle.cpp's StoredRecords):
        anything else it leaves to `load`."""
        members = self.members.table if isinstance(self.members, CompiledMembers) else self.members
        return (self.data_dir, self.prefix, members, storage_classes(), self.directory.path,
                self.byteorder, ByteSource, self.locations)

    def load(self, pid: Any) -> Storage:
        where = self.directory.where
        _, stype, key, location, numel = parse_storage_id(
            pid, length=5, path=where, key=self.root + "data.pkl"
        )
        name = self.data_dir + key
        storage = self.storages.get(name)
        if storage is not None:
            return storage
        dtype, itemsize = self._dtype(stype, name)
        record = self.members.get(name)
        if record is None:
            raise MissingRecordError(
                where, "data.pkl references a storage record the zip does not contain", key=name
            )
        nbytes = numel * itemsize
        if record.size < nbytes:
            raise TensorDataError(
                where,
                f"record holds {record.size} bytes, the pickle declares "
                f"{numel} {dtype} elements ({nbytes} bytes)",
                key=name,
            )
        if isinstance(location, str):
            self.locations.add(location)
        source = _source(self.directory.path, record)
        storage = Storage(self.prefix + name, dtype, nbytes, source, self.byteorder)
        if record.method:
            self.deflated.append(name)
        self.storages[name] = storage
        return storage


def _source(path: str, record: ZipMember) -> ByteSource:
    if record.method:  # anything but stored (the directory lets only deflate through)
        return ByteSource(
            path,
            record.data_offset,
            record.compressed_size,
            compression=record.compression,
            size=record.size,
        )
    return ByteSource(path, record.data_offset, record.size)


def _metadata(root: str, byteorder: str, small: dict[str, bytes]) -> dict[str, Any]:
    meta: dict[str, Any] = {"zip_root": root.rstrip("/"), "byteorder": byteorder}
    for name in ("version", ".data/version", ".format_version", ".storage_alignment"):
        data = small.get(root + name)
        if data is not None:
            text = data.decode("ascii", "replace").strip()
            meta[name.lstrip(".").replace(".data/", "data_").replace("/", "_")] = text
    return meta


_CPU = frozenset({"cpu"})


def _notes(storages: _StorageTable, unsupported: list[str]) -> list[str]:
    notes = []
    if storages.deflated:
        notes.append(
            f"{len(storages.deflated)} storage record(s) are deflated: read by "
            "inflating them, not patchable in place"
        )
    if storages.byteorder == "big":
        notes.append("tensors are stored big-endian")
    devices = sorted(storages.locations - _CPU)
    if devices:
        notes.append(f"storages were saved on {', '.join(devices)}; their bytes are read as is")
    if unsupported:
        notes.append("unsupported globals shown as records, not called: " + ", ".join(unsupported))
    return notes
