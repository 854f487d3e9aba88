"""CRC-32 of the C++ core against zlib.crc32, both the fast and the portable path."""

from __future__ import annotations

import zlib

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from inspector import _core as core

LENGTHS = [0, 1, 7, 8, 9, 15, 16, 17, 63, 64, 65, 79, 80, 127, 128, 129, 1000, 4096, 65537, 1 << 20]
CRCS = [core.crc32, core._crc32_portable]


@pytest.mark.parametrize("fn", CRCS)
@pytest.mark.parametrize("n", LENGTHS)
def test_equals_zlib(fn, n: int) -> None:
    data = np.random.default_rng(n).integers(0, 256, n, dtype=np.uint8).tobytes()
    for init in (0, 1, 0xFFFFFFFF, 0xDEADBEEF):
        assert fn(data, init) == zlib.crc32(data, init)


@pytest.mark.parametrize("fn", CRCS)
def test_known_vector_and_running_value(fn) -> None:
    assert fn(b"123456789") == 0xCBF43926
    data = bytes(range(256)) * 40
    running = 0
    for i in range(0, len(data), 333):
        running = fn(data[i : i + 333], running)
    assert running == zlib.crc32(data)


@given(st.binary(max_size=600), st.integers(0, 2**32 - 1))
def test_any_bytes(data: bytes, init: int) -> None:
    assert core.crc32(data, init) == zlib.crc32(data, init)
    assert core._crc32_portable(data, init) == zlib.crc32(data, init)


@given(st.binary(max_size=300), st.binary(max_size=300))
def test_combine(a: bytes, b: bytes) -> None:
    assert core.crc32_combine(zlib.crc32(a), zlib.crc32(b), len(b)) == zlib.crc32(a + b)


def test_accepts_buffers_and_rejects_others() -> None:
    arr = np.arange(1000, dtype=np.float32)
    assert core.crc32(arr) == zlib.crc32(arr.tobytes())
    assert core.crc32(memoryview(arr.tobytes())[3:500]) == zlib.crc32(arr.tobytes()[3:500])
    with pytest.raises(TypeError):
        core.crc32("text")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="C-contiguous"):
        core.crc32(arr[::2])
