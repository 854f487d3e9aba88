"""torch.distributed.checkpoint folders: a pickled `.metadata` plus `__<rank>_<n>.distcp` files.

`.metadata` (read as data by the restricted unpickler) maps each flattened name to its storage
metadata: a tensor's global size, dtype and chunks, or a bytes item. `storage_data` says where
each chunk lies: a byte range of a .distcp file, holding a `torch.save` zip of that chunk. A
tensor saved as one chunk covering it is read in place at that range (no copy). A tensor split
into several chunks (sharded over ranks: DTensor, FSDP2) is one logical tensor of its global
shape, whose bytes come from an `inspector.sharded.ShardedTensor` source: its chunks' records
are read when its bytes are first needed, not when the folder is listed. The files can also be
members of an archive (a NeMo `model_weights/` folder): `read_files` takes byte ranges, not paths.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .. import dtypes
from ..bulk import rare_gc
from ..errors import (
    DtypeError,
    HeaderError,
    MissingRecordError,
    OffsetError,
    ShapeError,
    UnsupportedFormatError,
)
from ..model import ByteSource, Record, Storage, TensorInfo, contiguous_strides
from ..sharded import Chunk, FilePool, ShardedTensor, check_layout
from ..sources import Source, name_of, opened, prefetch
from . import Loaded, ReadOptions

FORMAT = "dcp"
METADATA = ".metadata"
MAX_METADATA_SIZE = 1 << 30
_PREFIX = "torch.distributed.checkpoint."
BYTES_RECORD = "torch.distributed.checkpoint.BytesItem"
ZIP_MAGIC = b"PK\x03\x04"


@dataclass(frozen=True)
class FileRange:
    """A file of the checkpoint: a whole file, or a member lying inside an archive."""

    path: Path | Source  # a file (or a path under a URL), or the source holding the archive
    offset: int
    size: int


def sniff(path: Path, head: bytes) -> bool:
    return path.is_dir() and (path / METADATA).is_file()


def read(path: Path, options: ReadOptions) -> Loaded:
    files = {
        p.name: FileRange(p, 0, p.stat().st_size) for p in sorted(path.iterdir()) if p.is_file()
    }
    return read_files(os.fspath(path), files, options)


def read_files(label: str, files: dict[str, FileRange], options: ReadOptions) -> Loaded:
    """Read a checkpoint whose files (by name relative to its folder) are the given ranges."""
    specs, where, planner_data = _metadata(label, files)
    reader = _ChunkReader(label, files, options)
    flat: dict[str, Any] = {}
    sharded: dict[str, Source] = {}
    try:
        reader.announce(_records_read_now(specs, where))
        # Objects per tensor that live on, none cyclic: the collector's passes between the
        # zips' own rare_gc blocks walked them again and again (a small Python pickle machine
        # a zip may fall back to is collected at the next young pass all the same)
        with rare_gc():
            for fqn, spec in specs:
                flat[fqn] = _value(label, fqn, spec, where, reader, sharded)
    finally:
        if not sharded:  # else the sharded tensors read their chunks from its files later
            reader.close()
    tree, nested = _nest(flat, planner_data)
    notes = reader.notes
    if sharded:
        notes.append(f"{len(sharded)} tensors are assembled from chunks written by several "
                     "ranks (sharded): each is listed, hashed and read as one tensor")
    metadata = {"dcp": {"files": sorted(files), "sharded_tensors": len(sharded)}}
    return Loaded(FORMAT, tree, metadata, notes, root=None if nested else (), sources=sharded)


def _records_read_now(specs: list[tuple[str, Spec]], where: Where) -> list[tuple[str, int, int]]:
    """The stored records opening reads (whole tensors and objects; the chunks of a sharded
    tensor are read when its bytes are): (file, offset, length)."""
    out = []
    for fqn, spec in specs:
        if spec is None:
            found = where.get((fqn, None))
        elif len(spec[2]) == 1 and spec[2][0][1] == spec[0] and not any(spec[2][0][0]):
            found = where.get((fqn, spec[2][0][0]))
        else:
            continue
        if found is not None:
            out.append(found)
    return out


# .metadata ---------------------------------------------------------------------------------------


# What the reader needs of one state_dict entry: None for a bytes item, else the tensor's
# (global shape, dtype name, chunk boxes as (offsets, sizes)).
Spec = tuple[tuple[int, ...], str, list[tuple[tuple[int, ...], tuple[int, ...]]]] | None
Where = dict[tuple[str, Any], tuple[str, int, int]]
Metadata = tuple[list[tuple[str, Spec]], Where, Any]


def _metadata(label: str, files: dict[str, FileRange]) -> Metadata:
    """(fqn, spec) per state_dict entry, the storage index and the planner data: from the
    compiled columns when the `.metadata` has the plain layout, else from its pickled tree."""
    from . import pickle_fast

    data = _metadata_bytes(label, files)
    found: tuple[bool, Any] = (pickle_fast.read_dcp_metadata(data) if pickle_fast.enabled()
                               else (False, None))
    if found[0]:
        return from_columns(label, found[1])
    return from_tree(label, _load_metadata(label, data))


def from_columns(label: str, columns: Any) -> Metadata:
    """What `read_dcp_metadata`'s columns say (checked there; dtypes named here)."""
    entries, stored, planner_data = columns
    specs = [(fqn, None if dtype is None else (shape, _dtype_named(label, fqn, dtype), boxes))
             for fqn, dtype, shape, boxes in entries]
    return specs, {(f, o): (p, a, n) for f, o, p, a, n in stored}, planner_data


def from_tree(label: str, meta: Any) -> Metadata:
    """What the Metadata record of the pickled tree says, checked: the reference for
    `from_columns`."""
    entries = _dict(label, _field(label, meta, "state_dict_metadata"), "state_dict_metadata")
    where = _storage_index(label, _field(label, meta, "storage_data"))
    specs = [(fqn, _spec(label, fqn, entry)) for fqn, entry in entries.items()]
    return specs, where, _field(label, meta, "planner_data", None)


def _metadata_bytes(label: str, files: dict[str, FileRange]) -> bytes:
    rng = files.get(METADATA)
    if rng is None:
        raise MissingRecordError(label, "no .metadata file in the checkpoint folder")
    if rng.size > MAX_METADATA_SIZE:
        raise HeaderError(label, f"is {rng.size} bytes, over the cap", key=METADATA)
    with opened(rng.path) as src:
        return src.read(rng.offset, rng.size)


def _load_metadata(label: str, data: bytes) -> Any:
    from . import pickle_fast

    handled, meta = pickle_fast.try_load_records(data) if pickle_fast.enabled() else (False, None)
    if not handled:  # the Python machine: the reference, and every error message is its
        from .unpickler import load

        meta = load(data, path=f"{label}/{METADATA}", strict=False)
    if not (isinstance(meta, Record) and meta.cls.startswith(_PREFIX)):
        raise HeaderError(
            label, "is not a torch.distributed.checkpoint Metadata object", key=METADATA
        )
    return meta


_MISSING = object()


def _fields(obj: Any) -> dict[str, Any]:
    """The fields of a pickled dataclass (a Record whose state is its __dict__), {} if none."""
    state = obj.state if isinstance(obj, Record) else obj
    if type(state) is dict:  # the common case first: a folder holds one per chunk
        return state
    if isinstance(state, tuple) and len(state) == 2 and isinstance(state[1], dict):
        return {**(state[0] or {}), **state[1]}  # (dict, slots) state
    return state if isinstance(state, dict) else {}


def _field(label: str, obj: Any, name: str, default: Any = _MISSING,
           fields: dict[str, Any] | None = None) -> Any:
    """A field of a pickled dataclass; `fields`: its `_fields`, when the caller has them."""
    state = _fields(obj) if fields is None else fields
    if name in state:
        return state[name]
    if default is not _MISSING:
        return default
    cls = obj.cls if isinstance(obj, Record) else type(obj).__name__
    raise HeaderError(label, f"{cls} lacks field {name!r}", key=METADATA)


def _dict(label: str, value: Any, what: str) -> dict[Any, Any]:
    if isinstance(value, Record) and isinstance(value.state, dict):
        value = value.state.get("__items__", value.state)
    if not isinstance(value, dict):
        raise HeaderError(label, f"{what} is a {type(value).__name__}, not a dict", key=METADATA)
    return value


def _storage_index(label: str, storage_data: Any) -> Where:
    """(fqn, chunk offsets or None) -> (file, offset, length) from MetadataIndex -> _StorageInfo."""
    index = {}
    for key, info in _dict(label, storage_data, "storage_data").items():
        of_key, of_info = _fields(key), _fields(info)
        fqn = _field(label, key, "fqn", fields=of_key)
        if not isinstance(fqn, str):
            what = f"a storage key's fqn is a {type(fqn).__name__}, not a string"
            raise HeaderError(label, what, key=METADATA)
        offsets = of_key.get("offset")
        descriptors = of_info.get("transform_descriptors")
        if descriptors:
            raise UnsupportedFormatError(
                label, f"chunk is stored with transforms {descriptors!r} (not supported)", key=fqn
            )
        file = _field(label, info, "relative_path", fields=of_info)
        start = _field(label, info, "offset", fields=of_info)
        length = _field(label, info, "length", fields=of_info)
        if not (isinstance(file, str) and _is_count(start) and _is_count(length)):
            raise HeaderError(label, "malformed storage entry", key=fqn)
        index[(fqn, None if offsets is None else _ints(label, fqn, offsets))] = (
            file,
            start,
            length,
        )
    return index


# One state_dict entry -----------------------------------------------------------------------------


def _spec(label: str, fqn: str, entry: Any) -> Spec:
    """A state_dict entry of the pickled tree (a TensorStorageMetadata or BytesStorageMetadata
    record), checked."""
    cls = entry.cls if isinstance(entry, Record) else type(entry).__name__
    if cls.endswith("BytesStorageMetadata"):
        return None
    if not cls.endswith("TensorStorageMetadata"):
        raise HeaderError(label, f"unknown storage metadata {cls}", key=fqn)
    shape = _ints(label, fqn, _field(label, entry, "size"))
    dtype = _dtype(label, fqn, _field(label, entry, "properties"))
    chunk_list = _field(label, entry, "chunks")
    if not isinstance(chunk_list, list) or not chunk_list:
        raise HeaderError(label, "tensor has no list of chunks", key=fqn)
    return shape, dtype, [_box(label, fqn, c) for c in chunk_list]


def _value(label: str, fqn: str, spec: Spec, where: Where, reader: _ChunkReader,
           sharded: dict[str, Source]) -> Any:
    if spec is None:
        return reader.object(fqn, _locate(label, fqn, None, where))
    shape, dtype, boxes = spec
    chunks = [Chunk(offsets, sizes, *_locate(label, fqn, offsets, where))
              for offsets, sizes in boxes]
    if len(chunks) == 1 and chunks[0].sizes == shape and not any(chunks[0].offsets):
        return reader.tensor(fqn, chunks[0], dtype)
    return _sharded(label, fqn, shape, dtype, chunks, reader, sharded)


def _sharded(label: str, fqn: str, shape: tuple[int, ...], dtype: str, chunks: list[Chunk],
             reader: _ChunkReader, sharded: dict[str, Source]) -> TensorInfo:
    """A tensor stored as several chunks: one logical tensor whose bytes a ShardedTensor
    source assembles (registered in `sharded` under the name its storage gives)."""
    check_layout(label, fqn, shape, chunks)
    files = {name_of(reader.range(fqn, (c.file, c.offset, c.length)).path) for c in chunks}
    source = ShardedTensor(f"{label}::{fqn}", fqn, shape, dtypes.get(dtype).itemsize, chunks,
                           lambda i: reader.chunk_bytes(fqn, chunks[i], dtype),
                           files=sorted(files), close=reader.close)
    sharded[source.name] = source
    raw = ByteSource(source.name, 0, source.size, assembled=True)
    storage = Storage(key=f"{fqn} (sharded)", dtype=dtype, nbytes=source.size, source=raw)
    return TensorInfo(name="", dtype=dtype, shape=shape, strides=contiguous_strides(shape),
                      storage_offset=0, storage=storage)


def _box(label: str, fqn: str, chunk: Any) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """A ChunkStorageMetadata record's (offsets, sizes), checked."""
    fields = _fields(chunk)
    offsets = _ints(label, fqn, _field(label, chunk, "offsets", fields=fields))
    sizes = _ints(label, fqn, _field(label, chunk, "sizes", fields=fields))
    return offsets, sizes


def _locate(label: str, fqn: str, offsets: Any, where: Where) -> Any:
    found = where.get((fqn, offsets))
    if found is None:
        raise MissingRecordError(label, f"no storage entry for the chunk at {offsets}", key=fqn)
    return found


def _dtype(label: str, fqn: str, properties: Any) -> str:
    state = properties.state if isinstance(properties, Record) else None
    value = state[0] if isinstance(state, tuple) and state else _field(label, properties, "dtype")
    return _dtype_named(label, fqn, value.cls if isinstance(value, Record) else str(value))


def _dtype_named(label: str, fqn: str, name: str) -> str:
    try:
        return dtypes.get(name.removeprefix("torch.")).name
    except KeyError:
        raise DtypeError(label, f"unknown dtype {name}", key=fqn) from None


def _ints(label: str, fqn: str, value: Any) -> tuple[int, ...]:
    if type(value) is tuple and _INT.issuperset(map(type, value)) and min(value, default=0) >= 0:
        return value  # the common case (a torch.Size), checked in C: 250k of them at 10k x 8
    if isinstance(value, (tuple, list)) and all(_is_count(v) for v in value):
        return tuple(value)
    raise ShapeError(label, f"{value!r} is not a tuple of non-negative integers", key=fqn)


_INT = frozenset({int})


def _is_count(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


# Chunk bytes -------------------------------------------------------------------------------------


_RECORD_ENDS = 4096  # bytes at each end of a stored torch zip that hold its headers


class _ChunkReader:
    """Reads the torch zips that chunks and bytes items are stored as, in place."""

    def __init__(self, label: str, files: dict[str, FileRange], options: ReadOptions):
        self.label = label
        self.files = files
        self.options = options
        self.notes: list[str] = []
        self.pool = FilePool()  # each file opened once for all its chunks
        from .torch_zip import ZipReads  # here: this module must load even where that one is absent

        self.zips = ZipReads(options, checkpoint=False)

    def close(self) -> None:
        self.pool.close()

    def announce(self, records: list[tuple[str, int, int]]) -> None:
        """Records about to be read: a remote file fetches the ends of each (where a torch zip
        keeps its headers) together, in parallel (`sources.prefetch`); a local one ignores it."""
        by_file: dict[str, list[tuple[int, int]]] = {}
        fetches: dict[str, bool] = {}
        for file, start, length in records:
            rng = self.files.get(file)
            if rng is None or start + length > rng.size:
                continue  # reading it says what is wrong
            if file not in fetches:
                fetches[file] = hasattr(self._source(rng), "prefetch")
            if not fetches[file]:
                continue
            ends = by_file.setdefault(file, [])
            head = min(length, _RECORD_ENDS)
            ends.append((rng.offset + start, head))
            if length > head:
                tail = min(length - head, _RECORD_ENDS)
                ends.append((rng.offset + start + length - tail, tail))
        for file, ranges in by_file.items():
            prefetch(self._source(self.files[file]), ranges)

    def _source(self, rng: FileRange) -> Source:
        return self.pool.source(rng.path)

    def tensor(self, fqn: str, chunk: Chunk, dtype: str) -> TensorInfo:
        loaded = self._zip(fqn, (chunk.file, chunk.offset, chunk.length))
        t = loaded.tree
        if not isinstance(t, TensorInfo):
            raise HeaderError(
                self.label,
                f"chunk in {chunk.file} holds a {type(t).__name__}, not a tensor",
                key=fqn,
            )
        if t.dtype != dtype:
            raise DtypeError(self.label, f"chunk is {t.dtype}, .metadata says {dtype}", key=fqn)
        if t.shape != chunk.sizes:
            raise ShapeError(
                self.label, f"chunk has shape {t.shape}, .metadata says {chunk.sizes}", key=fqn
            )
        return t if t.name == "" else replace(t, name="")

    def chunk_bytes(self, fqn: str, chunk: Chunk, dtype: str) -> tuple[Source, int]:
        """Where a chunk's elements lie, C-contiguous and little-endian: (source, offset)."""
        t = self.tensor(fqn, chunk, dtype)
        src = t.storage.source
        if src.path is None or src.compression or t.storage.byteorder != "little" or not (
            t.is_contiguous
        ):
            raise UnsupportedFormatError(
                self.label,
                f"chunk at {chunk.offsets} in {chunk.file} is not stored as raw contiguous "
                "little-endian elements (not supported in a sharded tensor)",
                key=fqn,
            )
        rng = self.range(fqn, (chunk.file, chunk.offset, chunk.length))
        return self._source(rng), src.offset + t.storage_offset * t.itemsize

    def object(self, fqn: str, where: tuple[str, int, int]) -> Any:
        rng = self.range(fqn, where)
        magic = self._source(rng).read(rng.offset + where[1], min(len(ZIP_MAGIC), where[2]))
        if magic == ZIP_MAGIC:
            return self._zip(fqn, where).tree
        # Objects are stored as torch.save zips, but a BytesIO in the state dict is stored raw.
        file, start, length = where
        self.notes.append(f"{fqn}: a raw bytes item ({length} bytes), shown as a record")
        return Record(BYTES_RECORD, state={"file": file, "offset": start, "length": length})

    def range(self, fqn: str, where: tuple[str, int, int]) -> FileRange:
        file, start, length = where
        rng = self.files.get(file)
        if rng is None:
            raise MissingRecordError(self.label, f"storage file {file} is missing", key=fqn)
        if start + length > rng.size:
            raise OffsetError(
                self.label,
                f"bytes [{start}, {start + length}) run past the end of {file} ({rng.size} bytes)",
                key=fqn,
            )
        return rng

    def _zip(self, fqn: str, where: tuple[str, int, int]) -> Loaded:
        rng = self.range(fqn, where)
        file, start, length = where
        loaded = self.zips.read(self._source(rng), rng.offset + start, length,
                                member=f"{file}@{start}")
        self.notes += [f"{fqn}: {n}" for n in loaded.notes]
        return loaded


# Nesting ------------------------------------------------------------------------------------------


def _nest(flat: dict[str, Any], planner_data: Any) -> tuple[Any, bool]:
    """The original nested state dict, from the flattening map the default planner stores
    (flattened name -> key path); the flat dict when there is none or it does not fit."""
    if not isinstance(planner_data, dict) or set(planner_data) != set(flat):
        return flat, False
    tree: dict[Any, Any] = {}
    for fqn, value in flat.items():
        path = planner_data[fqn]
        if not (
            isinstance(path, (tuple, list))
            and path
            and all(isinstance(k, (str, int)) for k in path)
        ):
            return flat, False
        node = tree
        for k in path[:-1]:
            node = node.setdefault(k, {})
            if not isinstance(node, dict):
                return flat, False
        if path[-1] in node:
            return flat, False
        node[path[-1]] = value
    return tree, True
