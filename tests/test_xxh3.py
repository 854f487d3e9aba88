"""The C++ XXH3 (every kernel) against the python `xxhash` package, bit for bit."""

from __future__ import annotations

import random

import numpy as np
import pytest
import xxhash

from inspector._native import core


def _available(kernel: str) -> bool:
    try:
        core.xxh3_128(b"", kernel=kernel)
    except ValueError:
        return False
    return True


KERNELS = ["auto", *[k for k in ("scalar", "sse2", "avx2", "avx512") if _available(k)]]
DATA = np.random.default_rng(3).integers(0, 256, 3 << 20, dtype=np.uint8).tobytes()


@pytest.mark.parametrize("kernel", KERNELS)
def test_every_length_up_to_2048(kernel: str) -> None:
    for n in range(2049):
        assert core.xxh3_128(DATA[:n], kernel=kernel) == xxhash.xxh3_128_digest(DATA[:n]), n


def test_xxh3_64_every_length_up_to_2048() -> None:
    for n in range(2049):
        assert core.xxh3_64(DATA[:n]) == xxhash.xxh3_64_intdigest(DATA[:n]), n


@pytest.mark.parametrize("kernel", KERNELS)
def test_stripe_and_block_edges(kernel: str) -> None:
    # 64-byte stripes, 1024-byte blocks: the last block may be full, and the last stripe overlaps
    lengths = {d + k * m for m in (64, 1024) for k in range(1, 40) for d in (-1, 0, 1)}
    lengths |= {239, 240, 241, (1 << 20) - 1, 1 << 20, (1 << 20) + 1}
    for n in sorted(lengths):
        assert core.xxh3_128(DATA[:n], kernel=kernel) == xxhash.xxh3_128_digest(DATA[:n]), n
        assert core.xxh3_64(DATA[:n]) == xxhash.xxh3_64_intdigest(DATA[:n]), n


@pytest.mark.parametrize("kernel", KERNELS)
def test_random_big_lengths_and_offsets(kernel: str) -> None:
    rnd = random.Random(7)
    view = memoryview(DATA)
    for _ in range(12):
        start = rnd.randrange(0, 64)  # unaligned starts
        n = rnd.randrange(2049, len(DATA) - 64)
        piece = view[start : start + n]
        assert core.xxh3_128(piece, kernel=kernel) == xxhash.xxh3_128_digest(piece), (start, n)


def test_accepts_buffers_of_any_kind() -> None:
    arr = np.arange(1000, dtype=np.float32)
    expected = xxhash.xxh3_128_digest(arr.tobytes())
    assert core.xxh3_128(arr) == expected
    assert core.xxh3_128(bytearray(arr.tobytes())) == expected
    assert core.xxh3_128(memoryview(arr.tobytes())) == expected


def test_rejects_non_contiguous_buffers_and_bad_kernels() -> None:
    with pytest.raises((BufferError, ValueError), match="contiguous"):
        core.xxh3_128(np.arange(100, dtype=np.uint8)[::2])
    with pytest.raises(TypeError):
        core.xxh3_128("text")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown xxh3 kernel"):
        core.xxh3_128(b"", kernel="neon")


def test_reports_the_kernel_in_use() -> None:
    assert core.xxh3_kernel in ("scalar", "sse2", "avx2", "avx512")
