"""The weighted mean of the same tensor in several checkpoints, as a producer (`ckpt average`).

    AverageValue(parts, out_dtype, weights, divisor)    # parts: (checkpoint, tensor) per input

Each chunk of the output is computed by the C++ core (`_core.average`) from the inputs' bytes of
the same elements: mapped ranges of the files (a contiguous little-endian input), or a bounded
C-order copy of a strided or big-endian one. Nothing larger than one chunk per input is held, so
memory stays flat however large the tensor is; the pages read are dropped once used.

The bytes are hashed as they are produced (a writer runs one producer's chunks in order, in one
thread), so verifying the written file does not compute every mean a second time:
`produced_digest()` is the digest of the last complete, in-order pass, else None.
"""

from __future__ import annotations

from collections.abc import Iterator
from math import prod

from .. import dtypes
from .._native import core
from ..hashing import Digest, TensorHasher
from ..model import Checkpoint, TensorInfo, element_span
from .produce import Chunk, Producer, StorageBytes, View


class AverageValue(Producer):
    """sum_k weights[k] * parts[k] / divisor, element by element, as `out_dtype` in C order."""

    def __init__(self, parts: list[tuple[Checkpoint, TensorInfo]], out_dtype: str,
                 weights: list[float], divisor: float):
        first = parts[0][1]
        self.parts, self.weights, self.divisor = parts, weights, divisor
        self.dtype, self.shape = out_dtype, first.shape
        self.in_dtype = first.dtype
        self.nbytes = first.numel * dtypes.get(out_dtype).itemsize
        self._open: list[StorageBytes] = []
        self._hasher: TensorHasher | None = None
        self._hashed = 0  # bytes hashed in order by the current pass; -1: out of order

    def produced_digest(self) -> Digest | None:
        """The digest of the bytes the last pass produced, when it produced all, in order."""
        if self._hasher is None or self._hashed != self.nbytes:
            return None
        return self._hasher.digest()

    def _hash(self, start: int, data: memoryview) -> None:
        if self._hasher is None or self._hashed != start:
            self._hashed = -1
            return
        self._hasher.update(data)
        self._hashed += len(data)

    def _flat(self) -> bool:
        """Every input is one contiguous little-endian run: chunks may cut anywhere."""
        return all(View.of(t).contiguous and not _swapped(t) for _, t in self.parts)

    def chunks(self, limit: int) -> Iterator[Chunk]:
        if not self.shape or self._flat():
            rows, row = max(prod(self.shape), 1) if self.shape else 1, 1
        else:
            rows, row = self.shape[0], prod(self.shape[1:])
        if rows * row == 0:
            return
        widest = max(dtypes.get(self.in_dtype).itemsize, dtypes.get(self.dtype).itemsize)
        step = max(1, limit // max(row * widest, 1))
        self._open = [_open(ckpt, t) for ckpt, t in self.parts]
        self._hasher, self._hashed = TensorHasher(self.dtype, tuple(self.shape)), 0
        out_item = dtypes.get(self.dtype).itemsize
        for r0 in range(0, rows, step):
            r1 = min(r0 + step, rows)
            n = (r1 - r0) * row * out_item

            def write(buf: memoryview, r0: int = r0, r1: int = r1, n: int = n) -> int:
                inputs = [self._rows(k, r0, r1, row) for k in range(len(self.parts))]
                crc = core.average(inputs, self.in_dtype, self.weights, self.divisor, buf[:n],
                                   self.dtype)
                self._hash(r0 * row * out_item, buf[:n])
                for k, (_, t) in enumerate(self.parts):
                    if View.of(t).contiguous:
                        base = t.storage_offset - element_span(t.shape, t.strides,
                                                               t.storage_offset)[0]
                        self._open[k].release((base + r0 * row) * t.itemsize,
                                              (base + r1 * row) * t.itemsize)
                return int(crc)

            yield n, write
        self.close()

    def _rows(self, k: int, r0: int, r1: int, row: int) -> memoryview | bytearray:
        """Elements [r0*row, r1*row) of input k in C order, little-endian."""
        _, t = self.parts[k]
        src, item = self._open[k], t.itemsize
        lo = element_span(t.shape, t.strides, t.storage_offset)[0]
        if View.of(t).contiguous and not _swapped(t):
            start = (t.storage_offset - lo + r0 * row) * item
            return src.data[start : start + (r1 - r0) * row * item]
        out = bytearray((r1 - r0) * row * item)
        shape = (r1 - r0, *t.shape[1:])
        first = t.storage_offset - lo + r0 * t.strides[0]
        core.copy_cast(src.data, t.dtype, shape, t.strides, first, out, 0, t.dtype,
                       src_byteswap=_swapped(t), threads=1)
        return out

    def close(self) -> None:
        for src in self._open:
            src.close()
        self._open = []


def _swapped(t: TensorInfo) -> bool:
    return t.storage.byteorder == "big" and t.itemsize > 1


def _open(ckpt: Checkpoint, t: TensorInfo) -> StorageBytes:
    lo, hi = element_span(t.shape, t.strides, t.storage_offset)
    return StorageBytes(ckpt, t.storage, lo * t.itemsize, hi * t.itemsize)
