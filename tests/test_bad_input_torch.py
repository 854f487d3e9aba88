"""Malformed and hostile torch checkpoints, each built here: a specific error naming file and key,
never a crash, a hang, or code from the file running."""

from __future__ import annotations

import io
import os
import pickle
import struct
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import inspector
from inspector.errors import (
    ArchiveError,
    DtypeError,
    DuplicateKeyError,
    HeaderError,
    MissingRecordError,
    OffsetError,
    PickleError,
    ShapeError,
    TensorDataError,
    TruncatedFileError,
    UnsafePickleError,
    UnsupportedFormatError,
)
from inspector.formats import unpickler
from inspector.formats.unpickler import Unpickler


def _torch_zip(obj: Any = None) -> dict[str, bytes]:
    buf = io.BytesIO()
    torch.save(obj if obj is not None else {"w": torch.arange(6.0).reshape(2, 3)}, buf)
    with zipfile.ZipFile(buf) as z:
        return {i.filename: z.read(i) for i in z.infolist()}


def _write_zip(
    path: Path, members: dict[str, bytes], compression: int = zipfile.ZIP_STORED
) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(zipfile.ZipInfo(name), data, compress_type=compression)
    return path


def _saved(tmp_path: Path, legacy: bool = False) -> Path:
    path = tmp_path / ("legacy.pt" if legacy else "model.pt")
    sd = {"w": torch.arange(6.0).reshape(2, 3), "b": torch.ones(4, dtype=torch.int64)}
    torch.save(sd, path, _use_new_zipfile_serialization=not legacy)
    return path


def _central_entry(raw: bytes, name: str) -> int:
    """Offset of `name`'s central directory entry (walked, not searched for)."""
    pos = raw.rfind(b"PK\x05\x06")
    (cd_off,) = struct.unpack_from("<L", raw, pos + 16)
    while raw[cd_off : cd_off + 4] == b"PK\x01\x02":
        nlen, elen, clen = struct.unpack_from("<3H", raw, cd_off + 28)
        if raw[cd_off + 46 : cd_off + 46 + nlen] == name.encode():
            return cd_off
        cd_off += 46 + nlen + elen + clen
    raise AssertionError(name)


def _patch_sizes(path: Path, name: str, size: int) -> None:
    raw = bytearray(path.read_bytes())
    entry = _central_entry(bytes(raw), name)
    struct.pack_into("<2L", raw, entry + 20, size, size)
    path.write_bytes(bytes(raw))


# Zip structure -------------------------------------------------------------------------------


@pytest.mark.parametrize("keep", [0.1, 0.5, 0.9, -30, -10, -1])
def test_truncated_zip(tmp_path: Path, keep: float) -> None:
    raw = _saved(tmp_path).read_bytes()
    cut = int(len(raw) * keep) if keep > 0 else len(raw) + int(keep)
    path = tmp_path / "cut.pt"
    path.write_bytes(raw[:cut])
    with pytest.raises(TruncatedFileError, match=r"cut\.pt.*truncated"):
        inspector.open(path)


def test_wrong_magic(tmp_path: Path) -> None:
    path = tmp_path / "noise.pt"
    path.write_bytes(os.urandom(4096).replace(b"PK", b"pk"))
    with pytest.raises(UnsupportedFormatError, match=r"noise\.pt"):
        inspector.open(path)


def test_zip_without_data_pkl(tmp_path: Path) -> None:
    path = _write_zip(tmp_path / "other.zip", {"folder/readme.txt": b"hi"})
    with pytest.raises(UnsupportedFormatError, match=r"no <folder>/data\.pkl"):
        inspector.open(path)


def test_declared_sizes_exceed_the_file(tmp_path: Path) -> None:
    path = _saved(tmp_path)
    _patch_sizes(path, "model/data/0", 1 << 31)
    with pytest.raises(ArchiveError, match=r"model\.pt: 'model/data/0': member data .* runs past"):
        inspector.open(path)


def test_overlapping_members(tmp_path: Path) -> None:
    path = _saved(tmp_path)
    _patch_sizes(path, "model/data/0", 200)  # inside the file, over the next member's header
    with pytest.raises(OffsetError, match=r"'model/data/0': member data .* overlaps"):
        inspector.open(path)


def test_duplicate_member_names(tmp_path: Path) -> None:
    members = _torch_zip()
    path = tmp_path / "dup.pt"
    with zipfile.ZipFile(path, "w") as z, warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # zipfile warns, and writes it anyway
        for name, data in members.items():
            z.writestr(zipfile.ZipInfo(name), data)
        z.writestr(zipfile.ZipInfo("archive/data/0"), b"\0" * 24)
    with pytest.raises(DuplicateKeyError, match=r"dup\.pt: 'archive/data/0': .*twice"):
        inspector.open(path)


def test_deflated_records_are_read_and_flagged(tmp_path: Path) -> None:
    path = _write_zip(tmp_path / "d.pt", _torch_zip(), compression=zipfile.ZIP_DEFLATED)
    ckpt = inspector.open(path)
    assert not ckpt["w"].storage.source.patchable
    assert any("deflated" in n and "not patchable" in n for n in ckpt.notes)
    np.testing.assert_array_equal(ckpt.array("w"), np.arange(6.0, dtype=np.float32).reshape(2, 3))


def test_storage_missing_from_the_zip(tmp_path: Path) -> None:
    members = _torch_zip()
    del members["archive/data/0"]
    path = _write_zip(tmp_path / "missing.pt", members)
    with pytest.raises(MissingRecordError, match=r"missing\.pt: 'archive/data/0'"):
        inspector.open(path)


def test_bad_byteorder(tmp_path: Path) -> None:
    members = _torch_zip()
    members["archive/byteorder"] = b"middle"
    with pytest.raises(HeaderError, match=r"'archive/byteorder': byteorder is 'middle'"):
        inspector.open(_write_zip(tmp_path / "bo.pt", members))


# data.pkl content ----------------------------------------------------------------------------


def _with_pickle(tmp_path: Path, data_pkl: bytes, name: str = "p.pt") -> Path:
    members = _torch_zip()
    members["archive/data.pkl"] = data_pkl
    return _write_zip(tmp_path / name, members)


def _tensor_pickle(
    numel: int = 6,
    size: Any = (2, 3),
    stride: Any = (3, 1),
    offset: int = 0,
    storage: str = "FloatStorage",
) -> bytes:
    """What torch writes for {'w': tensor}, with the fields under test replaced."""

    class Storage:
        pass

    class Rebuild:
        def __reduce__(self):  # type: ignore[no-untyped-def]
            return (torch._utils._rebuild_tensor_v2, (Storage(), offset, size, stride, False, {}))

    class P(pickle.Pickler):
        def persistent_id(self, obj):  # type: ignore[no-untyped-def]
            if isinstance(obj, Storage):
                return ("storage", torch.FloatStorage, "0", "cpu", numel)
            return None

    buf = io.BytesIO()
    P(buf, protocol=2).dump({"w": Rebuild()})
    return buf.getvalue().replace(b"FloatStorage", storage.encode())


def test_tensor_larger_than_its_storage(tmp_path: Path) -> None:
    path = _with_pickle(tmp_path, _tensor_pickle(size=(2, 4), stride=(4, 1)))
    with pytest.raises(ShapeError, match=r"'archive/data.pkl': .*shape \[2, 4\].*archive/data/0"):
        inspector.open(path)


def test_storage_offset_past_the_end(tmp_path: Path) -> None:
    with pytest.raises(ShapeError, match="offset 5"):
        inspector.open(_with_pickle(tmp_path, _tensor_pickle(size=(2,), stride=(1,), offset=5)))


def test_huge_shape(tmp_path: Path) -> None:
    path = _with_pickle(tmp_path, _tensor_pickle(size=(2**40, 2**40), stride=(2**40, 1)))
    with pytest.raises(ShapeError, match="reaches byte"):
        inspector.open(path)


def test_negative_shape(tmp_path: Path) -> None:
    with pytest.raises(ShapeError, match="negative"):
        inspector.open(_with_pickle(tmp_path, _tensor_pickle(size=(-2, 3))))


def test_storage_numel_larger_than_record(tmp_path: Path) -> None:
    path = _with_pickle(tmp_path, _tensor_pickle(numel=2**62))
    with pytest.raises(TensorDataError, match=r"'archive/data/0': record holds 24 bytes"):
        inspector.open(path)


def test_unknown_storage_type(tmp_path: Path) -> None:
    path = _with_pickle(tmp_path, _tensor_pickle(storage="FloatXStorag"))
    with pytest.raises(DtypeError, match=r"unknown storage type torch\.FloatXStorag"):
        inspector.open(path)


def test_malformed_opcodes_in_data_pkl(tmp_path: Path) -> None:
    path = _with_pickle(tmp_path, b"\x80\x02}q\x00(X\x01\x00\x00\x00a\xfe.")
    with pytest.raises(PickleError, match=r"p\.pt: 'archive/data.pkl': unknown opcode 0xfe"):
        inspector.open(path)


def test_truncated_data_pkl(tmp_path: Path) -> None:
    blob = _tensor_pickle()
    for cut in (1, len(blob) // 3, len(blob) - 1):
        with pytest.raises(PickleError, match=r"'archive/data\.pkl'"):
            inspector.open(_with_pickle(tmp_path, blob[:cut], name=f"t{cut}.pt"))


def test_nesting_bomb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bomb = b"\x80\x02" + b"]" * 50_000 + b"a" * 49_999 + b"."
    visited = []  # containers the nesting check opened before refusing: bounded by the limit

    def children(node: Any) -> Any:
        visited.append(node)
        return real_children(node)

    real_children = unpickler._children
    monkeypatch.setattr(unpickler, "_children", children)
    with pytest.raises(PickleError, match="nested deeper"):
        inspector.open(_with_pickle(tmp_path, bomb))
    assert 0 < len(visited) <= unpickler.MAX_DEPTH + 1


def test_huge_declared_string_length(tmp_path: Path) -> None:
    blob = b"\x80\x04\x8d" + struct.pack("<Q", 2**60) + b"abc."
    with pytest.raises(PickleError, match="declares 1152921504606846976 bytes"):
        inspector.open(_with_pickle(tmp_path, blob))


# Code that must never run --------------------------------------------------------------------


def _payloads(canary: Path) -> dict[str, bytes]:
    c = str(canary)

    class Reduce:
        def __init__(self, func: Any, args: tuple[Any, ...]):
            self.func, self.args = func, args

        def __reduce__(self):  # type: ignore[no-untyped-def]
            return (self.func, self.args)

    getattr_chain = (
        b"\x80\x02cbuiltins\ngetattr\n(cbuiltins\n__import__\n(X\x02\x00\x00\x00ostRX\x06\x00\x00"
        b"\x00systemtR(X" + struct.pack("<I", len(c) + 6) + f"touch {c}".encode() + b"tR."
    )
    return {
        "os.system": pickle.dumps(Reduce(os.system, (f"touch {c}",)), protocol=2),
        "builtins.eval": pickle.dumps(Reduce(eval, (f"open({c!r}, 'w').close()",)), protocol=4),
        "subprocess.Popen": pickle.dumps(
            {"x": Reduce(subprocess.Popen, (["touch", c],))}, protocol=0
        ),
        "builtins.getattr": getattr_chain,
    }


@pytest.mark.parametrize(
    "callable_name", ["os.system", "builtins.eval", "subprocess.Popen", "builtins.getattr"]
)
def test_hostile_pickle_never_runs(tmp_path: Path, callable_name: str) -> None:
    canary = tmp_path / "canary"
    payload = _payloads(canary)[callable_name]
    path = _with_pickle(tmp_path, payload, name="evil.pt")

    if callable_name == "subprocess.Popen":  # a call nested in the dict: shown as a record
        ckpt = inspector.open(path)
        assert any("unsupported globals" in n for n in ckpt.notes)
    else:  # the top-level object is the call: torch refuses it, so do the readers (issue 11)
        with pytest.raises(PickleError, match="top-level object is built by calling"):
            inspector.open(path)
    assert not canary.exists()
    with pytest.raises(UnsafePickleError, match=r"evil\.pt: 'archive/data.pkl': pickle calls"):
        inspector.open(path, strict=True)
    assert not canary.exists()

    # The payload is live: real pickle would have run it (in a child, so nothing leaks here).
    # The child waits for any process the payload started (Popen) before it exits.
    subprocess.run(
        [sys.executable, "-c", _LOAD_AND_WAIT],
        input=payload,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert canary.exists()


_LOAD_AND_WAIT = """
import os, pickle, sys
pickle.loads(sys.stdin.buffer.read())
try:
    while True:
        os.wait()
except ChildProcessError:
    pass
"""


def _legacy_pickle_ends(raw: bytes) -> list[int]:
    """End offsets of the five pickles of a legacy file (the raw storages follow the last)."""
    ends, pos = [], 0
    for _ in range(5):
        machine = Unpickler(raw, path="x", builders={}, persistent_load=lambda pid: None)
        _, pos = machine.load_at(pos)
        ends.append(pos)
    return ends


def test_hostile_global_in_a_legacy_file(tmp_path: Path) -> None:
    canary = tmp_path / "canary"
    raw = _saved(tmp_path, legacy=True).read_bytes()
    sys_info_end = _legacy_pickle_ends(raw)[2]
    hostile = tmp_path / "evil_legacy.pt"
    # magic, version and sys_info stay; the object is the payload; no storages.
    payload = _payloads(canary)["os.system"]
    hostile.write_bytes(raw[:sys_info_end] + payload + pickle.dumps([], protocol=2))
    # the object is the call itself: refused (torch refuses it too; issue 11), never run
    with pytest.raises(
        PickleError,
        match=r"evil_legacy\.pt: 'object': the top-level object is "
        r"built by calling posix\.system",
    ):
        inspector.open(hostile)
    assert not canary.exists()
    with pytest.raises(UnsafePickleError, match=r"evil_legacy\.pt"):
        inspector.open(hostile, strict=True)
    assert not canary.exists()


# Legacy stream -------------------------------------------------------------------------------


def test_truncated_legacy_stream(tmp_path: Path) -> None:
    raw = _saved(tmp_path, legacy=True).read_bytes()
    data_start = _legacy_pickle_ends(raw)[-1]
    for cut, error in [
        (30, PickleError),
        (200, PickleError),
        (data_start - 3, PickleError),
        (data_start + 4, TruncatedFileError),
        (len(raw) - 1, TruncatedFileError),
    ]:
        path = tmp_path / f"cut{cut}.pt"
        path.write_bytes(raw[:cut])
        with pytest.raises(error, match=rf"cut{cut}\.pt"):
            inspector.open(path)


def test_legacy_storage_count_disagrees(tmp_path: Path) -> None:
    path = _saved(tmp_path, legacy=True)
    raw = bytearray(path.read_bytes())
    ckpt = inspector.open(path)
    header = ckpt["w"].storage.source.offset - 8
    struct.pack_into("<q", raw, header, 2)  # says 2 elements, the pickle says 6
    bad = tmp_path / "count.pt"
    bad.write_bytes(bytes(raw))
    with pytest.raises(TensorDataError, match="holds 2 elements, the pickle declares 6"):
        inspector.open(bad)
