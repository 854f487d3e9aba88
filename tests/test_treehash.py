"""The C++ ckh1 tree hash against the Python reference and the frozen vectors; streaming,
threads, strided gathers, bad input and cancellation."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xxhash
from hypothesis import given, settings
from hypothesis import strategies as st

from inspector import dtypes
from inspector import hashspec_reference as ref
from inspector._native import core
from inspector.hashing import Cancelled, checkpoint_digest

VECTORS_DIR = Path(__file__).parent / "vectors"
CHUNK = ref.CHUNK


def _load_generator() -> Any:
    spec = importlib.util.spec_from_file_location("make_vectors", VECTORS_DIR / "make_vectors.py")
    assert spec is not None
    assert spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


gen = _load_generator()
VECTORS = json.loads((VECTORS_DIR / "hash_vectors.json").read_text(encoding="utf-8"))
RNG = np.random.default_rng(11)


def job(
    buf: Any,
    dtype: str,
    shape: tuple[int, ...],
    strides: tuple[int, ...] | None = None,
    offset: int = 0,
    swap: bool = False,
) -> tuple[Any, ...]:
    strides = tuple(gen.c_strides(shape)) if strides is None else strides
    return (buf, dtype, dtypes.get(dtype).itemsize, shape, strides, offset, swap)


def vector_job(entry: dict[str, Any]) -> tuple[Any, ...]:
    storage = gen.pattern(entry["storage_nbytes"], entry["seed"])
    return job(
        storage,
        entry["dtype"],
        tuple(entry["shape"]),
        tuple(entry["strides"]),
        entry["offset"],
        entry["byteorder"] == "big",
    )


# ---- frozen vectors ----------------------------------------------------------------------------


def test_vectors_file_is_what_the_generator_makes() -> None:
    assert gen.build() == VECTORS


def test_vectors_xxh3_match_core_and_xxhash() -> None:
    for v in VECTORS["xxh3_128"]:
        data = gen.pattern(v["length"])
        assert core.xxh3_128(data).hex() == v["digest"] == xxhash.xxh3_128_hexdigest(data)


def test_vectors_tensors_match_core_and_reference() -> None:
    entries = VECTORS["tensors"]
    got = core.hash_tensors([vector_job(e) for e in entries], threads=2)
    for e, digest in zip(entries, got, strict=True):
        assert digest.hex() == e["digest"], e["name"]
        assert ref.tensor_digest(e["dtype"], e["shape"], gen.logical_bytes(e)).hex() == e["digest"]


def test_vectors_cover_every_dtype() -> None:
    covered = {e["dtype"] for e in VECTORS["tensors"]}
    assert set(dtypes.DTYPES) <= covered


def test_vectors_checkpoint_digest() -> None:
    pairs = {k: bytes.fromhex(v) for k, v in VECTORS["checkpoint"]["tensors"].items()}
    expected = VECTORS["checkpoint"]["digest"]
    assert ref.checkpoint_digest(pairs).hex() == expected
    assert checkpoint_digest(pairs).raw.hex() == expected


# ---- chunk edges, single chunks, empty and scalar ----------------------------------------------


@pytest.mark.parametrize("n", [0, 1, 240, 241, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK + 1])
def test_chunk_edges_match_reference(n: int) -> None:
    data = RNG.integers(0, 256, n, dtype=np.uint8).tobytes()
    (got,) = core.hash_tensors([job(data, "uint8", (n,))])
    assert got == ref.tensor_digest("uint8", (n,), data)


def test_leaf_of_a_single_chunk_is_plain_xxh3() -> None:
    data = RNG.integers(0, 256, CHUNK, dtype=np.uint8).tobytes()
    assert ref.leaves(data) == [xxhash.xxh3_128_digest(data)] == [core.xxh3_128(data)]
    expected = xxhash.xxh3_128_digest(ref.header("uint8", (CHUNK,), CHUNK) + core.xxh3_128(data))
    assert core.hash_tensors([job(data, "uint8", (CHUNK,))]) == [expected]


def test_scalar_and_empty_tensors() -> None:
    scalar = np.float32(2.5).tobytes()
    got = core.hash_tensors(
        [job(scalar, "float32", ()), job(b"", "float32", (0, 3)), job(b"", "float32", (0,))]
    )
    assert got[0] == ref.tensor_digest("float32", (), scalar)
    assert got[1] == ref.tensor_digest("float32", (0, 3), b"")
    assert len(set(got)) == 3  # the shape is part of the digest


def test_dtype_and_shape_are_part_of_the_digest() -> None:
    data = bytes(range(24))
    got = core.hash_tensors(
        [
            job(data, "float32", (6,)),
            job(data, "int32", (6,)),
            job(data, "float32", (2, 3)),
            job(data, "float16", (12,)),
        ]
    )
    assert len(set(got)) == 4


# ---- strided views (gather) ----------------------------------------------------------------------


def test_strided_views_hash_their_logical_contents() -> None:
    base = RNG.standard_normal((64, 48)).astype(np.float32)
    views = [base.T, base[3:40:3, 5:], base[:, ::-4], base[10:11, 7:8], base[::-1, ::2]]
    jobs = []
    for v in views:
        offset_bytes = v.__array_interface__["data"][0] - base.__array_interface__["data"][0]
        strides = tuple(s // 4 for s in v.strides)
        jobs.append(job(base, "float32", v.shape, strides, offset_bytes // 4))
    got = core.hash_tensors(jobs, threads=2)
    for v, digest in zip(views, got, strict=True):
        assert digest == ref.tensor_digest("float32", v.shape, np.ascontiguousarray(v).tobytes())


@settings(max_examples=60, deadline=None)
@given(
    dtype=st.sampled_from(["uint8", "int16", "float32", "float64", "complex128"]),
    shape=st.lists(st.integers(0, 7), min_size=0, max_size=4),
    data=st.data(),
)
def test_random_views_match_numpy(dtype: str, shape: list[int], data: st.DataObject) -> None:
    itemsize = dtypes.get(dtype).itemsize
    strides = [data.draw(st.integers(-5, 9)) for _ in shape]
    lo = sum((n - 1) * s for n, s in zip(shape, strides, strict=True) if s < 0 and n > 0)
    hi = sum((n - 1) * s for n, s in zip(shape, strides, strict=True) if s > 0 and n > 0)
    offset = -lo + data.draw(st.integers(0, 3))
    storage = RNG.integers(0, 256, (offset + hi + 1) * itemsize, dtype=np.uint8)
    swap = data.draw(st.booleans())
    items = storage.view(np.dtype((np.void, itemsize)))
    view = np.lib.stride_tricks.as_strided(
        items[offset:], shape=tuple(shape), strides=tuple(s * itemsize for s in strides)
    )
    logical = np.ascontiguousarray(view).view(np.uint8).reshape(-1)
    if swap:
        unit = gen.swap_unit(dtype)
        logical = logical.reshape(-1, unit)[:, ::-1].reshape(-1)
    (got,) = core.hash_tensors([job(storage, dtype, tuple(shape), tuple(strides), offset, swap)])
    assert got == ref.tensor_digest(dtype, shape, logical.tobytes())


def test_big_endian_storage_matches_little_endian() -> None:
    a = RNG.standard_normal((5, 7)).astype("<f8")
    c = (RNG.standard_normal(9) + 1j * RNG.standard_normal(9)).astype("<c8")
    got = core.hash_tensors(
        [
            job(a, "float64", a.shape),
            job(a.astype(">f8"), "float64", a.shape, swap=True),
            job(c, "complex64", c.shape),
            job(c.astype(">c8"), "complex64", c.shape, swap=True),
        ]
    )
    assert got[0] == got[1]
    assert got[2] == got[3]


# ---- one-shot == streamed == threads -----------------------------------------------------------


def test_one_shot_streamed_and_threads_agree() -> None:
    n = 2 * CHUNK + 12345
    data = RNG.integers(0, 256, n, dtype=np.uint8).tobytes()
    shape = (n // 4,)
    expected = ref.tensor_digest("float32", shape, data[: shape[0] * 4])
    buf = data[: shape[0] * 4]
    assert core.hash_tensors([job(buf, "float32", shape)], threads=1) == [expected]
    assert core.hash_tensors([job(buf, "float32", shape)], threads=2) == [expected]
    rnd = np.random.default_rng(5)
    for pieces in ([len(buf)], [1, 2, CHUNK - 3, CHUNK, 7], list(rnd.integers(1, 300000, 40))):
        hasher = core.TreeHasher("float32", shape, 4)
        pos = 0
        for size in pieces:
            hasher.update(buf[pos : pos + int(size)])
            pos += int(size)
        hasher.update(buf[pos:])
        assert hasher.finish() == expected


def test_streamed_byte_by_byte_on_a_small_tensor() -> None:
    data = bytes(range(200)) * 3
    hasher = core.TreeHasher("int16", (20, 15), 2)
    for i in range(len(data)):
        hasher.update(data[i : i + 1])
    assert hasher.finish() == ref.tensor_digest("int16", (20, 15), data)


def test_streamed_length_errors() -> None:
    hasher = core.TreeHasher("float32", (4,), 4)
    with pytest.raises(ValueError, match="17 bytes fed to a tensor of 16"):
        hasher.update(bytes(17))
    hasher.update(bytes(8))
    with pytest.raises(ValueError, match="8 bytes fed to a tensor of 16"):
        hasher.finish()


def test_many_tensors_on_many_threads_keep_their_order() -> None:
    arrays = [RNG.integers(0, 256, int(n), dtype=np.uint8) for n in RNG.integers(0, 3 * CHUNK, 25)]
    jobs = [job(a, "uint8", a.shape) for a in arrays]
    expected = [ref.tensor_digest("uint8", a.shape, a.tobytes()) for a in arrays]
    for threads in (1, 2, 5):
        assert core.hash_tensors(jobs, threads=threads) == expected


# ---- bad input: errors, never a crash ------------------------------------------------------------

BAD_JOBS = [
    (job(bytes(48), "float32", (3, 4), offset=1), "job 0: view spans bytes"),
    (job(bytes(48), "float32", (3, 4), (4, 2)), "view spans bytes"),
    (job(bytes(48), "float32", (3, 4), (-4, 1)), "before the buffer start"),
    (job(bytes(48), "float32", (3, 4), offset=-1), "storage offset -1 is negative"),
    (job(bytes(48), "float32", (3, -4)), "dimension 1 is negative"),
    (job(bytes(48), "float32", (3, 4), (4,)), "strides have 1"),
    (job(bytes(48), "float32", (1 << 40, 1 << 40)), "overflow"),
    (job(bytes(48), "float32", (3, 4), (1 << 62, 1)), "overflow"),
    (job(bytes(48), "float32", (2, 2), offset=(1 << 63) - 1), "overflow"),
    (job(bytes(48), "float32", (2,), offset=(1 << 62)), "view spans bytes"),
    ((bytes(48), "float32", 3, (4,), (1,), 0, False), "itemsize 3 does not divide"),
    ((bytes(48), "float32", 0, (4,), (1,), 0, False), "itemsize must be positive"),
    ((bytes(48), "", 4, (4,), (1,), 0, False), "dtype name is empty"),
    ((bytes(48), "float32", 4, [4], (1,), 0, False), "shape and strides must be tuples"),
    ((bytes(48), "float32", 4, (4.5,), (1,), 0, False), "shape must be an integer"),
    ((bytes(48), "float32", 4, (4,)), "expected \\(buffer"),
]


@pytest.mark.parametrize(("bad", "message"), BAD_JOBS)
def test_bad_jobs_raise_value_error(bad: tuple[Any, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        core.hash_tensors([bad])


def test_bad_job_message_names_its_index() -> None:
    good = job(bytes(16), "float32", (4,))
    with pytest.raises(ValueError, match=r"^job 2: "):
        core.hash_tensors([good, good, job(bytes(8), "float32", (4,))])


def test_bad_buffers_and_arguments() -> None:
    with pytest.raises((BufferError, ValueError), match="contiguous"):
        core.hash_tensors([job(np.zeros(16, np.uint8)[::2], "uint8", (8,))])
    with pytest.raises(TypeError):
        core.hash_tensors([job(None, "uint8", (0,))])
    with pytest.raises(ValueError, match="threads"):
        core.hash_tensors([], threads=-1)
    assert core.hash_tensors([]) == []


# ---- progress and cancellation -----------------------------------------------------------------


def _huge_job() -> tuple[Any, ...]:
    """16 GiB of logical bytes from one 1 MiB buffer (stride 0): minutes of work, no memory."""
    row = RNG.integers(0, 256, CHUNK, dtype=np.uint8)
    return job(row, "uint8", (16384, CHUNK), (0, 1))


def test_progress_reports_and_ends_at_total() -> None:
    data = bytes(3 * CHUNK)
    calls: list[tuple[int, int]] = []
    core.hash_tensors(
        [job(data, "uint8", (len(data),))], progress=lambda d, t: calls.append((d, t))
    )
    assert calls
    assert calls[-1] == (len(data), len(data))
    assert all(t == len(data) and 0 <= d <= t for d, t in calls)


def test_progress_exception_cancels_the_work() -> None:
    seen: list[tuple[int, int]] = []

    def cancel(done: int, total: int) -> None:
        seen.append((done, total))
        raise Cancelled("user pressed cancel")

    with pytest.raises(Cancelled, match="user pressed cancel"):
        core.hash_tensors([_huge_job()], threads=2, progress=cancel)
    assert len(seen) == 1  # no further report after the cancel: the work stopped there
    assert seen[0][0] < seen[0][1] == 16384 * CHUNK


def test_ctrl_c_stops_the_work(ctrl_c_raises: None) -> None:
    seen: list[int] = []
    timer = threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            core.hash_tensors([_huge_job()], threads=2, progress=lambda d, t: seen.append(d))
    finally:
        timer.cancel()
    assert max(seen, default=0) < 16384 * CHUNK  # interrupted before the end, not after it
