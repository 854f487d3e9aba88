"""Write a torch.distributed.checkpoint (DCP) folder without importing torch.

The folder holds what `torch.distributed.checkpoint.save` with the default `FileSystemWriter`
(torch 2.13) writes: `__<rank>_0.distcp` files, in which every tensor chunk and every non-tensor
entry is a `torch.save` zip of its own, back to back, and a `.metadata` pickle (our pickler, at
protocol 2 where torch writes 4: the same objects) of a `Metadata` dataclass:

- `state_dict_metadata`: flattened name -> `TensorStorageMetadata(properties, size, chunks)` or
  `BytesStorageMetadata()`;
- `storage_data`: `MetadataIndex(fqn, chunk offsets, chunk index)` -> `_StorageInfo(file, offset,
  length)` (the byte range of the chunk's zip);
- `planner_data`: flattened name -> key path (torch's flattening map, so `dcp.load` and our reader
  rebuild the nesting); `storage_meta` (a fresh save id) and `version`.

The state dict is flattened as torch's default planner does (mappings by `str(key)`; lists that
hold tensors or containers by index; anything else is one entry). `shards` = N writes N rank
files: a tensor whose first dimension is at least N is split into row blocks as `torch.chunk`
(FSDP2's `Shard(0)`) splits it, block i in `__i_0.distcp`; every other tensor is written whole
into the rank file with the fewest bytes so far; non-tensor entries go to `__0_0.distcp`.
Chunks stream from the output's producers, one bounded buffer per thread.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..containers import dotted
from ..errors import WriteError
from ..io.atomic import open_output, pwrite_all
from ..model import Record, contiguous_strides
from .output import Output, OutStorage, OutTensor, iter_out_tensors
from .pickler import TorchPickler
from .produce import take_rows
from .stream import Progress, run_jobs
from .torch_zip import ZipPlan, plan_zip, storage_jobs, write_records

METADATA = ".metadata"
_PACKAGE = "torch.distributed.checkpoint."
_MOD = _PACKAGE + "metadata"
_VERSION = "1.0.0"  # Metadata.version that torch 2.13 writes


def rank_file(rank: int) -> str:
    return f"__{rank}_0.distcp"


@dataclass
class _Entry:
    """One zip in a rank file: a tensor chunk (`offsets` set) or a non-tensor entry."""

    fqn: str
    zip: ZipPlan
    offsets: tuple[int, ...] | None = None
    index: int = 0  # the chunk's place in its tensor's chunk list
    file: int = 0
    offset: int = 0  # inside the file, set when placed


@dataclass
class DcpPlan:
    files: list[list[_Entry]]
    sizes: list[int]
    metadata: bytes


def write(out: Output, dest: str | os.PathLike[str], *, threads: int | None = None,
          progress: Progress | None = None, shards: int = 1) -> None:
    """Write `out` as a DCP checkpoint into the (existing, empty) folder `dest`."""
    plan = plan_dcp(out, shards)
    dest = Path(dest)
    total = sum(st.nbytes for es in plan.files for e in es for st in e.zip.storages.values())
    done = 0
    for rank, entries in enumerate(plan.files):

        def file_progress(n: int, _total: int, base: int = done) -> None:
            assert progress is not None
            progress(base + n, total)

        done += _write_file(dest / rank_file(rank), entries, plan.sizes[rank], threads,
                            file_progress if progress else None)
    fd = open_output(dest / METADATA)
    try:
        pwrite_all(fd, plan.metadata, 0)
    finally:
        os.close(fd)


def _write_file(path: Path, entries: list[_Entry], size: int, threads: int | None,
                progress: Progress | None) -> int:
    """Write one rank file (its zips' storages by one batch of jobs); returns the bytes of
    tensor data written."""
    fd = open_output(path)
    try:
        os.ftruncate(fd, size)
        jobs = [storage_jobs(e.offset, e.zip) for e in entries]
        flat = [j for js in jobs for j in js.values()]
        run_jobs(fd, flat, threads=threads, progress=progress)
        for e, js in zip(entries, jobs, strict=True):
            write_records(fd, e.offset, e.zip, js)
    finally:
        os.close(fd)
    return sum(j.producer.nbytes for j in flat)


def plan_dcp(out: Output, shards: int = 1) -> DcpPlan:
    """Lay the checkpoint out: every entry's zip, its rank file and offset, and `.metadata`."""
    if shards < 1:
        raise WriteError(f"{out.base.label}: --shards must be at least 1, not {shards}")
    flat = flatten(out.tree)
    files: list[list[_Entry]] = [[] for _ in range(shards)]
    sizes = [0] * shards
    state: dict[str, Record] = {}
    # torch writes each file's non-tensor entries first, then its tensors
    for fqn, _, value in flat:
        if not isinstance(value, OutTensor):
            _place(files, sizes, _Entry(fqn, _object_zip(out, fqn, value)))
    for fqn, _, value in flat:
        if isinstance(value, OutTensor):
            state[fqn] = _place_tensor(out, fqn, value, files, sizes)
        else:
            state[fqn] = _obj(f"{_MOD}.BytesStorageMetadata", {})
    planner = {fqn: path for fqn, path, _ in flat}
    return DcpPlan(files, sizes, _metadata_pickle(out, state, planner, files))


def _place_tensor(out: Output, fqn: str, t: OutTensor, files: list[list[_Entry]],
                  sizes: list[int]) -> Record:
    """Place `t`'s chunks (block i in rank file i; a whole tensor in the least-loaded file);
    returns its TensorStorageMetadata."""
    blocks = row_blocks(t.shape, len(files))
    chunks = [_chunk_entry(out, fqn, t, r0, r1) for r0, r1 in blocks]
    ranks = range(len(chunks)) if len(chunks) > 1 else [sizes.index(min(sizes))]
    for i, (entry, rank) in enumerate(zip(chunks, ranks, strict=True)):
        entry.index, entry.file = i, rank
        _place(files, sizes, entry)
    return _tensor_metadata(t, [(e.offsets or (), _sizes(t, b))
                                for e, b in zip(chunks, blocks, strict=True)])


def _place(files: list[list[_Entry]], sizes: list[int], entry: _Entry) -> None:
    entry.offset = sizes[entry.file]
    sizes[entry.file] += entry.zip.size
    files[entry.file].append(entry)


def row_blocks(shape: tuple[int, ...], n: int) -> list[tuple[int, int]]:
    """Row ranges [r0, r1) of the chunks: torch.chunk(t, n, dim=0) when shape[0] >= n > 1
    (ceil(rows / n) rows each, the last ones shorter, possibly fewer than n), else one whole."""
    if n <= 1 or not shape or shape[0] < n:
        return [(0, shape[0] if shape else 1)]
    step = -(-shape[0] // n)
    return [(r, min(r + step, shape[0])) for r in range(0, shape[0], step)]


def _sizes(t: OutTensor, block: tuple[int, int]) -> tuple[int, ...]:
    return (block[1] - block[0], *t.shape[1:]) if t.shape else ()


# -- flattening (torch.distributed.checkpoint._traverse) -----------------------------------------


def flatten(tree: Any) -> list[tuple[str, tuple[Any, ...], Any]]:
    """(flattened name, key path, value) for each entry, as DCP's default planner flattens."""
    out: list[tuple[str, tuple[Any, ...], Any]] = []
    seen: dict[str, tuple[Any, ...]] = {}

    def visit(path: tuple[Any, ...], value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                visit((*path, str(k)), v)
        elif isinstance(value, list) and not _terminal(value):
            for i, v in enumerate(value):
                visit((*path, i), v)
        else:
            fqn = ".".join(str(p) for p in path)
            if fqn in seen:
                raise WriteError(f"{fqn!r}: two entries of the state dict flatten to this one "
                                 f"DCP name ({seen[fqn]} and {path}); DCP cannot hold both")
            seen[fqn] = path
            out.append((fqn, path, value))

    if not isinstance(tree, dict):
        raise WriteError(f"the checkpoint's top level is a {type(tree).__name__}; a DCP "
                         "checkpoint holds a dict (a state dict)")
    visit((), tree)
    return out


def _terminal(values: list[Any]) -> bool:
    """torch's `_is_terminal` for a list: no tensor and no non-terminal container inside."""
    for v in values:
        if isinstance(v, (OutTensor, dict)):
            return False
        if isinstance(v, list) and not _terminal(v):
            return False
    return True


# -- entries --------------------------------------------------------------------------------------


def _chunk_entry(out: Output, fqn: str, t: OutTensor, r0: int, r1: int) -> _Entry:
    """Rows [r0, r1) of `t` as the torch.save zip of a contiguous tensor of their own."""
    whole = (r0, r1) == (0, t.shape[0] if t.shape else 1)
    value = t.value if whole else take_rows(t.value, r0, r1)
    shape = (r1 - r0, *t.shape[1:]) if t.shape else ()
    storage = OutStorage(f"dcp:{fqn}:{r0}", t.dtype, value.nbytes, value)
    chunk = OutTensor(fqn, t.dtype, shape, contiguous_strides(shape), 0, storage, value)
    offsets = (r0, *(0 for _ in t.shape[1:])) if t.shape else ()
    return _Entry(fqn, _zip(out, fqn, chunk), offsets)


def _object_zip(out: Output, fqn: str, value: Any) -> ZipPlan:
    if isinstance(value, Record) and value.cls.startswith(_PACKAGE):
        raise WriteError(f"{out.base.label}: {fqn!r}: a {value.cls} (a DCP entry our reader keeps "
                         "as a record) cannot be written back as a DCP entry")
    inner = next(iter_out_tensors(value), None)
    if inner is not None:
        raise WriteError(f"{out.base.label}: {fqn!r}: a tensor inside a non-tensor entry "
                         f"({dotted(inner[0]) or 'the entry itself'}); DCP output stores "
                         "tensors only as state dict leaves or list items")
    return _zip(out, fqn, value)


def _zip(out: Output, fqn: str, tree: Any) -> ZipPlan:
    """A torch.save zip of `tree` (torch's default records, root folder `archive`)."""
    item = Output(tree, (), {}, out.base, keep_unknown_globals=out.keep_unknown_globals)
    try:
        return plan_zip(item, {})
    except WriteError as e:
        raise WriteError(f"{fqn!r}: {e}") from None


# -- .metadata ------------------------------------------------------------------------------------


def _obj(cls: str, state: Any) -> Record:
    return Record(cls, kind="object", state=state)


def _call(cls: str, *args: Any) -> Record:
    return Record(cls, kind="call", args=args)


def _size(dims: tuple[int, ...]) -> Record:
    return Record("torch.Size", kind="call", args=(tuple(dims),))


def _tensor_metadata(t: OutTensor, chunks: list[tuple[tuple[int, ...], tuple[int, ...]]]
                     ) -> Record:
    props = (Record(f"torch.{t.dtype}", kind="global"),
             _call("torch.serialization._get_layout", "torch.strided"), False,
             _call(f"{_MOD}._MEM_FORMAT_ENCODING", 0), False)
    return _obj(f"{_MOD}.TensorStorageMetadata", {
        "properties": _obj(f"{_MOD}.TensorProperties", props),
        "size": _size(t.shape),
        "chunks": [_obj(f"{_MOD}.ChunkStorageMetadata",
                        {"offsets": _size(o), "sizes": _size(s)}) for o, s in chunks],
    })


def _metadata_pickle(out: Output, state: dict[str, Record], planner: dict[str, tuple[Any, ...]],
                     files: list[list[_Entry]]) -> bytes:
    storage: dict[Record, Record] = {}
    for rank, entries in enumerate(files):
        for e in entries:
            key = ({"fqn": e.fqn, "index": None} if e.offsets is None else
                   {"fqn": e.fqn, "index": e.index, "offset": _size(e.offsets)})
            storage[_obj(f"{_MOD}.MetadataIndex", key)] = _obj(
                "torch.distributed.checkpoint.filesystem._StorageInfo",
                {"relative_path": rank_file(rank), "offset": e.offset, "length": e.zip.size})
    meta = _obj(f"{_MOD}.Metadata", {
        "state_dict_metadata": state,
        "planner_data": planner,
        "storage_data": storage,
        "storage_meta": _obj(f"{_MOD}.StorageMeta", {
            "checkpoint_id": None, "save_id": str(uuid.uuid4()), "load_id": None,
            "modules": []}),
        "version": _VERSION,
    })

    def no_tensors(t: Any) -> tuple[str, str, str, int]:
        raise WriteError("a tensor in .metadata")  # never: .metadata holds no tensors

    return TorchPickler(no_tensors, label=f"{out.base.label}: {METADATA}").dumps(meta)


__all__ = ["DcpPlan", "flatten", "plan_dcp", "rank_file", "row_blocks", "write"]
