"""A sharded tensor as one source: the logical tensor's bytes, assembled from its chunks.

A checkpoint written by several ranks (torch.distributed.checkpoint with DTensor or FSDP2)
stores one logical tensor as chunks: boxes of the global tensor (global offsets and sizes),
each a C-contiguous little-endian run of elements somewhere in a rank's file. `ShardedTensor`
is a `sources.Source` whose bytes are the logical tensor in C order, so that every stage
(hash, diff, array, apply) sees one tensor of the global shape, as if it were saved whole.

Chunks are read in place. When every chunk is a contiguous run of the logical tensor (sharded
along dim 0, FSDP2's layout), the tensor's bytes are the chunks' bytes one after another:
`pieces()` yields views of the files, no copy. Otherwise (sharded along a later dim, 2-D
meshes) `pieces()` assembles slabs of whole rows of about `WINDOW` bytes, so memory stays
bounded by the window, not by the tensor. `read` copies what is asked for; `view` maps only a
range lying inside one chunk.

Where a chunk's bytes lie is found lazily (`locate`, given by the reader): listing a sharded
checkpoint reads its metadata, never its chunk records.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cached_property
from math import prod
from typing import Any

from .errors import HeaderError, TruncatedFileError
from .sources import Identity, LocalFile, Source, check_range, own_source

WINDOW = 64 << 20  # bytes of logical tensor assembled at a time, when chunks must be interleaved


@dataclass(frozen=True, slots=True)
class Chunk:
    """A box of the global tensor and where its stored record lies (for reports)."""

    offsets: tuple[int, ...]  # global index of its first element, per dim
    sizes: tuple[int, ...]
    file: str  # the file holding it, as the checkpoint names it
    offset: int  # where its record starts in `file`
    length: int  # the record's length

    @property
    def numel(self) -> int:
        return prod(self.sizes)


# chunk index -> (source, byte offset of the chunk's first element): the chunk's elements are
# C-contiguous little-endian there. Raises a CheckpointError naming file and key when they are not.
Locate = Callable[[int], tuple[Source, int]]


def check_layout(label: str, key: str, shape: tuple[int, ...], chunks: list[Chunk]) -> None:
    """Cheap checks of a chunk layout, done when the checkpoint is opened: every chunk has the
    tensor's rank and lies inside it, and the chunks hold as many elements as the tensor.
    That they do not overlap (then, with the count, they tile it) is checked on first read."""
    for c in chunks:
        if len(c.offsets) != len(shape) or len(c.sizes) != len(shape):
            raise HeaderError(label, f"chunk at {c.offsets} has another rank than {shape}",
                              key=key)
        if any(o + s > n for o, s, n in zip(c.offsets, c.sizes, shape, strict=True)):
            raise HeaderError(label, f"chunk at {c.offsets} of size {c.sizes} lies outside "
                              f"the tensor's shape {shape}", key=key)
    held = sum(c.numel for c in chunks)
    if held != prod(shape):
        raise HeaderError(label, f"chunks hold {held} elements, the tensor {prod(shape)} "
                          f"(shape {shape}): a chunk is missing or repeated", key=key)


def _overlap(a: Chunk, b: Chunk) -> bool:
    return all(ao < bo + bs and bo < ao + as_ and as_ and bs for ao, as_, bo, bs in
               zip(a.offsets, a.sizes, b.offsets, b.sizes, strict=True))


def _start(c: Chunk, shape: tuple[int, ...]) -> int:
    """Element index of the chunk's first element in the logical tensor (C order)."""
    index = 0
    for o, n in zip(c.offsets, shape, strict=True):
        index = index * n + o
    return index


def _is_run(c: Chunk, shape: tuple[int, ...]) -> bool:
    """True when the chunk is one contiguous run of the logical tensor: size 1 in the dims
    before some dim, any size in it, whole in every dim after it."""
    dims = len(shape)
    first = next((d for d in range(dims) if c.sizes[d] != 1), dims)
    return all(c.sizes[d] == shape[d] and c.offsets[d] == 0 for d in range(first + 1, dims))


def open_named(name: str) -> Source:
    """The source a storage or chunk names: a URL read remotely (`inspector.remote`, imported
    only for one), else a local file."""
    if "://" in name:
        from .remote import RemoteFile, is_url

        if is_url(name):
            return RemoteFile(name)
    return LocalFile(name)


class FilePool:
    """Files opened once for the chunks of all the tensors of a checkpoint, and closed
    together (closing one of its sharded tensors closes them; a later read opens them again).
    A file is named by its path, or a URL (`remote.RemoteFile`); a path under a URL and a
    source stand for themselves (their owner closes them)."""

    def __init__(self) -> None:
        self._files: dict[str, Source] = {}
        self._lock = threading.Lock()

    def source(self, where: str | os.PathLike[str] | Source) -> Source:
        own = own_source(where)
        if own is not None:
            return own
        if not isinstance(where, (str, os.PathLike)):
            return where
        name = os.fspath(where)
        with self._lock:
            found = self._files.get(name)
            if found is None:
                found = self._files[name] = open_named(name)
            return found

    def close(self) -> None:
        with self._lock:
            for f in self._files.values():
                f.close()
            self._files.clear()


class ShardedTensor:
    """The logical bytes of one tensor stored as chunks (a `sources.Source`)."""

    is_file_map = False

    def __init__(self, name: str, key: str, shape: tuple[int, ...], itemsize: int,
                 chunks: list[Chunk], locate: Locate, *, files: list[str],
                 close: Callable[[], None] = lambda: None):
        self.name = name  # what storages call `path`; unique in its checkpoint
        self.key = key  # the tensor's name in messages
        self.shape = shape
        self.itemsize = itemsize
        self.chunks = chunks
        self.size = prod(shape) * itemsize
        self.files = files  # the paths of the files holding the chunks
        self._locate = locate
        self._close = close  # closes the files `locate` opened (shared by a checkpoint's tensors)
        self._located: dict[int, tuple[Source, int]] = {}
        self._checked = False
        self._lock = threading.Lock()

    @cached_property
    def _runs(self) -> list[int] | None:
        """In place when every chunk is a run: their order in the logical tensor (found when
        first read, not when a folder of thousands of tensors is listed)."""
        shape, chunks = self.shape, self.chunks
        if not all(_is_run(c, shape) for c in chunks):
            return None
        return sorted(range(len(chunks)), key=lambda i: _start(chunks[i], shape))

    @property
    def in_place(self) -> bool:
        """True when the logical bytes are the chunks' own bytes one after another."""
        return self._runs is not None

    # Source interface ----------------------------------------------------------------------------
    def read(self, offset: int, length: int) -> bytes:
        check_range(self.name, self.size, offset, length)
        return b"".join(self.pieces(offset, length))

    def view(self, offset: int, length: int) -> memoryview | None:
        check_range(self.name, self.size, offset, length)
        if self._runs is None:
            return None
        for index, lo in self._run_starts():
            n = self.chunks[index].numel * self.itemsize
            if lo <= offset and offset + length <= lo + n:
                return self._chunk_view(index, offset - lo, length)
        return None

    def release(self, offset: int, length: int) -> None:
        """Let the pages of every chunk go (a slab may touch any of them)."""
        for index in range(len(self.chunks)):
            src, start = self._where(index)
            src.release(start, self.chunks[index].numel * self.itemsize)

    def identity(self) -> Identity | None:
        sources = {src.name: src for src, _ in (self._where(i) for i in range(len(self.chunks)))}
        states = [sources[n].identity() for n in sorted(sources)]
        if all(s is None for s in states):
            return None
        return (self.size, *states)

    def close(self) -> None:
        self._close()
        self._located.clear()

    # The logical bytes, in order --------------------------------------------------------------
    def pieces(self, offset: int = 0, length: int | None = None) -> Iterator[memoryview]:
        """Bytes [offset, offset + length) of the logical tensor, in order, as views: the
        chunks' own bytes where they are runs, else assembled slabs of whole rows."""
        length = self.size - offset if length is None else length
        check_range(self.name, self.size, offset, length)
        if length == 0:
            return
        self._check_chunks()
        end = offset + length
        if self._runs is not None:
            for index, lo in self._run_starts():
                n = self.chunks[index].numel * self.itemsize
                a, b = max(offset, lo), min(end, lo + n)
                if a < b:
                    yield self._chunk_view(index, a - lo, b - a)
            return
        row = self.size // self.shape[0]
        rows = max(1, WINDOW // row)
        first = offset // row
        for r0 in range(first, -(-end // row), rows):
            r1 = min(r0 + rows, self.shape[0])
            slab = memoryview(self._slab(r0, r1))
            a, b = max(offset, r0 * row), min(end, r1 * row)
            yield slab[a - r0 * row : b - r0 * row]

    def _run_starts(self) -> Iterator[tuple[int, int]]:
        assert self._runs is not None
        lo = 0
        for index in self._runs:
            yield index, lo
            lo += self.chunks[index].numel * self.itemsize

    def _chunk_view(self, index: int, offset: int, length: int) -> memoryview:
        src, start = self._where(index)
        view = src.view(start + offset, length)
        return view if view is not None else memoryview(src.read(start + offset, length))

    def _slab(self, r0: int, r1: int) -> Any:
        """Rows [r0, r1) of the logical tensor (along dim 0), assembled from the chunks."""
        import numpy as np

        out = np.empty((r1 - r0, *self.shape[1:], self.itemsize), dtype=np.uint8)
        for index, c in enumerate(self.chunks):
            lo, hi = max(r0, c.offsets[0]), min(r1, c.offsets[0] + c.sizes[0])
            if lo >= hi or not c.numel:
                continue
            inner = prod(c.sizes[1:]) * self.itemsize
            data = self._chunk_view(index, (lo - c.offsets[0]) * inner, (hi - lo) * inner)
            block = np.frombuffer(data, dtype=np.uint8).reshape(
                (hi - lo, *c.sizes[1:], self.itemsize))
            box = (slice(lo - r0, hi - r0), *(
                slice(o, o + s) for o, s in zip(c.offsets[1:], c.sizes[1:], strict=True)))
            out[box] = block
        return out.reshape(-1)

    def _where(self, index: int) -> tuple[Source, int]:
        found = self._located.get(index)
        if found is None:
            found = self._located.setdefault(index, self._locate(index))
        return found

    def _check_chunks(self) -> None:
        """Before the first read: the chunks do not overlap, and each one's elements lie inside
        its file (so no slab is allocated for bytes that are not there)."""
        if self._checked:
            return
        with self._lock:
            chunks = sorted(self.chunks, key=lambda c: c.offsets)
            for i, a in enumerate(chunks):
                for b in chunks[i + 1 :]:
                    if b.offsets[0] >= a.offsets[0] + a.sizes[0]:
                        break  # sorted by dim 0: no later chunk reaches back into `a`
                    if _overlap(a, b):
                        raise HeaderError(b.file, f"chunks at {a.offsets} and {b.offsets} "
                                          "overlap", key=self.key)
            for index, c in enumerate(self.chunks):
                src, start = self._where(index)
                if start + c.numel * self.itemsize > src.size:
                    raise TruncatedFileError(
                        c.file, f"chunk at {c.offsets} needs bytes [{start}, "
                        f"{start + c.numel * self.itemsize}) of {src.name} ({src.size} bytes)",
                        key=self.key)
            self._checked = True

    def __repr__(self) -> str:
        return f"ShardedTensor({self.key!r}, {self.shape}, {len(self.chunks)} chunks)"
