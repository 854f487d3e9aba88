"""inspector.hashing: the same tensor gets the same digest from every source (numpy, torch,
.pt, legacy .pt, safetensors, strided views); errors name the tensor; progress and cancel."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from subproc import python

import inspector
from inspector import hashspec_reference as ref
from inspector.errors import CheckpointError, DtypeError, TensorDataError
from inspector.hashing import (
    Cancelled,
    Digest,
    TensorHasher,
    checkpoint_digest,
    digest_array,
    hash_tensors,
)
from inspector.model import ByteSource, Checkpoint, Storage, TensorInfo

RNG = np.random.default_rng(21)


def torch_state() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    base = torch.randn(96, 80, generator=g)
    return {
        "enc.weight": torch.randn(300, 1000, generator=g),  # > 1 MiB: several chunks
        "enc.bias": torch.randn(80, generator=g).to(torch.bfloat16),
        "dec.proj": base.t(),  # a transposed view
        "dec.slice": base[10:20, 5:],  # a slice with a storage offset
        "dec.steps": base[::3, ::2],  # step slices
        "counts": torch.arange(17, dtype=torch.int64),
        "mask": torch.rand(5, 6, generator=g) > 0.5,
        "scale": torch.tensor(3.25, dtype=torch.float16),  # 0-d
        "empty": torch.zeros(0, 4),
    }


def reference_digests(state: dict[str, torch.Tensor]) -> dict[str, Digest]:
    out = {}
    for name, t in state.items():
        data = t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
        dtype = str(t.dtype).removeprefix("torch.")
        out[name] = Digest(ref.tensor_digest(dtype, tuple(t.shape), data))
    return out


def contiguous(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.contiguous().clone() for k, v in state.items()}


# ---- Digest ------------------------------------------------------------------------------------


def test_digest_prints_parses_and_checks_length() -> None:
    d = Digest(bytes(range(16)))
    assert str(d) == d.hex() == "ckh1:000102030405060708090a0b0c0d0e0f"
    assert Digest.parse(str(d)) == d
    assert bytes(d) == bytes(range(16))
    with pytest.raises(ValueError, match="16 bytes"):
        Digest(b"short")
    with pytest.raises(ValueError, match="not a digest"):
        Digest.parse("ckh1:xyz")
    with pytest.raises(ValueError, match="version 'ckh9'"):
        Digest.parse("ckh9:" + "0" * 32)


# ---- one digest whatever the source ------------------------------------------------------------


def test_in_memory_torch_matches_reference_and_ignores_layout() -> None:
    state = torch_state()
    expected = reference_digests(state)
    assert hash_tensors(inspector.open(state)) == expected
    assert hash_tensors(inspector.open(contiguous(state)), threads=1) == expected


def test_numpy_and_torch_agree() -> None:
    arrays = {
        "w": RNG.standard_normal((33, 65)).astype(np.float32),
        "i": RNG.integers(-5, 5, (4, 4)).astype(np.int16),
        "z": np.zeros((0,), np.float64),
    }
    from_numpy = hash_tensors(inspector.open(arrays))
    from_torch = hash_tensors(inspector.open({k: torch.from_numpy(v) for k, v in arrays.items()}))
    assert from_numpy == from_torch
    assert all(digest_array(a) == from_numpy[k] for k, a in arrays.items())


def test_digest_array_keeps_zero_dim_shape() -> None:
    """A 0-d array (BatchNorm's num_batches_tracked) hashes as shape (), like the file it came
    from, not as the 1-element vector np.ascontiguousarray would make of it."""
    scalar = np.array(7, dtype=np.int64)
    want = Digest(ref.tensor_digest("int64", (), scalar.tobytes()))
    assert digest_array(scalar) == want == reference_digests({"x": torch.tensor(7)})["x"]
    assert digest_array(scalar.reshape(1)) != want
    from inspector.formats.memory import _from_numpy
    from inspector.writers.produce import ArrayValue

    assert _from_numpy(scalar).shape == ()
    assert ArrayValue(scalar, "int64").shape == ()


def test_digest_array_handles_views_byte_order_and_named_dtypes() -> None:
    a = RNG.standard_normal((40, 30)).astype(np.float32)
    assert digest_array(a.T) == digest_array(np.ascontiguousarray(a.T))
    assert digest_array(a.astype(">f4")) == digest_array(a)
    bf16 = torch.randn(6, 7).to(torch.bfloat16)
    as_uint16 = bf16.view(torch.int16).numpy().view(np.uint16)
    assert digest_array(as_uint16, "bfloat16") == reference_digests({"x": bf16})["x"]
    with pytest.raises(DtypeError, match="2-byte items"):
        digest_array(a, "bfloat16")
    with pytest.raises(DtypeError, match="cannot hash dtype"):
        digest_array(np.array(["a"]))


def test_torch_save_file_matches_in_memory(tmp_path) -> None:
    state = torch_state()
    path = tmp_path / "model.pt"
    torch.save(state, path)
    assert torch.load(path, weights_only=True)["dec.proj"].stride() == state["dec.proj"].stride()
    with inspector.open(path) as ckpt:
        assert hash_tensors(ckpt) == reference_digests(state)


def test_legacy_torch_file_matches_in_memory(tmp_path) -> None:
    state = torch_state()
    path = tmp_path / "legacy.pt"
    torch.save(state, path, _use_new_zipfile_serialization=False)
    with inspector.open(path) as ckpt:
        assert hash_tensors(ckpt) == reference_digests(state)


def test_safetensors_file_matches_torch_file(tmp_path) -> None:
    state = contiguous(torch_state())
    save_file(state, tmp_path / "model.safetensors")
    torch.save(torch_state(), tmp_path / "model.pt")
    with (
        inspector.open(tmp_path / "model.safetensors") as st,
        inspector.open(tmp_path / "model.pt") as pt,
    ):
        a, b = hash_tensors(st), hash_tensors(pt)
    assert a == b == reference_digests(state)
    assert checkpoint_digest(a) == checkpoint_digest(b)


def test_big_endian_storage_matches_little_endian() -> None:
    a = RNG.standard_normal(12).astype("<f4")
    ckpt = inspector.open({"x": a})
    t = ckpt["x"]
    big = a.astype(">f4").view(np.uint8)
    storage = replace(
        t.storage, source=ByteSource(None, 0, big.nbytes, buffer=big), byteorder="big"
    )
    ckpt.tensors["x"] = replace(t, storage=storage)
    assert hash_tensors(ckpt)["x"] == digest_array(a)


# ---- checkpoint digest -------------------------------------------------------------------------


def test_checkpoint_digest_is_order_free_and_matches_reference() -> None:
    digests = hash_tensors(inspector.open(torch_state()))
    backwards = dict(reversed(list(digests.items())))
    assert checkpoint_digest(digests) == checkpoint_digest(backwards)
    raw = {k: bytes(v) for k, v in digests.items()}
    assert checkpoint_digest(digests).raw == ref.checkpoint_digest(raw)
    renamed = {("x." + k): v for k, v in digests.items()}
    assert checkpoint_digest(renamed) != checkpoint_digest(digests)


# ---- bad input ---------------------------------------------------------------------------------


def _with_tensor(t: TensorInfo) -> Checkpoint:
    return Checkpoint(path=None, format="memory", tree={t.name: t}, tensors={t.name: t})


def test_out_of_range_view_names_the_tensor() -> None:
    buf = np.zeros(16, np.uint8)
    storage = Storage("s", "float32", 16, ByteSource(None, 0, 16, buffer=buf))
    t = TensorInfo("layer.w", "float32", (3, 4), (4, 1), 0, storage)
    with pytest.raises(
        TensorDataError, match=r"'layer.w': view spans bytes \[0, 48\) of a 16-byte"
    ):
        hash_tensors(_with_tensor(t))
    with pytest.raises(TensorDataError, match=r"'layer\.w'"):
        hash_tensors(_with_tensor(replace(t, shape=(2,), strides=(1,), storage_offset=-1)))


def test_meta_tensor_unknown_dtype_and_unknown_name() -> None:
    meta = inspector.open({"m": torch.empty(3, 3, device="meta")})
    with pytest.raises(TensorDataError, match="'m': tensor has no data"):
        hash_tensors(meta)
    ckpt = inspector.open({"x": np.zeros(3, np.float32)})
    with pytest.raises(CheckpointError, match="'nope': no such tensor"):
        hash_tensors(ckpt, ["nope"])
    ckpt.tensors["x"] = replace(ckpt["x"], dtype="float128")
    with pytest.raises(DtypeError, match="'x': cannot hash dtype float128"):
        hash_tensors(ckpt)


# ---- progress, cancel, streaming, imports --------------------------------------------------------


def test_progress_and_cancel() -> None:
    ckpt = inspector.open({"big": np.zeros(64 << 20, np.uint8)})
    calls: list[tuple[int, int]] = []
    hash_tensors(ckpt, progress=lambda d, t: calls.append((d, t)))
    assert calls[-1] == (64 << 20, 64 << 20)

    def cancel(done: int, total: int) -> None:
        raise Cancelled

    with pytest.raises(Cancelled):
        hash_tensors(ckpt, progress=cancel)


def test_tensor_hasher_streams_the_same_digest() -> None:
    a = RNG.standard_normal((700, 500)).astype(np.float32)
    hasher = TensorHasher("float", a.shape)
    raw = a.tobytes()
    for i in range(0, len(raw), 999_999):
        hasher.update(raw[i : i + 999_999])
    assert hasher.digest() == digest_array(a)


def test_hashing_does_not_import_torch() -> None:
    code = (
        "import sys, numpy as np, inspector\n"
        "from inspector.hashing import hash_tensors, checkpoint_digest\n"
        "d = hash_tensors(inspector.open({'a': np.ones(3, np.float32)}))\n"
        "checkpoint_digest(d)\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    python("-c", code, check=True)


def _rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_batched_hashing_is_exact_and_keeps_memory_flat(tmp_path, monkeypatch):
    from safetensors import numpy as st

    import inspector.hashing as hashing

    rng = np.random.default_rng(0)
    arrays = {f"t{i}": rng.standard_normal(1 << 20).astype(np.float32) for i in range(24)}  # 96 MB
    st.save_file(arrays, tmp_path / "big.safetensors")
    del arrays
    expected = hash_tensors(inspector.open(tmp_path / "big.safetensors"))  # one batch or few

    monkeypatch.setattr(hashing, "BATCH_BYTES", 8 << 20)
    seen: list[tuple[int, int]] = []
    ckpt = inspector.open(tmp_path / "big.safetensors")
    before = _rss_kb()
    got = hash_tensors(ckpt, progress=lambda d, t: seen.append((d, t)))
    grown_mb = (_rss_kb() - before) / 1024
    assert got == expected
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert seen[-1] == (96 << 20, 96 << 20)
    assert grown_mb < 48, f"RSS grew by {grown_mb:.0f} MB hashing a 96 MB file"


_TRUNCATING_CHILD = """
import os, sys
import inspector.cli
from inspector import hashing

path = sys.argv[1]
real = hashing.core


class TruncateAfterFirstBatch:  # the file shrinks while `ckpt hash` reads it
    calls = 0

    def __getattr__(self, name):
        return getattr(real, name)

    def hash_tensors(self, *args):
        out = real.hash_tensors(*args)
        TruncateAfterFirstBatch.calls += 1
        if TruncateAfterFirstBatch.calls == 1:
            os.truncate(path, 4096)
        return out


hashing.core = TruncateAfterFirstBatch()
hashing.BATCH_BYTES = 1 << 20  # one tensor a batch
sys.exit(inspector.cli.main(["hash", path]))
"""


def test_file_truncated_while_hashed_is_an_error_not_sigbus(tmp_path):
    path = tmp_path / "m.safetensors"
    save_file({f"t{i}": torch.ones(512, 1024) for i in range(4)}, str(path))
    done = python("-c", _TRUNCATING_CHILD, path, timeout=120)
    assert done.returncode == 2, (done.returncode, done.stderr)  # -7 would be SIGBUS
    assert "the file changed while it was read" in done.stderr
    assert str(path) in done.stderr
    assert "Traceback" not in done.stderr


def test_file_modified_between_batches_is_refused(tmp_path, monkeypatch):
    import os

    from inspector import hashing
    from inspector.errors import FileChangedError

    path = tmp_path / "m.safetensors"
    save_file({f"t{i}": torch.ones(256, 1024) for i in range(3)}, str(path))
    ckpt = inspector.open(path)
    monkeypatch.setattr(hashing, "BATCH_BYTES", 1 << 20)
    real = hashing.core.hash_tensors

    def hash_then_modify(*args):  # another writer rewrites the file in place, same size
        out = real(*args)
        st = path.stat()
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
        return out

    monkeypatch.setattr(hashing.core, "hash_tensors", hash_then_modify)
    with pytest.raises(FileChangedError, match=r"m\.safetensors.*changed while it was read"):
        hashing.hash_tensors(ckpt, threads=1)
    assert path.stat().st_size > 3 * 256 * 1024 * 4  # same size: only the mtime told


def _mapped_resident_bytes(address: int) -> int:
    """Rss of the mapping holding `address`, from /proc/self/smaps."""
    inside = False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head = line.split()[0]
        if "-" in head and ":" not in head:
            lo, hi = (int(x, 16) for x in head.split("-"))
            inside = lo <= address < hi
        elif inside and head == "Rss:":
            return int(line.split()[1]) * 1024
    raise AssertionError("no mapping holds the address")


@pytest.mark.skipif(not Path("/proc/self/smaps").exists(), reason="needs Linux /proc")
@pytest.mark.parametrize("release", [False, True])
def test_core_drops_the_pages_of_a_file_map_once_hashed(tmp_path, release):
    import mmap

    from inspector._native import core

    path = tmp_path / "raw.bin"
    n = 32 << 20
    path.write_bytes(np.arange(n // 8, dtype=np.uint64).tobytes())
    with open(path, "rb") as f:
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    address = np.frombuffer(mm, dtype=np.uint8).ctypes.data
    view = memoryview(mm)[100:]  # not page-aligned: the partial pages at the ends stay
    job = (view, "uint8", 1, (n - 100,), (1,), 0, False, release)
    digest = core.hash_tensors([job], 2)[0]
    resident = _mapped_resident_bytes(address)
    assert digest == core.hash_tensors([(view[:], "uint8", 1, (n - 100,), (1,), 0, False)], 1)[0]
    if release:  # every page a chunk touched, and the 2 MiB group around it, is dropped
        assert resident <= n // 16, resident  # (a margin for pages a racing fault maps back)
    else:
        assert resident >= n // 2, resident
    view.release()
    mm.close()


_TRUNCATING_IN_BATCH_CHILD = """
import os, sys
import inspector.cli
from inspector import hashing

path, threads = sys.argv[1], sys.argv[2]
real = hashing.core


class TruncateBeforeTheRead:  # the file shrinks after the batch was checked, before it is read
    def __getattr__(self, name):
        return getattr(real, name)

    def hash_tensors(self, *args):
        os.truncate(path, 4096)
        return real.hash_tensors(*args)


hashing.core = TruncateBeforeTheRead()
sys.exit(inspector.cli.main(["hash", "--threads", threads, path]))
"""


@pytest.mark.parametrize("threads", ["1", "2"])
def test_file_truncated_inside_a_batch_is_an_error_not_sigbus(tmp_path, threads):
    path = tmp_path / "m.safetensors"
    save_file({"big": torch.ones(4, 1 << 20)}, str(path))  # one 16 MiB batch
    done = python("-c", _TRUNCATING_IN_BATCH_CHILD, path, threads, timeout=120)
    assert done.returncode == 2, (done.returncode, done.stderr)  # -7 would be SIGBUS
    assert "the file changed while it was read" in done.stderr
    assert str(path) in done.stderr
    assert "Traceback" not in done.stderr


def _truncated_map(tmp_path: Path, size: int):
    import mmap

    path = tmp_path / "raw.bin"
    path.write_bytes(b"\1" * size)
    with open(path, "rb") as f:
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    os.truncate(path, 4096)
    return mm


@pytest.mark.parametrize("strided", [False, True])
def test_core_turns_a_truncated_map_into_an_exception_every_time(tmp_path, strided):
    from inspector._native import core

    n = 4 << 20
    mm = _truncated_map(tmp_path, n)
    job = (mm, "uint8", 1, (n // 2,), (2,), 0, False) if strided else (
        mm, "uint8", 1, (n,), (1,), 0, False)
    for _ in range(2):  # the guard is left in order: a second fault is caught as well
        with pytest.raises(core.MappedFileFault, match="truncated"):
            core.hash_tensors([job], 2)
    assert isinstance(core.MappedFileFault("x"), OSError)
    mm.close()


_UNGUARDED_FAULT_CHILD = """
import mmap, os, sys
from inspector._native import core

core.hash_tensors([(b"x" * 16, "uint8", 1, (16,), (1,), 0, False)], 1)  # handler installed
path = sys.argv[1]
with open(path, "wb") as f:
    f.write(b"\\1" * (1 << 20))
with open(path, "rb") as f:
    mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
os.truncate(path, 0)
print(mm[1 << 19])  # not in the core: the default action must still apply
"""


def test_a_fault_outside_the_core_still_kills_the_process(tmp_path):
    import signal

    done = python("-c", _UNGUARDED_FAULT_CHILD, tmp_path / "f.bin", timeout=60)
    # The handler installed before the core's gets the fault: the default action (SIGBUS), or
    # under tools/sanitize.sh AddressSanitizer's, which reports it and aborts.
    assert done.returncode in (-signal.SIGBUS, -signal.SIGABRT), (done.returncode, done.stderr)
