"""copy_cast / copy_region against numpy and torch: strided views, transposes, slices, pads,
casts, byte order, in-place patching of a writable mmap, and the CRC-32 of what was written."""

from __future__ import annotations

import mmap
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from subproc import CTRL_C_RAISES, python

from inspector import _core as core


def elem_strides(a: np.ndarray) -> tuple[int, ...]:
    return tuple(s // a.itemsize for s in a.strides)


def base_offset(a: np.ndarray, base: np.ndarray) -> int:
    return (a.__array_interface__["data"][0] - base.__array_interface__["data"][0]) // a.itemsize


def copy_view(
    view: np.ndarray, base: np.ndarray, dst_dtype: str, dst_np: str, **kw
) -> tuple[np.ndarray, int]:
    """copy_cast of a numpy view of `base` (strides and offset in elements of base)."""
    out = np.empty(view.shape, dtype=dst_np)
    crc = core.copy_cast(
        base,
        base.dtype.name,
        view.shape,
        elem_strides(view),
        base_offset(view, base),
        out,
        0,
        dst_dtype,
        **kw,
    )
    return out, crc


@pytest.mark.parametrize("threads", [1, 2])
def test_transposed_sliced_views_equal_numpy(threads: int) -> None:
    base = np.random.default_rng(0).standard_normal((40, 30, 20)).astype(np.float32)
    views = [
        base,
        base.transpose(2, 0, 1),
        base[5:30:3, ::-2, 4],
        base[::-1, 7, ::5],
        base[3:4, 2:3, 1:2],
        base[:, :, 0].T,
    ]
    for v in views:
        out, crc = copy_view(v, base, "float32", "<f4", threads=threads)
        np.testing.assert_array_equal(out, np.ascontiguousarray(v))
        assert crc == zlib.crc32(np.ascontiguousarray(v).tobytes())


@pytest.mark.parametrize(
    ("dst", "tdt"),
    [
        ("bfloat16", torch.bfloat16),
        ("float16", torch.float16),
        ("float8_e4m3fn", torch.float8_e4m3fn),
        ("float64", torch.float64),
    ],
)
def test_cast_of_a_transpose_equals_torch(dst: str, tdt: torch.dtype) -> None:
    t = torch.randn(64, 48) * 100
    t[0, :4] = torch.tensor([float("nan"), float("inf"), -0.0, 1e-30])
    src = t.numpy()
    view = t.t()
    ref = view.contiguous().to(tdt).view(torch.uint8).numpy().tobytes()
    out = bytearray(len(ref))
    crc = core.copy_cast(src, "float32", tuple(view.shape), tuple(view.stride()), 0, out, 0, dst)
    assert bytes(out) == ref
    assert crc == zlib.crc32(ref)


def test_big_endian_source() -> None:
    a = np.random.default_rng(1).standard_normal(1000).astype(">f4")
    out, _crc = copy_view(a, a, "float32", "<f4", src_byteswap=True)
    np.testing.assert_array_equal(out, a.astype("<f4"))
    raw = a.view(np.uint8).reshape(-1, 4)
    out2 = np.empty(1000, "<f2")
    core.copy_cast(raw, "float32", (1000,), (1,), 0, out2, 0, "float16", src_byteswap=True)
    np.testing.assert_array_equal(out2, a.astype("<f2"))


def test_crc_across_chunks_and_threads_is_stable() -> None:
    a = np.random.default_rng(2).standard_normal(3_000_001).astype(np.float32)
    ref = torch.from_numpy(a).to(torch.bfloat16).view(torch.uint8).numpy().tobytes()
    for threads in (1, 2, 3):
        out = bytearray(len(ref))
        crc = core.copy_cast(a, "float32", a.shape, (1,), 0, out, 0, "bfloat16", threads=threads)
        assert bytes(out) == ref
        assert crc == zlib.crc32(ref)


def test_scalar_and_empty() -> None:
    a = np.array([1.5, 2.5, 3.5], np.float32)
    out = bytearray(2)
    crc = core.copy_cast(a, "float32", (), (), 2, out, 0, "float16")
    assert bytes(out) == np.float16(3.5).tobytes()
    assert crc == zlib.crc32(bytes(out))
    assert core.copy_cast(a, "float32", (0, 5), (5, 1), 0, bytearray(), 0, "float16") == 0


def test_patch_in_place_into_a_writable_mmap(tmp_path: Path) -> None:
    path = tmp_path / "out.bin"
    path.write_bytes(b"H" * 100 + bytes(4 * 50) + b"T" * 30)
    src = np.arange(50, dtype=np.float32)[::-1]
    with open(path, "r+b") as f, mmap.mmap(f.fileno(), 0) as mm:
        crc = core.copy_cast(
            np.arange(50, dtype=np.float32), "float32", (50,), (-1,), 49, mm, 100, "float32"
        )
    data = path.read_bytes()
    assert data[:100] == b"H" * 100
    assert data[-30:] == b"T" * 30
    assert data[100:300] == src.tobytes()
    assert crc == zlib.crc32(src.tobytes())


def test_region_slices_and_pads_like_numpy() -> None:
    src = np.random.default_rng(3).standard_normal((10, 7)).astype(np.float32)
    # vocabulary grows 10 -> 13 rows: copy all rows, pad with -1
    out = np.empty((13, 7), np.float32)
    crc = core.copy_region(
        src,
        "float32",
        (10, 7),
        (7, 1),
        0,
        out,
        0,
        "float32",
        (13, 7),
        (0, 0),
        (0, 0),
        (10, 7),
        fill=-1.0,
    )
    ref = np.full((13, 7), -1.0, np.float32)
    ref[:10] = src
    np.testing.assert_array_equal(out, ref)
    assert crc == zlib.crc32(ref.tobytes())
    # shrink and shift: src[2:8, 1:5] at dst[1:7, 3:7] of a (8, 9) zero tensor, as bfloat16
    out2 = bytearray(8 * 9 * 2)
    crc2 = core.copy_region(
        src, "float32", (10, 7), (7, 1), 0, out2, 0, "bfloat16", (8, 9), (2, 1), (1, 3), (6, 4)
    )
    ref2 = torch.zeros(8, 9, dtype=torch.bfloat16)
    ref2[1:7, 3:7] = torch.from_numpy(src[2:8, 1:5]).to(torch.bfloat16)
    assert bytes(out2) == ref2.view(torch.uint8).numpy().tobytes()
    assert crc2 == zlib.crc32(bytes(out2))


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_region_property(data: st.DataObject) -> None:
    rank = data.draw(st.integers(1, 3))
    shape = tuple(data.draw(st.integers(1, 6)) for _ in range(rank))
    src = np.arange(int(np.prod(shape)), dtype=np.int32).reshape(shape)
    perm = data.draw(st.permutations(range(rank)))
    view = src.transpose(perm)
    dst_shape, s0, d0, cnt = [], [], [], []
    for n in view.shape:
        c = data.draw(st.integers(0, n))
        s0.append(data.draw(st.integers(0, n - c)))
        d = data.draw(st.integers(c, n + 3))
        dst_shape.append(d)
        d0.append(data.draw(st.integers(0, d - c)))
        cnt.append(c)
    fill = data.draw(st.integers(-5, 5))
    ref = np.full(dst_shape, fill, np.int64)
    if all(cnt):
        dst_sl = tuple(slice(a, a + c) for a, c in zip(d0, cnt, strict=True))
        src_sl = tuple(slice(a, a + c) for a, c in zip(s0, cnt, strict=True))
        ref[dst_sl] = view[src_sl]
    out = np.empty(dst_shape, np.int64)
    crc = core.copy_region(
        src,
        "int32",
        view.shape,
        elem_strides(view),
        0,
        out,
        0,
        "int64",
        tuple(dst_shape),
        tuple(s0),
        tuple(d0),
        tuple(cnt),
        fill=float(fill),
    )
    np.testing.assert_array_equal(out, ref)
    assert crc == zlib.crc32(ref.tobytes())


def test_bounds_are_checked_before_any_write() -> None:
    a = np.zeros(10, np.float32)
    out = bytearray(40)
    with pytest.raises(ValueError, match=r"source: view spans bytes \[0, 44\) of a 40-byte buffer"):
        core.copy_cast(a, "float32", (11,), (1,), 0, out, 0, "float32")
    with pytest.raises(ValueError, match=r"view spans bytes \[8, 44\)"):
        core.copy_cast(a, "float32", (5,), (2,), 2, out, 0, "float32")
    with pytest.raises(ValueError, match="before the buffer start"):
        core.copy_cast(a, "float32", (2,), (-1,), 0, out, 0, "float32")
    with pytest.raises(ValueError, match="do not fit"):
        core.copy_cast(a, "float32", (10,), (1,), 0, out, 4, "float32")
    with pytest.raises(ValueError, match="do not fit"):
        core.copy_cast(a, "float32", (10,), (1,), 0, out, 2**62, "float32")
    with pytest.raises(ValueError, match="overflows"):
        core.copy_cast(a, "float32", (2**40, 2**40), (1, 1), 0, out, 0, "float32")
    with pytest.raises(ValueError, match="negative"):
        core.copy_cast(a, "float32", (-1,), (1,), 0, out, 0, "float32")
    with pytest.raises(ValueError, match="writable"):
        core.copy_cast(a, "float32", (10,), (1,), 0, bytes(40), 0, "float32")
    with pytest.raises(ValueError, match="exceeds size"):
        core.copy_region(a, "float32", (10,), (1,), 0, out, 0, "float32", (10,), (5,), (0,), (6,))
    with pytest.raises(ValueError, match="not an integer"):
        core.copy_region(
            a.astype(np.int32),
            "int32",
            (10,),
            (1,),
            0,
            out,
            0,
            "int32",
            (10,),
            (0,),
            (0,),
            (5,),
            fill=0.5,
        )
    assert out == bytearray(40)


def bf16_reference(bits: np.ndarray) -> np.ndarray:
    """Round to nearest even on the bit pattern; every NaN becomes 0xFFFF (as torch's .to())."""
    u = bits.astype(np.uint64)
    r = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    return np.where(np.isnan(bits.view(np.float32)), np.uint16(0xFFFF), r)


def f16_reference(bits: np.ndarray) -> np.ndarray:
    """numpy's float16 cast (round to nearest even); a NaN becomes sign | 0x7E00."""
    f = bits.view(np.float32)
    with np.errstate(over="ignore", invalid="ignore"):
        r = f.astype(np.float16).view(np.uint16)
    nan = ((bits >> 16) & 0x8000).astype(np.uint16) | np.uint16(0x7E00)
    return np.where(np.isnan(f), nan, r)


@pytest.mark.parametrize(
    ("dst", "reference"), [("bfloat16", bf16_reference), ("float16", f16_reference)]
)
def test_float32_to_16_bit_on_every_kind_of_bit_pattern(dst: str, reference) -> None:
    """Random bit patterns (NaN payloads, subnormals, overflow) and ties, contiguous (the SIMD
    kernel's whole vectors and its scalar tail) and strided (decoded first)."""
    rng = np.random.default_rng(7)
    bits = rng.integers(0, 2**32, 100_003, dtype=np.uint64).astype(np.uint32)
    bits[:4096] = (bits[:4096] & 0xFFFF0000) | 0x8000  # bfloat16 ties
    bits[4096:8192] = (bits[4096:8192] & 0xFFFFE000) | 0x1000  # float16 ties
    for src, shape, strides in [(bits, (bits.size,), (1,)), (bits, (bits.size // 3,), (3,))]:
        want = reference(bits[:: strides[0]][: shape[0]])
        out = np.empty(shape[0], np.uint16)
        crc = core.copy_cast(src.view(np.float32), "float32", shape, strides, 0, out, 0, dst)
        np.testing.assert_array_equal(out, want)
        assert crc == zlib.crc32(want.tobytes())
    for n in range(1, 40):  # every tail length
        out = np.empty(n, np.uint16)
        core.copy_cast(bits.view(np.float32), "float32", (n,), (1,), 5, out, 0, dst)
        np.testing.assert_array_equal(out, reference(bits[5 : 5 + n]))


# ---- overlap, overflow, progress, cancel -------------------------------------------------------


def test_overlapping_source_and_destination_are_rejected() -> None:
    buf = np.zeros(64, np.uint8)
    with pytest.raises(ValueError, match="overlap"):  # the same bytes
        core.copy_cast(buf, "uint8", (64,), (1,), 0, buf, 0, "uint8")
    mv = memoryview(buf)
    with pytest.raises(ValueError, match="overlap"):  # partial, through two memoryview slices
        core.copy_cast(mv[:40], "uint8", (40,), (1,), 0, mv[20:60], 0, "uint8")
    with pytest.raises(ValueError, match="overlap"):  # through dst_offset_bytes, a cast, a region
        core.copy_region(buf, "uint8", (8,), (1,), 8, buf, 12, "int16", (8,), (0,), (0,), (8,))
    with pytest.raises(ValueError, match="overlap"):  # a strided source spans the written bytes
        core.copy_cast(buf, "uint8", (2,), (40,), 0, buf, 10, "uint8")
    assert buf.tolist() == [0] * 64  # nothing was written
    buf[:32] = np.arange(32, dtype=np.uint8)
    core.copy_cast(buf, "uint8", (32,), (1,), 0, buf, 32, "uint8")  # adjacent is fine
    assert buf[32:].tolist() == list(range(32))
    core.copy_cast(buf, "uint8", (0,), (1,), 0, buf, 0, "uint8")  # nothing read, nothing written


@pytest.mark.parametrize(
    ("shape", "strides", "offset"),
    [
        ((3, 4), (1 << 62, 1), 0),
        ((2, 2), (1, 1), (1 << 63) - 1),
        ((3,), (-(1 << 63),), 0),
        ((1 << 31, 1 << 31), (1, 1), 0),
    ],
)
def test_overflowing_source_views_are_rejected(
    shape: tuple[int, ...], strides: tuple[int, ...], offset: int
) -> None:
    src, out = np.zeros(16, np.float32), bytearray(64)
    with pytest.raises(ValueError, match=r"source: .*overflow"):
        core.copy_cast(src, "float32", shape, strides, offset, out, 0, "float32")
    region = ((1,) * len(shape), (0,) * len(shape), (0,) * len(shape), (1,) * len(shape))
    with pytest.raises(ValueError, match=r"source: .*overflow"):
        core.copy_region(src, "float32", shape, strides, offset, out, 0, "float32", *region)
    assert out == bytearray(64)


class Cancelled(Exception):
    pass


# float32 -> float8 from a stride-0 source: ~128 M elements of per-element encoding (most of a
# second), into an untouched 128 MiB destination.
BIG = (128, 1 << 20)


def _big_cast(threads: int, progress: object) -> int:
    row = np.linspace(-3, 3, BIG[1], dtype=np.float32)
    out = np.empty(BIG[0] * BIG[1], np.uint8)
    return core.copy_cast(
        row, "float32", BIG, (0, 1), 0, out, 0, "float8_e4m3fn", threads=threads, progress=progress
    )


def test_copy_progress_ends_at_total() -> None:
    src = np.arange(3 << 20, dtype=np.float32)
    out = bytearray(src.nbytes)
    calls: list[tuple[int, int]] = []
    crc = core.copy_cast(
        src,
        "float32",
        (src.size,),
        (1,),
        0,
        out,
        0,
        "float32",
        threads=2,
        progress=lambda d, t: calls.append((d, t)),
    )
    assert crc == zlib.crc32(src.tobytes())
    assert calls[-1] == (src.nbytes, src.nbytes)
    assert all(t == src.nbytes and 0 <= d <= t for d, t in calls)


@pytest.mark.parametrize("threads", [1, 2])
def test_raising_progress_cancels_a_long_copy(threads: int) -> None:
    seen: list[tuple[int, int]] = []

    def cancel(done: int, total: int) -> None:
        seen.append((done, total))
        raise Cancelled("stop")

    with pytest.raises(Cancelled, match="stop"):
        _big_cast(threads, cancel)
    assert len(seen) == 1
    assert seen[0][0] < seen[0][1] == BIG[0] * BIG[1]


def test_ctrl_c_stops_a_long_copy_region() -> None:
    """In a fresh interpreter, Ctrl-C stops a 4 GiB region copy (stride-0 source) into an anonymous
    mmap with KeyboardInterrupt, before its end."""
    code = CTRL_C_RAISES + (
        "import mmap, os, signal, threading, numpy as np\n"
        "from inspector import _core as core\n"
        "row = np.ones(1 << 20, np.float32)\n"
        "out = mmap.mmap(-1, 4 << 30)\n"
        "seen = []\n"
        "threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT)).start()\n"
        "try:\n"
        "    shape = (4096, 1 << 20)\n"
        "    core.copy_region(row, 'float32', shape, (0, 1), 0, out, 0, 'float8_e4m3fn', shape,\n"
        "                     (0, 0), (0, 0), shape, threads=2,\n"
        "                     progress=lambda d, t: seen.append(d))\n"
        "except KeyboardInterrupt:\n"
        "    raise SystemExit(7 if max(seen, default=0) < (4 << 30) else 8)\n"
    )
    proc = python("-c", code, timeout=60)
    assert proc.returncode == 7, proc.stderr
