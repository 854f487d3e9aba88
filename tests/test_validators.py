"""One validator per format, shared by `open` (`ckpt ls`) and `scan` (issue 11, items 6-8).

Every bad file here is built the way it occurs (bytes of a real torch.save zip patched, a tar
written by tarfile, a pickle whose top-level dict is made by REDUCE), and the real consumer
(torch.load, tarfile) is run on it, so each test documents why the readers decide as they do.
"""

from __future__ import annotations

import io
import json
import struct
import tarfile
import zipfile
from pathlib import Path

import pytest
import torch
from safetensors_cases import CASES
from subproc import ckpt

import inspector
from inspector.errors import ArchiveError, CheckpointError, HeaderError, PickleError, ShapeError
from inspector.formats import safetensors as st_reader
from inspector.scanning import scan, sniff


def _refusal(path: Path) -> CheckpointError:
    with pytest.raises(CheckpointError) as info:
        inspector.open(path)
    return info.value


def _ls_fails(path: Path, *says: str) -> None:
    done = ckpt("ls", path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert str(path) in done.stderr
    for text in says:
        assert text in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def _scan_json(path: Path) -> list[dict[str, object]]:
    done = ckpt("scan", path, "--format", "json")
    assert done.returncode == 1, done.stdout + done.stderr
    findings: list[dict[str, object]] = json.loads(done.stdout)["findings"]
    return findings


# --- item 6: one safetensors header parser --------------------------------------------------


@pytest.mark.parametrize("way", ["open", "scan"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_shared_header_cases_same_verdict_in_open_and_scan(tmp_path: Path, case, way) -> None:
    path = case.make(tmp_path)
    if way == "open":
        error = _refusal(path)
        assert type(error) is case.error, error
        if case.key is not None:
            assert error.key == case.key
        return
    result = scan(path)
    assert not result.passed
    found = [
        f
        for f in result.findings
        if f.code.startswith("safetensors-") and f.details.get("kind") == case.error.__name__
    ]
    assert found, result.findings  # the core's fault, under its error class
    if case.key is not None:
        assert {f.key for f in found} == {case.key}


def _st(folder: Path, header: bytes, data: bytes, name: str = "m.safetensors") -> Path:
    path = folder / name
    path.write_bytes(struct.pack("<Q", len(header)) + header + data)
    return path


_ENTRY = '"a": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]'


@pytest.mark.parametrize(
    ("header", "error"),
    [
        ('{"__metadata__": {"format": ["pt"]}, ' + _ENTRY + "}}", HeaderError),
        ("{" + _ENTRY + ', "x": ' + "[" * 130 + "]" * 130 + "}}", HeaderError),
        ('{"a": {"dtype": "U8", "shape": [1.0], "data_offsets": [0, 1]}}', ShapeError),
    ],
    ids=["metadata-not-a-string-map", "nested-130-deep", "float-in-shape"],
)
def test_scan_no_longer_passes_what_open_refuses(tmp_path: Path, header: str, error) -> None:
    # these three passed `scan` (its own Python check) while `open` refused them
    path = _st(tmp_path, header.encode(), b"\0")
    assert type(_refusal(path)) is error
    findings = _scan_json(path)
    kinds = {f["details"].get("kind") for f in findings if str(f["code"]).startswith("safetens")}  # type: ignore[union-attr]
    assert error.__name__ in kinds, findings


def test_leading_whitespace_refused_by_ls_and_scan_alike(tmp_path: Path) -> None:
    header = b'  {"a": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]}}'
    path = _st(tmp_path, header, b"\0")
    error = _refusal(path)
    assert isinstance(error, HeaderError)
    assert "not '{'" in error.what
    _ls_fails(path, "not '{'")
    findings = _scan_json(path)
    codes = {f["code"] for f in findings}
    assert "safetensors-header" in codes, findings  # recognised as safetensors, not "not-scanned"
    assert "not-scanned" not in codes


@pytest.mark.parametrize(
    "head",
    [
        struct.pack("<Q", 40) + b"{",
        struct.pack("<Q", 40) + b" {",
        struct.pack("<Q", 10**9) + b"{",
        b"PK\x03\x04" + bytes(8),
    ],
    ids=["brace", "space", "over-cap", "zip"],
)
def test_scan_and_readers_recognise_a_file_alike(tmp_path: Path, head: bytes) -> None:
    path = tmp_path / "blob"  # no suffix: recognised by content alone
    path.write_bytes(head + bytes(64))
    readers = {"safetensors": st_reader.sniff(path, path.read_bytes()[:512])}
    from inspector.formats import torch_zip

    readers["zip"] = torch_zip.sniff(path, path.read_bytes()[:512])
    kind = sniff(path.read_bytes()[:512], path.name)
    assert {k for k, yes in readers.items() if yes} == ({kind} & set(readers))


# --- item 7: small records are CRC-checked --------------------------------------------------


def _torch_zip(folder: Path, name: str = "m.pt") -> Path:
    path = folder / name
    torch.save({"weight": torch.ones(3)}, path)
    return path


def _patch_member(path: Path, member: str, old: bytes, new: bytes) -> None:
    """Edit a stored member in place, leaving its CRC-32 stale (as a hand edit does)."""
    with zipfile.ZipFile(path) as z:
        info = z.getinfo(member)
    raw = bytearray(path.read_bytes())
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    local_extra = struct.unpack_from("<H", raw, info.header_offset + 28)[0]
    start = info.header_offset + 30 + len(info.filename.encode()) + local_extra
    at = raw.index(old, start, start + info.compress_size)
    raw[at : at + len(old)] = new
    path.write_bytes(bytes(raw))


def test_a_data_pkl_with_a_stale_crc_is_refused(tmp_path: Path) -> None:
    path = _torch_zip(tmp_path)
    _patch_member(path, "m/data.pkl", b"weight", b"weighs")
    # torch loads it without a word, under the flipped name
    assert list(torch.load(path, weights_only=True)) == ["weighs"]
    error = _refusal(path)
    assert isinstance(error, ArchiveError)
    assert error.key == "m/data.pkl"
    assert "CRC-32" in error.what
    _ls_fails(path, "'m/data.pkl'", "CRC-32")
    codes = {f["code"] for f in _scan_json(path)}
    assert {"zip-crc-mismatch", "unreadable"} <= codes


def test_every_small_record_is_crc_checked(tmp_path: Path) -> None:
    path = _torch_zip(tmp_path)
    with zipfile.ZipFile(path) as z:
        sid = z.read("m/.data/serialization_id")
    _patch_member(path, "m/.data/serialization_id", sid[:1], b"x" if sid[:1] != b"x" else b"y")
    torch.load(path, weights_only=True)  # torch does not look
    error = _refusal(path)
    assert isinstance(error, ArchiveError)
    assert error.key == "m/.data/serialization_id"
    _ls_fails(path, "serialization_id", "CRC-32")


def test_a_stale_crc_inside_a_nemo_is_refused(tmp_path: Path) -> None:
    from inspector.demo import build_demo

    nemo = build_demo(tmp_path / "demo").target
    with tarfile.open(nemo) as src:
        members = [(m, src.extractfile(m).read() if m.isfile() else None) for m in src]  # type: ignore[union-attr]
    weights = tmp_path / "w.ckpt"
    (blob,) = [data for m, data in members if m.name.endswith("model_weights.ckpt")]
    weights.write_bytes(blob)  # type: ignore[arg-type]
    with zipfile.ZipFile(weights) as z:
        pkl = next(n for n in z.namelist() if n.endswith("/data.pkl"))
    _patch_member(weights, pkl, b"encoder", b"encodes")
    bad = tmp_path / "bad.nemo"
    with tarfile.open(bad, "w") as out:
        for m, data in members:
            if m.name.endswith("model_weights.ckpt"):
                data = weights.read_bytes()
            out.addfile(m, io.BytesIO(data) if data is not None else None)
    error = _refusal(bad)
    assert isinstance(error, ArchiveError)
    assert "model_weights.ckpt" in str(error)
    assert error.key == pkl
    assert "CRC-32" in error.what
    _ls_fails(bad, "model_weights.ckpt", "CRC-32")


# --- item 8: what torch cannot load is not a clean pass ---------------------------------------


def _zip64_records(raw: bytes) -> tuple[int, int, int]:
    return raw.rfind(b"PK\x06\x06"), raw.rfind(b"PK\x06\x07"), raw.find(b"PK\x01\x02")


@pytest.mark.parametrize(
    "field",
    [
        "zip64-record-disk",
        "zip64-record-cd-disk",
        "zip64-entries-on-disk",
        "locator-disks",
        "member-disk",
    ],
)
def test_multidisk_fields_torch_refuses_are_refused(tmp_path: Path, field: str) -> None:
    path = _torch_zip(tmp_path)
    raw = bytearray(path.read_bytes())
    rec, loc, central = _zip64_records(bytes(raw))
    assert rec > 0, "torch.save writes zip64 end records"
    assert loc > 0
    offset, fmt, value = {
        "zip64-record-disk": (rec + 16, "<L", 1),
        "zip64-record-cd-disk": (rec + 20, "<L", 1),
        "zip64-entries-on-disk": (rec + 24, "<Q", 1),
        "locator-disks": (loc + 16, "<L", 2),
        "member-disk": (central + 34, "<H", 3),
    }[field]
    struct.pack_into(fmt, raw, offset, value)
    path.write_bytes(bytes(raw))
    with pytest.raises(RuntimeError, match="multidisk"):
        torch.load(path, weights_only=True)
    error = _refusal(path)
    assert isinstance(error, ArchiveError)
    assert "multi-disk" in error.what
    _ls_fails(path, "multi-disk")
    assert any(f["severity"] == "error" for f in _scan_json(path))


def test_a_gnu_longname_member_in_a_nemo_reads_as_tarfile_reads_it(tmp_path: Path) -> None:
    # The premise to check: tarfile (what NeMo restores with) reads GNU long names, so a .nemo
    # holding one is sound and must read, list and scan cleanly, not be refused.
    from inspector.demo import build_demo

    nemo = build_demo(tmp_path / "demo").target
    long_name = "./" + "t" * 120 + "_tokenizer.model"
    out = tmp_path / "long.nemo"
    with tarfile.open(nemo) as src, tarfile.open(out, "w", format=tarfile.GNU_FORMAT) as dst:
        for m in src:
            dst.addfile(m, src.extractfile(m) if m.isfile() else None)
        info = tarfile.TarInfo(long_name)
        info.size = 3
        dst.addfile(info, io.BytesIO(b"abc"))
    assert b"././@LongLink" in out.read_bytes()
    with tarfile.open(out) as t:
        assert long_name in t.getnames()
        t.extractall(tmp_path / "x", filter="data")
    assert (tmp_path / "x" / long_name).read_bytes() == b"abc"
    opened = inspector.open(out)
    assert long_name.removeprefix("./") in str(opened.metadata)
    assert ckpt("ls", out).returncode == 0
    assert ckpt("scan", out).returncode == 0


def test_a_top_level_dict_built_by_reduce_is_refused(tmp_path: Path) -> None:
    path = _torch_zip(tmp_path, "r.pt")
    with zipfile.ZipFile(path) as src:
        infos = [(i, src.read(i)) for i in src.infolist()]
    pkl = next(data for i, data in infos if i.filename == "r/data.pkl")
    assert pkl[2:3] == b"}"  # EMPTY_DICT: torch writes the top-level dict as a dict
    reduced = pkl[:2] + b"cbuiltins\ndict\n)R" + pkl[3:]  # the same dict, made by dict()
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as dst:
        for info, data in infos:
            dst.writestr(info, reduced if info.filename == "r/data.pkl" else data)
    with pytest.raises(Exception, match="Unsupported global: GLOBAL dict"):
        torch.load(path, weights_only=True)
    error = _refusal(path)
    assert isinstance(error, PickleError)
    assert error.key == "r/data.pkl"
    assert "builtins.dict" in error.what
    _ls_fails(path, "'r/data.pkl'", "top-level object")
    findings = _scan_json(path)
    assert "unreadable" in {f["code"] for f in findings}


def test_a_dcp_bytes_item_built_by_reduce_still_reads(tmp_path: Path) -> None:
    # DCP loads its bytes items with torch.load(weights_only=False): an object made by a call
    # (a timedelta reduces to datetime.timedelta(...)) is a record there, not a refusal.
    import datetime
    import warnings

    import torch.distributed.checkpoint as dcp

    folder = tmp_path / "dcp"
    state = {"w": torch.ones(2), "elapsed": datetime.timedelta(days=1)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        dcp.save(state, checkpoint_id=str(folder), no_dist=True)
    opened = inspector.open(folder)
    assert "w" in opened.tensors
    assert any("datetime.timedelta" in n for n in opened.notes), opened.notes
    assert ckpt("ls", folder).returncode == 0
