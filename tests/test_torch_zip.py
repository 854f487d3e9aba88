"""The torch zip reader against real torch.save files: every tensor agrees with torch.load."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from subproc import python
from torch_helpers import CASES, ROOTS, assert_same_tensors, save, torch_load

import inspector
from inspector.formats import torch_zip
from inspector.formats.zipfile_safe import read_directory

REPO = Path(__file__).resolve().parents[1]
# complex32 tensors (torch's own warning when the test builds them, not the reader's).
pytestmark = pytest.mark.filterwarnings("ignore:ComplexHalf support is experimental:UserWarning")


@pytest.mark.parametrize("case", sorted(CASES))
def test_tensors_agree_with_torch_load(tmp_path: Path, case: str) -> None:
    path = save(CASES[case](legacy=False), tmp_path / f"{case}.pt", legacy=False)
    ckpt = assert_same_tensors(path, torch_load(path))
    assert ckpt.format == "torch-zip"


@pytest.mark.parametrize("case", sorted(ROOTS))
def test_weights_root_is_detected(tmp_path: Path, case: str) -> None:
    obj = CASES[case](legacy=False)
    path = save(obj, tmp_path / f"{case}.pt", legacy=False)
    ckpt = inspector.open(path)
    assert ckpt.root == ROOTS[case]
    weights = obj[ROOTS[case][0]]
    assert sorted(ckpt) == sorted(weights)
    for name, t in weights.items():
        assert ckpt[name].shape == tuple(t.shape)


def test_non_tensor_leaves_are_data(tmp_path: Path) -> None:
    path = save(CASES["fairseq"](legacy=False), tmp_path / "fs.pt", legacy=False)
    ckpt = inspector.open(path)
    args = ckpt.tree["args"]
    assert isinstance(args, inspector.Record)
    assert args.cls == "argparse.Namespace"
    assert args.kind == "object"
    assert args.state == {"arch": "wav2vec2", "encoder_layers": 2, "lr": [0.0005], "fp16": True}
    assert ckpt.tree["optimizer_history"] == [{"criterion_name": "ctc", "num_updates": 10}]
    assert not ckpt.notes or "unsupported" not in " ".join(ckpt.notes)


def test_byte_ranges_are_the_zip_records(tmp_path: Path) -> None:
    sd = {"a": torch.arange(10, dtype=torch.float32), "b": torch.ones(3, 3, dtype=torch.int64)}
    path = save(sd, tmp_path / "x.pt", legacy=False)
    ckpt = inspector.open(path)
    raw = path.read_bytes()
    with zipfile.ZipFile(path) as z:
        root = z.namelist()[0].split("/")[0]
        for name, t in sd.items():
            start, end = ckpt[name].byte_range  # type: ignore[misc]
            assert raw[start:end] == t.numpy().tobytes()
            record = z.read(ckpt[name].storage.key)
            assert record == t.numpy().tobytes()
            assert ckpt[name].storage.key.startswith(f"{root}/data/")
    assert ckpt.metadata["zip_root"] == "x"
    assert ckpt.metadata["byteorder"] == "little"


def test_root_folder_name_is_taken_from_the_entries(tmp_path: Path) -> None:
    buf = io.BytesIO()
    torch.save({"w": torch.ones(2)}, buf)
    path = tmp_path / "renamed.bin"
    _rewrite(buf.getvalue(), path, rename=lambda n: n.replace("archive/", "my_model-v2/", 1))
    ckpt = inspector.open(path)
    assert ckpt.metadata["zip_root"] == "my_model-v2"
    np.testing.assert_array_equal(ckpt.array("w"), np.ones(2, dtype=np.float32))


def test_big_endian_records_are_honoured(tmp_path: Path) -> None:
    sd = {"f": torch.randn(4, 3), "i": torch.arange(5, dtype=torch.int16)}
    buf = io.BytesIO()
    torch.save(sd, buf)
    path = tmp_path / "big.pt"

    def swap(name: str, data: bytes) -> bytes:
        if name.endswith("/byteorder"):
            return b"big"
        if "/data/" in name:
            itemsize = 4 if name.endswith("/0") else 2
            return np.frombuffer(data, f"<u{itemsize}").byteswap().tobytes()
        return data

    _rewrite(buf.getvalue(), path, transform=swap)
    ckpt = inspector.open(path)
    assert ckpt["f"].storage.byteorder == "big"
    assert "big-endian" in " ".join(ckpt.notes)
    np.testing.assert_array_equal(ckpt.array("f"), sd["f"].numpy())
    np.testing.assert_array_equal(ckpt.array("i"), sd["i"].numpy())


def test_zip_embedded_at_an_offset_is_read_in_place(tmp_path: Path) -> None:
    buf = io.BytesIO()
    sd = {"w": torch.randn(3, 2), "tied": None}
    sd["tied"] = sd["w"]
    torch.save(sd, buf)
    blob = buf.getvalue()
    prefix = b"\0" * 1536  # e.g. the tar headers before a .nemo member
    path = tmp_path / "outer.bin"
    path.write_bytes(prefix + blob + b"\0" * 1024)
    loaded = torch_zip.read_zip_at(
        path, len(prefix), len(blob), inspector_options(), member="./model_weights.ckpt"
    )
    w = loaded.tree["w"]
    assert w.storage.key == "./model_weights.ckpt:archive/data/0"
    assert w.storage.source.offset >= len(prefix)
    raw = path.read_bytes()
    start = w.storage.source.offset
    assert raw[start : start + 24] == sd["w"].numpy().tobytes()
    assert loaded.tree["tied"].storage is w.storage


def test_deflated_record_reads_and_is_not_patchable(tmp_path: Path) -> None:
    sd = {"w": torch.randn(64, 8)}
    buf = io.BytesIO()
    torch.save(sd, buf)
    path = tmp_path / "deflated.pt"
    _rewrite(buf.getvalue(), path, compression=zipfile.ZIP_DEFLATED)
    ckpt = inspector.open(path)
    assert ckpt["w"].storage.source.compression == "deflate"
    assert not ckpt["w"].storage.source.patchable
    assert ckpt["w"].byte_range is None
    assert any("not patchable" in n for n in ckpt.notes)
    np.testing.assert_array_equal(ckpt.array("w"), sd["w"].numpy())


def test_local_zip64_extra_fields_shift_the_data(tmp_path: Path) -> None:
    buf = io.BytesIO()
    torch.save({"w": torch.arange(4.0)}, buf)
    path = tmp_path / "z64.pt"
    _rewrite(buf.getvalue(), path, force_zip64=True)  # zip64 extra in every local header
    raw = path.read_bytes()
    for m in read_directory(path).members.values():
        local_extra = int.from_bytes(raw[m.header_offset + 28 : m.header_offset + 30], "little")
        assert local_extra >= 20
        assert m.data_offset == m.header_offset + 30 + len(m.name) + local_extra
    ckpt = inspector.open(path)
    np.testing.assert_array_equal(ckpt.array("w"), np.arange(4.0, dtype=np.float32))


def test_directory_offsets_match_zipfile(tmp_path: Path) -> None:
    path = save(CASES["views"](legacy=False), tmp_path / "v.pt", legacy=False)
    directory = read_directory(path)
    with zipfile.ZipFile(path) as z:
        infos = {i.filename: i for i in z.infolist()}
        assert set(directory.members) == set(infos)
        raw = path.read_bytes()
        for name, m in directory.members.items():
            assert m.size == infos[name].file_size
            assert m.header_offset == infos[name].header_offset
            assert raw[m.data_offset : m.data_end] == z.read(name)


def test_opening_does_not_import_torch(tmp_path: Path) -> None:
    path = save(CASES["fairseq"](legacy=False), tmp_path / "x.pt", legacy=False)
    code = (
        "import sys, inspector; c = inspector.open(sys.argv[1]); print(list(c.items())[:3]);"
        "c.array(next(iter(c))); assert 'torch' not in sys.modules, 'torch imported'"
    )
    out = python("-c", code, path)
    assert out.returncode == 0, out.stderr
    assert "TensorInfo(name='0.weight'" in out.stdout


def inspector_options() -> torch_zip.ReadOptions:
    return torch_zip.ReadOptions()


def _rewrite(
    blob: bytes,
    path: Path,
    *,
    rename=lambda n: n,
    transform=lambda n, d: d,
    compression: int = zipfile.ZIP_STORED,
    force_zip64: bool = False,
) -> None:
    """Copy a torch zip member by member with zipfile (a real consumer-compatible writer)."""
    with zipfile.ZipFile(io.BytesIO(blob)) as src, zipfile.ZipFile(path, "w") as dst:
        for info in src.infolist():
            name = rename(info.filename)
            data = transform(info.filename, src.read(info))
            if force_zip64:
                with dst.open(zipfile.ZipInfo(name), "w", force_zip64=True) as f:
                    f.write(data)
            else:
                dst.writestr(zipfile.ZipInfo(name), data, compress_type=compression)
