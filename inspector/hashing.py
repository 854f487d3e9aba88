"""Content digests of tensors and checkpoints, independent of file format and memory layout.

The digest (spec: docs/hash-spec.md, version "ckh1") covers a tensor's dtype, shape and logical
bytes in C order, so a tensor gets the same digest in a .pt, a .nemo, a safetensors shard, a
strided view or an in-memory array. The work runs in the C++ core, on all cores, without the GIL.

    digests = hash_tensors(inspector.open("model.safetensors"))   # {name: Digest}
    print(checkpoint_digest(digests))                            # ckh1:3f2a...
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import dtypes
from ._native import core, core_error
from .errors import CheckpointError, DtypeError, FileChangedError, TensorDataError
from .model import Checkpoint, TensorInfo, contiguous_strides
from .sharded import ShardedTensor
from .sources import Identity, Source, prefetch

if TYPE_CHECKING:  # numpy is needed for in-memory arrays only, not to hash files
    import numpy as np

VERSION = "ckh1"

Progress = Callable[[int, int], None]
"""progress(done_bytes, total_bytes), called about every 75 ms; raise `Cancelled` to stop."""

_PRINTED = re.compile(r"([a-z0-9]+):([0-9a-f]{32})")


class Cancelled(Exception):
    """For a progress callback to raise to stop hashing (any exception does; this one is for callers
    that need one of their own)."""


@dataclass(frozen=True, slots=True)
class Digest:
    """A 16-byte ckh1 digest. `str()` and `.hex()` give the printed form "ckh1:<32 hex>"."""

    raw: bytes

    def __post_init__(self) -> None:
        if len(self.raw) != 16:
            raise ValueError(f"a {VERSION} digest has 16 bytes, not {len(self.raw)}")

    def hex(self) -> str:
        return f"{VERSION}:{self.raw.hex()}"

    def __str__(self) -> str:
        return self.hex()

    def __bytes__(self) -> bytes:
        return self.raw

    @classmethod
    def parse(cls, text: str) -> Digest:
        """The digest printed as "ckh1:<32 lowercase hex>"; ValueError for anything else."""
        m = _PRINTED.fullmatch(text.strip())
        if m is None:
            raise ValueError(f"not a digest: {text!r} (expected {VERSION}:<32 hex digits>)")
        if m.group(1) != VERSION:
            raise ValueError(f"digest version {m.group(1)!r} is not supported (this is {VERSION})")
        return cls(bytes.fromhex(m.group(2)))


def hash_tensors(
    ckpt: Checkpoint,
    names: Iterable[str] | None = None,
    *,
    threads: int | None = None,
    progress: Progress | None = None,
) -> dict[str, Digest]:
    """Digest of each tensor (all of them by default), read from the memory-mapped storages.

    `threads`: worker threads (default: all cores). A `progress` callback that raises (e.g.
    `Cancelled`) stops the work and the exception propagates; so does Ctrl-C.
    """
    chosen = list(ckpt) if names is None else list(names)
    infos = [_tensor(ckpt, name) for name in chosen]
    files = _file_states(ckpt, infos)
    for t in infos:
        _dtype(ckpt, t)  # refused before any byte is read
    sizes = [t.nbytes for t in infos]  # once: 100k tensors are 100k property calls a pass
    total, done = sum(sizes), 0
    raw: list[bytes] = []
    for start, stop in _batches(sizes):
        _check_unchanged(files, infos[start:stop])  # a truncated map would fault (SIGBUS)
        report = None if progress is None else _offset_progress(progress, done, total)
        done += sum(sizes[start:stop])
        # Jobs per batch: a source that cannot map (a remote object) reads its bytes here, so
        # only one batch is held in memory at a time.
        _prefetch(ckpt, infos[start:stop])
        jobs = [_job(ckpt, t) for t in infos[start:stop]]
        try:
            raw += _hash_batch(ckpt, infos[start:stop], jobs, threads, report)
        except core.MappedFileFault as e:  # a mapped page past a file's new end (SIGBUS, caught)
            _check_unchanged(files, infos[start:stop])
            raise core_error(e, _where(ckpt, infos[start])) from None
        del jobs  # the batch's bytes go before the next batch's come
        _check_unchanged(files, infos[start:stop])  # bytes changed under the hash: refuse it
        _release_batch(ckpt, infos[start:stop])
    return {name: Digest(d) for name, d in zip(chosen, raw, strict=True)}


def _release_batch(ckpt: Checkpoint, batch: list[TensorInfo]) -> None:
    """Drop a hashed batch's pages: one call per run of neighbouring storages of a source (a
    page apart at most), not one per storage (100k tiny tensors: 100k madvise calls)."""
    spans: dict[str, list[tuple[int, int]]] = {}
    for t in batch:
        src = t.storage.source
        if src.path is None or src.compression:
            ckpt.release(t.storage)  # in memory (nothing), or an inflated record
        else:
            spans.setdefault(src.path, []).append((src.offset, src.length))
    for path, ranges in spans.items():
        ranges.sort()
        lo, hi = ranges[0][0], ranges[0][0] + ranges[0][1]
        for offset, length in ranges[1:]:
            if offset > hi + RELEASE_GAP:
                ckpt.release_range(path, lo, hi - lo)
                lo, hi = offset, offset + length
            else:
                hi = max(hi, offset + length)
        ckpt.release_range(path, lo, hi - lo)


def _prefetch(ckpt: Checkpoint, batch: list[TensorInfo]) -> None:
    """Announce a batch's storage ranges to their sources: a remote one fetches them together,
    in parallel (`sources.prefetch`); a local file ignores it."""
    ranges: dict[str, list[tuple[int, int]]] = {}
    for t in batch:
        src = t.storage.source
        if src.path is not None and not src.patchable and not src.compression \
                and not src.assembled and not _streams(ckpt, t):
            ranges.setdefault(src.path, []).append((src.offset, src.length))
    for path, spans in ranges.items():
        prefetch(ckpt.source(path), spans)


def _hash_batch(ckpt: Checkpoint, infos: list[TensorInfo], jobs: list[tuple[Any, ...] | None],
                threads: int | None, report: Progress | None) -> list[bytes]:
    """Digests of one batch: strided views in the core on all cores, sharded tensors (no job)
    streamed piece by piece."""
    mine = [i for i, job in enumerate(jobs) if job is not None]
    out: list[bytes] = [b""] * len(infos)
    try:
        digests = core.hash_tensors([j for j in jobs if j is not None], threads or 0, report)
    except core.CoreError as e:  # a job the core refused: e.job is its index in the list
        t = infos[mine[0] if e.job is None else mine[e.job]]
        raise core_error(e, _where(ckpt, t), key=t.name) from None
    for i, d in zip(mine, digests, strict=True):
        out[i] = d
    streamed = [i for i, job in enumerate(jobs) if job is None]
    if not streamed:
        return out
    workers = min(len(streamed), threads or os.cpu_count() or 1)
    tick = _ticker(report, sum(infos[i].nbytes for i in mine), sum(t.nbytes for t in infos))
    if workers > 1:  # the hasher releases the GIL: one tensor per thread
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(workers) as pool:
            digests = list(pool.map(lambda i: _hash_pieces(ckpt, infos[i], tick), streamed))
    else:
        digests = [_hash_pieces(ckpt, infos[i], tick) for i in streamed]
    for i, d in zip(streamed, digests, strict=True):
        out[i] = d
    return out


def _hash_pieces(ckpt: Checkpoint, t: TensorInfo, tick: Callable[[int], None]) -> bytes:
    """A sharded tensor's digest, fed its logical bytes piece by piece (views of the chunks
    where they lie in order, else bounded slabs), or a large contiguous tensor of a source that
    streams (a remote object: parallel range requests): flat memory, however large the tensor."""
    src = ckpt.source(t.storage.source.path)  # type: ignore[arg-type]
    d = dtypes.get(t.dtype)
    if isinstance(src, ShardedTensor):
        pieces = src.pieces()
    else:
        start = t.storage.source.offset + t.storage_offset * d.itemsize
        pieces = src.chunks(start, t.nbytes)  # type: ignore[attr-defined]
    hasher = core.TreeHasher(d.name, t.shape, d.itemsize)
    for piece in pieces:
        hasher.update(piece)
        tick(len(piece))
    return bytes(hasher.finish())


def _ticker(report: Progress | None, done: int, total: int) -> Callable[[int], None]:
    """`tick(n)`: n more bytes of a batch's streamed tensors hashed (after its `done` bytes of
    core jobs), reported through `report` from any thread."""
    if report is None:
        return lambda n: None
    import threading

    lock, state = threading.Lock(), [done]

    def tick(n: int) -> None:
        with lock:
            state[0] += n
            now = state[0]
        report(now, total)

    return tick


# Contiguous little-endian tensors from this size on are streamed (not read whole) when their
# source streams (has `chunks`: a remote object): memory stays flat however large the tensor.
STREAM_BYTES = 16 << 20


def _streams(ckpt: Checkpoint, t: TensorInfo) -> bool:
    src = t.storage.source
    if t.nbytes < STREAM_BYTES or src.path is None or src.compression:
        return False
    if t.storage.byteorder == "big" or t.strides != contiguous_strides(t.shape):
        return False
    if t.storage_offset * dtypes.get(t.dtype).itemsize + t.nbytes > src.length:
        return False  # out of its storage: the core's bounds check names it
    return hasattr(ckpt.source(src.path), "chunks")


# Each source whose raw bytes are hashed, with its identity when hashing began (for a local file:
# size, mtime_ns, inode, device; sources whose bytes cannot change have none and are not checked).
Files = dict[str, tuple[Source, Identity]]


def _file_states(ckpt: Checkpoint, infos: list[TensorInfo]) -> Files:
    paths = {t.storage.source.path for t in infos if not t.storage.source.compression}
    states: Files = {}
    for p in sorted(p for p in paths if p is not None):
        src = ckpt.source(p)
        state = src.identity()
        if state is not None:
            states[p] = (src, state)
    return states


def _check_unchanged(files: Files, batch: list[TensorInfo]) -> None:
    """Refuse to go on when a file of `batch` was truncated, replaced or modified since hashing
    began: reading a mapped page past a file's new end kills the process with SIGBUS, and bytes
    changed under the hash give a digest of neither version. Checked before and after each
    batch (64 MiB); a truncation during a batch's read is caught by the core's SIGBUS guard
    (csrc/mapped_read.hpp), which raises core.MappedFileFault."""
    ends: dict[str, int] = {}
    for t in batch:
        src = t.storage.source
        if src.path in files:
            ends[src.path] = max(ends.get(src.path, 0), src.offset + src.length)
    for path in sorted(ends):
        source, was = files[path]
        try:
            now = source.identity()
        except OSError as e:
            raise FileChangedError(path, f"the file changed while it was read ({e.strerror})"
                                   ) from None
        assert now is not None  # a source with an identity keeps having one
        if now[0] < ends[path]:  # truncated before hashing began: its end is gone
            raise FileChangedError(path, f"the file changed while it was read (now {now[0]:,} "
                                   f"bytes, its tensors reach byte {ends[path]:,})")
        if now != was:
            what = (f"{was[0]:,} -> {now[0]:,} bytes" if now[0] != was[0] else
                    "replaced by another file" if now[2:] != was[2:] else "modified")
            raise FileChangedError(path, f"the file changed while it was read ({what}); "
                                   "hash it again once nothing writes it")


# Tensors are hashed in batches of about this many bytes, and their mapped pages released after
# each batch: memory stays flat however large the checkpoint (a batch still runs on all cores).
BATCH_BYTES = 64 << 20
# Storages from this size on have their pages dropped by the core chunk by chunk as it hashes
# them (a tensor larger than a batch never stays mapped in full); smaller ones, which share pages
# with their neighbours, with their batch.
CORE_RELEASE_BYTES = 64 << 10
RELEASE_GAP = 4096  # storages of a source at most this far apart are released in one call


def _batches(sizes: list[int]) -> list[tuple[int, int]]:
    out, start, size = [], 0, 0
    for i, nbytes in enumerate(sizes):
        size += nbytes
        if size >= BATCH_BYTES:
            out.append((start, i + 1))
            start, size = i + 1, 0
    if start < len(sizes) or not out:
        out.append((start, len(sizes)))
    return out


def _offset_progress(progress: Progress, done: int, total: int) -> Progress:
    return lambda d, _t: progress(done + d, total)


def checkpoint_digest(digests: Mapping[str, Digest | bytes]) -> Digest:
    """One digest over (name, tensor digest) pairs, in the order of the names' UTF-8 bytes."""
    body = bytearray(b"ckh1-ckpt\0")
    for raw_name in sorted(name.encode("utf-8") for name in digests):
        body += len(raw_name).to_bytes(8, "little") + raw_name
        body += bytes(digests[raw_name.decode("utf-8")])
    return Digest(core.xxh3_128(body))


def digest_array(array: np.ndarray, dtype_name: str | None = None) -> Digest:
    """Digest of an in-memory numpy array (non-contiguous arrays are copied first).

    `dtype_name` names the element type when numpy has none (bfloat16 or float8 held as
    unsigned ints of the same size); by default it comes from the array's dtype.
    """
    try:
        d = dtypes.get(dtype_name) if dtype_name else dtypes.from_numpy(array.dtype)
    except KeyError:
        raise DtypeError(None, f"cannot hash dtype {dtype_name or array.dtype}") from None
    if d.itemsize != array.dtype.itemsize:
        raise DtypeError(
            None, f"{d.name} has {d.itemsize}-byte items, the array {array.dtype.itemsize}"
        )
    import numpy as np

    a = np.require(array, requirements="C")  # ascontiguousarray makes a 0-d array 1-d
    swap = a.dtype.byteorder == ">" and d.itemsize > 1
    shape = tuple(a.shape)
    flat = a.reshape(-1).view(np.uint8)
    job = (flat, d.name, d.itemsize, shape, contiguous_strides(shape), 0, swap)
    return Digest(core.hash_tensors([job], 1)[0])


def tensor_digest_cuda(tensor: Any) -> Digest:
    """Digest of a torch CUDA tensor, computed on its GPU (needs a build with INSPECTOR_CUDA=ON).

    Non-contiguous or unaligned tensors are made contiguous on the device first.
    """
    import torch  # the caller holds a torch tensor: torch is imported already

    if tensor.device.type != "cuda":
        raise ValueError(f"tensor_digest_cuda needs a CUDA tensor, got one on {tensor.device}")
    t = tensor.detach()
    if not t.is_contiguous() or t.data_ptr() % 16:
        t = t.clone(memory_format=torch.contiguous_format)
    try:
        d = dtypes.get(str(t.dtype).removeprefix("torch."))
    except KeyError:
        raise DtypeError(None, f"cannot hash torch dtype {t.dtype}") from None
    torch.cuda.synchronize(t.device)  # writes queued on any stream land before the kernel reads
    nbytes = t.numel() * t.element_size()
    return Digest(core.hash_device(t.data_ptr(), nbytes, d.name, tuple(t.shape), t.device.index))


class TensorHasher:
    """Incremental digest for bytes that arrive in pieces (a writer, a stream): feed the
    tensor's logical little-endian bytes in C order, then call digest()."""

    def __init__(self, dtype: str, shape: tuple[int, ...]):
        try:
            d = dtypes.get(dtype)
        except KeyError:
            raise DtypeError(None, f"cannot hash dtype {dtype}") from None
        self._hasher = core.TreeHasher(d.name, tuple(shape), d.itemsize)

    def update(self, data: Any) -> None:
        self._hasher.update(data)

    def digest(self) -> Digest:
        return Digest(self._hasher.finish())


def _tensor(ckpt: Checkpoint, name: str) -> TensorInfo:
    try:
        return ckpt[name]
    except KeyError:
        raise CheckpointError(ckpt.path, "no such tensor", key=name) from None


def _dtype(ckpt: Checkpoint, t: TensorInfo) -> dtypes.DType:
    try:
        return dtypes.get(t.dtype)
    except KeyError:
        raise DtypeError(_where(ckpt, t), f"cannot hash dtype {t.dtype}", key=t.name) from None


def _job(ckpt: Checkpoint, t: TensorInfo) -> tuple[Any, ...] | None:
    d = _dtype(ckpt, t)
    src = t.storage.source
    if src.assembled or _streams(ckpt, t):
        return None  # hashed piece by piece (_hash_pieces)
    if src.path is None and src.buffer is None:
        if t.numel:
            raise TensorDataError(_where(ckpt, t), "tensor has no data (meta device)", key=t.name)
        buf: Any = b""
    else:
        buf = ckpt.storage_bytes(t.storage)
    swap = t.storage.byteorder == "big" and d.itemsize > 1
    # A read-only map of the file: the core drops its pages behind the hashed chunks, so a 100 GB
    # tensor never stays mapped in full (never for in-memory buffers: it would discard them).
    # Not for a small storage: it shares its pages with its neighbours, which would fault them
    # back in one by one (100k tiny tensors: 7 us each); its pages go with the batch's
    # (`_release_batch`).
    mapped = (src.length >= CORE_RELEASE_BYTES and src.path is not None and not src.compression
              and ckpt.source(src.path).is_file_map)
    return (buf, d.name, d.itemsize, t.shape, t.strides, t.storage_offset, swap, mapped)


def _where(ckpt: Checkpoint, t: TensorInfo) -> str | None:
    return t.storage.source.path or (str(ckpt.path) if ckpt.path is not None else None)
