"""Content digests for verifying a written output, with memory that stays flat.

`hashing.hash_tensors` maps whole files; hashing three multi-gigabyte files that way would put
every page into the process's resident set. Here each tensor is hashed through a map of just its
own byte window, in batches that are unmapped as soon as they are hashed. Digests are the same
`ckh1` digests (the core's tree hash over the same jobs).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .. import dtypes
from .._native import core
from ..hashing import Digest, TensorHasher
from ..model import Checkpoint, element_span
from .produce import Producer, StorageBytes

_BATCH_BYTES = 64 << 20  # mapped at once while hashing: bounds the resident set
_CHUNK = 16 << 20


def digests(ckpt: Checkpoint, names: Iterable[str], *, threads: int | None = None
            ) -> dict[str, Digest]:
    out: dict[str, Digest] = {}
    batch: list[tuple[str, Any, StorageBytes]] = []
    size = 0
    for name in names:
        t = ckpt.tensors[name]
        d = dtypes.get(t.dtype)
        lo, hi = element_span(t.shape, t.strides, t.storage_offset)
        window = StorageBytes(ckpt, t.storage, lo * d.itemsize, hi * d.itemsize)
        swap = t.storage.byteorder == "big" and d.itemsize > 1
        job = (window.data, d.name, d.itemsize, t.shape, t.strides, t.storage_offset - lo, swap)
        batch.append((name, job, window))
        size += (hi - lo) * d.itemsize
        if size >= _BATCH_BYTES:
            _flush(batch, out, threads)
            size = 0
    _flush(batch, out, threads)
    return out


def _flush(batch: list[tuple[str, Any, StorageBytes]], out: dict[str, Digest],
           threads: int | None) -> None:
    if not batch:
        return
    try:
        raw = core.hash_tensors([job for _, job, _ in batch], threads or 0, None)
        out.update({name: Digest(r) for (name, _, _), r in zip(batch, raw, strict=True)})
    finally:
        for _, _, window in batch:
            window.close()
        batch.clear()


def value_digest(value: Producer) -> Digest:
    """Digest of what a producer writes (a transformed source), streamed in bounded chunks."""
    hasher = TensorHasher(value.dtype, tuple(value.shape))
    buf = memoryview(bytearray(_CHUNK))
    try:
        for n, write in value.chunks(_CHUNK):
            target = buf if n <= len(buf) else memoryview(bytearray(n))
            write(target[:n])
            hasher.update(target[:n])
    finally:
        value.close()
    return hasher.digest()
