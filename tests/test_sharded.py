"""`inspector.sharded`: a tensor's logical bytes assembled from chunks, against numpy.

Layouts are grids of boxes cut at random points in every dim (what any mix of `Shard` and
`Replicate` placements on a device mesh gives), their chunks stored in random order at random
offsets of in-memory sources. The reference is numpy slicing the whole tensor into the boxes.
"""

from __future__ import annotations

import contextlib
import itertools
from math import prod

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inspector import sharded
from inspector.errors import HeaderError
from inspector.sharded import Chunk, ShardedTensor, check_layout
from inspector.sources import BytesSource


@st.composite
def layouts(draw):  # type: ignore[no-untyped-def]
    shape = tuple(draw(st.lists(st.integers(1, 6), min_size=1, max_size=4)))
    cuts = [sorted(draw(st.sets(st.integers(1, n - 1), max_size=n - 1)) if n > 1 else set())
            for n in shape]
    bounds = [[0, *c, n] for c, n in zip(cuts, shape, strict=True)]
    boxes = [tuple(zip(*cell, strict=True)) for cell in itertools.product(
        *[list(itertools.pairwise(b)) for b in bounds])]
    order = draw(st.permutations(range(len(boxes))))
    itemsize = draw(st.sampled_from([1, 2, 4]))
    return shape, [boxes[i] for i in order], itemsize, draw(st.integers(0, 2**32 - 1))


def _build(shape, boxes, itemsize, seed):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(seed)
    whole = rng.integers(0, 256, size=(*shape, itemsize), dtype=np.uint8)
    chunks, located, store = [], [], bytearray()
    for lo, hi in boxes:
        part = whole[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))]
        store += bytes(int(rng.integers(0, 5)))  # a gap: chunks lie anywhere in their file
        located.append(len(store))
        store += part.tobytes()
        chunks.append(Chunk(tuple(lo), tuple(b - a for a, b in zip(lo, hi, strict=True)),
                            "rank.bin", located[-1], part.nbytes))
    src = BytesSource(bytes(store), "rank.bin")
    tensor = ShardedTensor("t::x", "x", shape, itemsize, chunks,
                           lambda i: (src, located[i]), files=["rank.bin"])
    return tensor, whole.tobytes()


@settings(max_examples=300, deadline=None)
@given(layout=layouts(), data=st.data(), window=st.sampled_from([8, 64, sharded.WINDOW]))
def test_assembled_bytes_are_the_logical_tensor_in_c_order(layout, data, window):
    with _window(window):  # a tiny one: interleaved layouts assemble in many slabs
        _check_assembly(layout, data)


@contextlib.contextmanager
def _window(size: int):  # type: ignore[no-untyped-def]
    saved, sharded.WINDOW = sharded.WINDOW, size
    try:
        yield
    finally:
        sharded.WINDOW = saved


def _check_assembly(layout, data):  # type: ignore[no-untyped-def]
    shape, boxes, itemsize, seed = layout
    tensor, expected = _build(shape, boxes, itemsize, seed)
    check_layout("t", "x", shape, tensor.chunks)
    assert tensor.size == len(expected)
    assert tensor.read(0, tensor.size) == expected
    assert b"".join(tensor.pieces()) == expected
    a = data.draw(st.integers(0, tensor.size))
    b = data.draw(st.integers(a, tensor.size))
    assert tensor.read(a, b - a) == expected[a:b]
    assert b"".join(tensor.pieces(a, b - a)) == expected[a:b]
    view = tensor.view(a, b - a)
    assert view is None or bytes(view) == expected[a:b]
    runs_only = all(_is_run_reference(lo, hi, shape) for lo, hi in boxes)
    assert tensor.in_place == runs_only


def _is_run_reference(lo, hi, shape):  # type: ignore[no-untyped-def]
    """A box is a contiguous run of the C-order tensor when its element indices are."""
    idx = np.arange(prod(shape)).reshape(shape)[tuple(slice(a, b) for a, b in zip(lo, hi,
                                                                                   strict=True))]
    flat = idx.reshape(-1)
    return bool((np.diff(flat) == 1).all())


def test_in_place_pieces_are_views_of_the_chunks_not_copies():
    tensor, _expected = _build((4, 3), [((2, 0), (4, 3)), ((0, 0), (2, 3))], 4, 7)
    pieces = list(tensor.pieces())
    assert len(pieces) == 2
    assert all(isinstance(p, memoryview) and p.readonly for p in pieces)
    assert tensor.view(0, 24) is not None
    assert tensor.view(0, 25) is None


def test_a_missing_chunk_is_refused_when_opened():
    chunks = [Chunk((0, 0), (2, 3), "a", 0, 24)]
    with pytest.raises(HeaderError, match="a chunk is missing or repeated") as info:
        check_layout("ckpt", "w", (4, 3), chunks)
    assert info.value.key == "w"


def test_a_chunk_outside_the_tensor_is_refused():
    with pytest.raises(HeaderError, match="outside"):
        check_layout("ckpt", "w", (4, 3), [Chunk((3, 0), (2, 3), "a", 0, 24),
                                           Chunk((0, 0), (2, 3), "a", 0, 24)])


def test_overlapping_chunks_are_refused_on_first_read():
    # Same element count as the tensor, but rows 1-2 twice and row 3 never.
    tensor, _ = _build((4, 3), [((0, 0), (3, 3)), ((1, 0), (2, 3))], 4, 1)
    check_layout("ckpt", "x", (4, 3), tensor.chunks)
    with pytest.raises(HeaderError, match="overlap") as info:
        tensor.read(0, tensor.size)
    assert info.value.key == "x"


def test_a_chunk_past_its_file_end_is_refused_before_any_slab_is_made():
    """A huge global shape whose chunks' bytes are not in the file: an error naming the chunk's
    file and the tensor, not a multi-terabyte allocation."""
    from inspector.errors import TruncatedFileError

    src = BytesSource(bytes(64), "rank.bin")
    shape = (2, 1 << 40)
    chunks = [Chunk((0, 0), (2, 1 << 39), "rank0.bin", 0, 64),
              Chunk((0, 1 << 39), (2, 1 << 39), "rank1.bin", 0, 64)]
    tensor = ShardedTensor("t::big", "big", shape, 4, chunks, lambda i: (src, 0),
                           files=["rank.bin"])
    check_layout("ckpt", "big", shape, chunks)
    with pytest.raises(TruncatedFileError, match="needs bytes") as info:
        next(tensor.pieces())
    assert info.value.key == "big"
