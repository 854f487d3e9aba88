"""Byte producers: where an output's bytes come from, delivered in bounded chunks.

A producer writes a run of output bytes chunk by chunk into a caller's buffer and returns each
chunk's CRC-32, so a writer never holds more than one buffer per thread:

- `RawBytes`: a byte range of a storage, copied as is (an untouched tensor or record);
- `ViewValue`: a strided view of a storage (a source tensor after transpose/slice/split/reshape),
  written in C order and cast on the way by the C++ core (`_core.copy_cast`);
- `ArrayValue`: values already in memory (a pad or concat result), also written by the core.

File-backed storages are reached through memory maps of just the window a producer reads, closed
(and, chunk by chunk, released with MADV_DONTNEED) as soon as they are used: the pages stay in the
page cache but do not pile up in the process's resident set.
"""

from __future__ import annotations

import contextlib
import mmap
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from math import prod
from typing import TYPE_CHECKING

from .. import dtypes
from .._native import core
from ..model import Checkpoint, Storage, TensorInfo, contiguous_strides, element_span

if TYPE_CHECKING:  # numpy is imported where arrays are built: plain copies do not need it
    import numpy as np

# A chunk: (nbytes, write) where write(buffer) fills buffer[:nbytes] and returns its CRC-32.
Chunk = tuple[int, Callable[[memoryview], int]]
_PAGE = mmap.ALLOCATIONGRANULARITY


class Producer:
    """A run of `nbytes` output bytes, delivered as chunks of at most `limit` bytes.

    Producers of tensor values also say what they hold: `dtype` and `shape` (C order).
    """

    nbytes: int = 0
    dtype: str = "uint8"
    shape: tuple[int, ...] = ()

    def chunks(self, limit: int) -> Iterator[Chunk]:
        raise NotImplementedError

    def close(self) -> None:
        """Release whatever the chunks mapped (called once the producer is written)."""

    def file_range(self) -> tuple[str, int] | None:
        """(path, offset) when the bytes are a run of a file, copied unchanged: a writer may
        then copy them in the kernel (`copy_file_range`) instead of through a buffer."""
        return None

    def segments(self) -> list[Producer]:
        """The producers whose bytes follow one another to make this one's."""
        return [self]


@dataclass
class Window:
    """A read-only memory map of part of a file, indexed from `start` (not page aligned)."""

    mm: mmap.mmap
    skew: int  # bytes between the mapped start and `start`

    @classmethod
    def open(cls, path: str, start: int, length: int) -> Window:
        aligned = start - start % _PAGE
        with open(path, "rb") as f:
            mm = mmap.mmap(f.fileno(), length + start - aligned, offset=aligned,
                           access=mmap.ACCESS_READ)
        return cls(mm, start - aligned)

    def view(self, length: int) -> memoryview:
        with memoryview(self.mm) as whole:
            return whole[self.skew : self.skew + length]

    def release(self, lo: int, hi: int) -> None:
        """Drop the pages wholly inside [lo, hi) (relative to `start`) from this process."""
        a = -(-(lo + self.skew) // mmap.PAGESIZE) * mmap.PAGESIZE
        b = (hi + self.skew) // mmap.PAGESIZE * mmap.PAGESIZE
        if b > a:
            self.mm.madvise(mmap.MADV_DONTNEED, a, b - a)

    def close(self) -> None:
        with contextlib.suppress(BufferError):  # a view is still alive: the map goes with it
            self.mm.close()


class StorageBytes:
    """Bytes [lo, hi) of a storage: a file window, or the checkpoint's own view of it."""

    def __init__(self, ckpt: Checkpoint | None, storage: Storage, lo: int, hi: int):
        src = storage.source
        self.window: Window | None = None
        self._mapped: tuple[Checkpoint, str, int] | None = None  # (ckpt, source, offset of lo)
        if src.patchable and src.path is not None and hi > lo:
            self.window = Window.open(src.path, src.offset + lo, hi - lo)
            self.data = self.window.view(hi - lo)
        elif hi > lo:
            if ckpt is None:
                raise ValueError(f"storage {storage.key!r} needs its checkpoint to be read")
            self.data = ckpt.storage_bytes(storage)[lo:hi]
            if src.path is not None and not src.compression:  # a source's pages: let them go
                self._mapped = (ckpt, src.path, src.offset + lo)
        else:
            self.data = memoryview(b"")

    def release(self, lo: int, hi: int) -> None:
        """Bytes [lo, hi) (relative to the start) are written: drop their pages."""
        if self.window is not None:
            self.window.release(lo, hi)
        elif self._mapped is not None:
            ckpt, path, base = self._mapped
            ckpt.release_range(path, base + lo, hi - lo)

    def close(self) -> None:
        self.data.release()
        if self.window is not None:
            self.window.close()
            self.window = None


class RawBytes(Producer):
    """Bytes [start, start + nbytes) of a storage, copied unchanged."""

    def __init__(self, ckpt: Checkpoint | None, storage: Storage, start: int = 0,
                 nbytes: int | None = None):
        self.ckpt, self.storage, self.start = ckpt, storage, start
        self.nbytes = storage.nbytes - start if nbytes is None else nbytes
        self.shape = (self.nbytes,)
        self._bytes: StorageBytes | None = None

    def chunks(self, limit: int) -> Iterator[Chunk]:
        self._bytes = src = StorageBytes(self.ckpt, self.storage, self.start,
                                          self.start + self.nbytes)
        for lo in range(0, self.nbytes, limit):
            hi = min(lo + limit, self.nbytes)

            def write(buf: memoryview, lo: int = lo, hi: int = hi) -> int:
                buf[: hi - lo] = src.data[lo:hi]
                src.release(lo, hi)
                return int(core.crc32(buf[: hi - lo]))

            yield hi - lo, write
        self.close()

    def file_range(self) -> tuple[str, int] | None:
        return _file_range(self.storage, self.start, 1)

    def close(self) -> None:
        if self._bytes is not None:
            self._bytes.close()
            self._bytes = None


def _file_range(storage: Storage, start: int, itemsize: int) -> tuple[str, int] | None:
    src = storage.source
    if not src.patchable or src.path is None or (storage.byteorder == "big" and itemsize > 1):
        return None
    return src.path, src.offset + start


class FileBytes(Producer):
    """Bytes [offset, offset + nbytes) of a file, copied unchanged (a clone's gap)."""

    def __init__(self, path: str, offset: int, nbytes: int):
        self.path, self.offset, self.nbytes = path, offset, nbytes
        self.shape = (nbytes,)

    def file_range(self) -> tuple[str, int] | None:
        return self.path, self.offset

    def chunks(self, limit: int) -> Iterator[Chunk]:
        for lo in range(0, self.nbytes, limit):
            hi = min(lo + limit, self.nbytes)

            def write(buf: memoryview, lo: int = lo, hi: int = hi) -> int:
                window = Window.open(self.path, self.offset + lo, hi - lo)
                try:
                    with window.view(hi - lo) as data:
                        buf[: hi - lo] = data
                finally:
                    window.close()
                return int(core.crc32(buf[: hi - lo]))

            yield hi - lo, write


@dataclass(frozen=True)
class View:
    """A strided view in elements (as torch stores tensors) of one storage."""

    dtype: str
    shape: tuple[int, ...]
    strides: tuple[int, ...]
    offset: int

    @classmethod
    def of(cls, t: TensorInfo) -> View:
        return cls(t.dtype, t.shape, t.strides, t.storage_offset)

    @property
    def contiguous(self) -> bool:
        return self.strides == contiguous_strides(self.shape) or prod(self.shape) <= 1


class ViewValue(Producer):
    """The logical tensor `view` of `storage`, in C order, cast to `out_dtype`."""

    def __init__(self, ckpt: Checkpoint | None, storage: Storage, view: View,
                 out_dtype: str | None = None):
        self.ckpt, self.storage, self.view = ckpt, storage, view
        self.out_dtype = self.dtype = out_dtype or view.dtype
        self.shape = view.shape
        self.nbytes = prod(view.shape) * dtypes.get(self.out_dtype).itemsize
        self._bytes: StorageBytes | None = None

    def with_view(self, view: View, out_dtype: str | None = None) -> ViewValue:
        return ViewValue(self.ckpt, self.storage, view, out_dtype or self.out_dtype)

    def chunks(self, limit: int) -> Iterator[Chunk]:
        v, item = self.view, dtypes.get(self.view.dtype).itemsize
        lo, hi = element_span(v.shape, v.strides, v.offset)
        self._bytes = src = StorageBytes(self.ckpt, self.storage, lo * item, hi * item)
        swap = self.storage.byteorder == "big" and item > 1
        for shape, strides, offset in _row_blocks(v, lo, limit, self.out_itemsize):
            n = prod(shape) * self.out_itemsize

            def write(buf: memoryview, shape: tuple[int, ...] = shape,
                      strides: tuple[int, ...] = strides, offset: int = offset, n: int = n) -> int:
                crc = core.copy_cast(src.data, v.dtype, shape, strides, offset, buf[:n], 0,
                                     self.out_dtype, src_byteswap=swap, threads=1)
                if v.contiguous:
                    src.release(offset * item, (offset + prod(shape)) * item)
                return int(crc)

            yield n, write
        self.close()

    def file_range(self) -> tuple[str, int] | None:
        v, item = self.view, dtypes.get(self.view.dtype).itemsize
        if not v.contiguous or self.out_dtype != v.dtype:
            return None
        return _file_range(self.storage, v.offset * item, item)

    @property
    def out_itemsize(self) -> int:
        return dtypes.get(self.out_dtype).itemsize

    def close(self) -> None:
        if self._bytes is not None:
            self._bytes.close()
            self._bytes = None


def _row_blocks(v: View, base: int, limit: int, out_item: int
                ) -> Iterator[tuple[tuple[int, ...], tuple[int, ...], int]]:
    """Sub-views of `v` along its first axis (the whole of a contiguous view is flattened first),
    each writing at most `limit` bytes (one row at least); offsets relative to element `base`."""
    shape, strides, offset = v.shape, v.strides, v.offset - base
    if prod(shape) == 0:
        return
    if v.contiguous or not shape:
        shape, strides = (prod(shape),), (1,)
    row = prod(shape[1:]) * out_item
    step = max(1, limit // max(row, 1))
    for r in range(0, shape[0], step):
        n = min(step, shape[0] - r)
        yield (n, *shape[1:]), strides, offset + r * strides[0]


class ArrayValue(Producer):
    """Values held in memory (a C-contiguous numpy array whose bytes are `dtype` elements)."""

    def __init__(self, array: np.ndarray, dtype: str):
        import numpy as np

        self.array = np.require(array, requirements="C")  # keeps 0-d arrays 0-d
        self.dtype = dtype
        self.shape = tuple(self.array.shape)
        self.nbytes = self.array.nbytes

    def chunks(self, limit: int) -> Iterator[Chunk]:
        import numpy as np

        flat = self.array.reshape(-1).view(np.uint8)
        item = dtypes.get(self.dtype).itemsize
        step = max(item, limit // item * item)
        for lo in range(0, self.nbytes, step):
            hi = min(lo + step, self.nbytes)

            def write(buf: memoryview, lo: int = lo, hi: int = hi) -> int:
                n = hi - lo
                return int(core.copy_cast(flat[lo:hi], self.dtype, (n // item,), (1,), 0,
                                          buf[:n], 0, self.dtype, threads=1))

            yield hi - lo, write


class Concatenated(Producer):
    """Several producers one after another (a storage made of a tensor and its raw remainder)."""

    def __init__(self, parts: list[Producer]):
        self.parts = parts
        self.nbytes = sum(p.nbytes for p in parts)

    def chunks(self, limit: int) -> Iterator[Chunk]:
        for p in self.parts:
            yield from p.chunks(limit)

    def segments(self) -> list[Producer]:
        return [s for p in self.parts for s in p.segments()]

    def close(self) -> None:
        for p in self.parts:
            p.close()


def take_rows(value: Producer, r0: int, r1: int) -> Producer:
    """Rows [r0, r1) (first axis) of a tensor value: a view of the same storage when it is one,
    else a slice of its values (materialised when they are not in memory yet)."""
    if not value.shape:
        return value
    shape = (r1 - r0, *value.shape[1:])
    if isinstance(value, ViewValue):
        w = value.view
        return value.with_view(View(w.dtype, shape, w.strides, w.offset + r0 * w.strides[0]))
    arr = (value.array if isinstance(value, ArrayValue)
           else materialize(value, value.dtype, tuple(value.shape)))
    return ArrayValue(arr[r0:r1], value.dtype)


def materialize(value: Producer, dtype: str, shape: tuple[int, ...]) -> np.ndarray:
    """A producer's bytes as one numpy array (numpy's view dtype: bf16/fp8 as unsigned ints)."""
    import numpy as np

    out = np.empty(value.nbytes, dtype=np.uint8)
    view = memoryview(out.data)
    pos = 0
    try:
        for n, write in value.chunks(max(value.nbytes, 1)):
            write(view[pos : pos + n])
            pos += n
    finally:
        value.close()
    return out.view(dtypes.numpy_view_dtype(dtypes.get(dtype))).reshape(shape)

