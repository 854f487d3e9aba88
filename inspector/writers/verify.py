"""Content digests for verifying a written output, with memory that stays flat.

Stored tensors are hashed by `hashing.hash_tensors`, the one mechanism for hashing a checkpoint:
it reads the checkpoint's single shared read-only map of each file in batches of about 64 MB and
drops each batch's pages from the process once hashed, so the resident set stays flat over
multi-gigabyte files. A transformed source value, which exists only as a stream, is hashed here
as it is produced. Both give the same `ckh1` digests.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from ..hashing import Digest, TensorHasher, hash_tensors
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


def written_digests(path: str | os.PathLike[str], root: Any, names: Iterable[str],
                    threads: int | None = None) -> tuple[dict[str, Digest], list[str]]:
    """Re-open a written output (weights under `root`, detected when None) and hash the named
    tensors: (digest of each one it holds, the names it lacks)."""
    from ..reader import open_checkpoint

    with open_checkpoint(path, root=root) as written:
        wanted = list(names)
        missing = [n for n in wanted if n not in written.tensors]
        present = [n for n in wanted if n in written.tensors]
        return hash_tensors(written, present, threads=threads), missing


def mismatches(expected: dict[str, Digest], got: dict[str, Digest], missing: list[str]
               ) -> list[str]:
    """What a verification reports: the missing names, then each digest that differs."""
    return [*(f"{n}: missing from the output" for n in missing),
            *(f"{n}: digest {got[n]} expected {expected[n]}" for n in got if got[n] != expected[n])]
