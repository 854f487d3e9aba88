"""Content digests for verifying a written output, with memory that stays flat.

Stored tensors are hashed by `hashing.hash_tensors`, the one mechanism for hashing a checkpoint:
it reads the checkpoint's single shared read-only map of each file in batches of about 64 MB and
drops each batch's pages from the process once hashed, so the resident set stays flat over
multi-gigabyte files. A transformed source value, which exists only as a stream, is hashed here
as it is produced. Both give the same `ckh1` digests.
"""

from __future__ import annotations

from ..hashing import Digest, TensorHasher
from .produce import Producer

_CHUNK = 16 << 20


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
