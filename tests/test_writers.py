"""Writers checked with the real consumers: torch.load(weights_only=True), safetensors, tarfile."""

from __future__ import annotations

import io
import json
import shutil
import struct
import tarfile
import threading
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from subproc import python

import inspector
from inspector.io.atomic import start_writeback
from inspector.mapping.transforms import Cast, Concat, Pad, Select, Slice, Transpose
from inspector.writers import choose_format, nemo, safetensors, torch_zip, zipfmt
from inspector.writers.build import build_output
from inspector.writers.produce import View, ViewValue
from inspector.writers.transformed import apply_transforms, source_value

NEMO = Path(__file__).parent / "data" / "conformer_ctc_bpe_small.nemo"


def _state() -> OrderedDict[str, torch.Tensor]:
    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4))
    sd = m.state_dict()
    sd["tied"] = sd["0.weight"]
    sd["tview"] = sd["0.weight"].t()
    sd["bf16"] = torch.randn(3, 2).to(torch.bfloat16)
    sd["f16"] = torch.randn(5).half()
    sd["i64"] = torch.arange(7)
    sd["flag"] = torch.tensor([True, False])
    sd["scalar"] = torch.tensor(2.5)
    return sd


def _training_dict() -> dict:
    return {"model": _state(), "epoch": 3, "loss": 0.25, "cfg": [1, "x", None, (1, 2), b"ab"],
            "big": 2**40, "neg": -(2**40), "p": torch.nn.Parameter(torch.ones(2))}


def test_torch_zip_pickle_and_layout_match_torch_save(tmp_path: Path) -> None:
    src, out = tmp_path / "a.pt", tmp_path / "b.pt"
    torch.save(_training_dict(), src)
    torch_zip.write(build_output(inspector.open(src), {}), out)
    za, zb = zipfile.ZipFile(src), zipfile.ZipFile(out)
    assert za.read("a/data.pkl") == zb.read("a/data.pkl")
    assert [(i.filename, i.header_offset, i.CRC) for i in za.infolist()
            if "serialization_id" not in i.filename] == \
        [(i.filename, i.header_offset, i.CRC) for i in zb.infolist()
         if "serialization_id" not in i.filename]
    assert zb.testzip() is None
    for info in zb.infolist():
        if "/data/" in info.filename:
            assert (info.header_offset + 30 + len(info.filename) + len(info.extra)) % 64 == 0 or \
                _data_offset(out, info) % 64 == 0


def _data_offset(path: Path, info: zipfile.ZipInfo) -> int:
    raw = path.read_bytes()
    n, m = struct.unpack_from("<HH", raw, info.header_offset + 26)
    return info.header_offset + 30 + n + m


def test_torch_zip_loads_with_weights_only_and_keeps_ties(tmp_path: Path) -> None:
    src, out = tmp_path / "a.pt", tmp_path / "b.pt"
    original = _training_dict()
    torch.save(original, src)
    torch_zip.write(build_output(inspector.open(src), {}), out)
    got = torch.load(out, weights_only=True)
    for k, v in original["model"].items():
        assert torch.equal(got["model"][k], v), k
        assert got["model"][k].stride() == v.stride()
    assert got["model"]["tied"].data_ptr() == got["model"]["0.weight"].data_ptr()
    assert got["model"]["tview"].untyped_storage().data_ptr() == \
        got["model"]["0.weight"].untyped_storage().data_ptr()
    assert isinstance(got["model"], OrderedDict)
    assert got["model"]._metadata == original["model"]._metadata
    assert isinstance(got["p"], torch.nn.Parameter)
    assert got["p"].requires_grad
    assert got["cfg"] == original["cfg"]
    assert got["big"] == 2**40
    assert got["neg"] == -(2**40)


def test_torch_zip_zip64_fields_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Records of 4 GiB are too slow for a unit test: lower the threshold so the zip64 code runs.
    monkeypatch.setattr(zipfmt, "ZIP64_LIMIT", 16)
    src, out = tmp_path / "a.pt", tmp_path / "b.pt"
    torch.save(_state(), src)
    torch_zip.write(build_output(inspector.open(src), {}), out)
    assert zipfile.ZipFile(out).testzip() is None
    got = torch.load(out, weights_only=True)
    assert torch.equal(got["0.weight"], _state()["0.weight"])


def test_safetensors_header_matches_reference(tmp_path: Path) -> None:
    tensors = {k: v.contiguous() for k, v in _state().items() if k not in ("tied", "tview")}
    ref, out = tmp_path / "ref.safetensors", tmp_path / "out.safetensors"
    save_file(tensors, ref, metadata={"format": "pt"})
    safetensors.write(build_output(inspector.open(ref), {}), out)
    assert out.read_bytes() == ref.read_bytes()


def test_safetensors_from_torch_with_views(tmp_path: Path) -> None:
    src, out = tmp_path / "a.pt", tmp_path / "b.safetensors"
    state = _state()
    torch.save(state, src)
    safetensors.write(build_output(inspector.open(src), {}), out)
    with safe_open(out, "pt") as f:
        assert sorted(f.keys()) == sorted(state)
        for k in f.keys():  # noqa: SIM118 - safe_open has no __iter__
            assert torch.equal(f.get_tensor(k), state[k]), k


def test_safetensors_sharded_with_index(tmp_path: Path) -> None:
    src, folder = tmp_path / "a.pt", tmp_path / "out"
    state = _state()
    torch.save(state, src)
    folder.mkdir()
    names = safetensors.write_sharded(build_output(inspector.open(src), {}), folder, max_bytes=40)
    index = json.loads((folder / safetensors.INDEX_NAME).read_text())
    assert len(names) > 2
    assert set(index["weight_map"]) == set(state)
    for name, shard in index["weight_map"].items():
        with safe_open(folder / shard, "pt") as f:
            assert torch.equal(f.get_tensor(name), state[name])
    again = inspector.open(folder / safetensors.INDEX_NAME)
    assert set(again) == set(state)


def test_nemo_rewrite_keeps_every_other_member_byte_for_byte(tmp_path: Path) -> None:
    out = tmp_path / "out.nemo"
    nemo.write(build_output(inspector.open(NEMO), {}), out)
    with tarfile.open(NEMO) as a, tarfile.open(out) as b:
        assert [m.name for m in a.getmembers()] == [m.name for m in b.getmembers()]
        for m in a.getmembers():
            if m.isfile() and not m.name.endswith("model_weights.ckpt"):
                assert _member(a, m.name) == _member(b, m.name), m.name
        wa = torch.load(io.BytesIO(_member(a, "./model_weights.ckpt")), weights_only=True)
        wb = torch.load(io.BytesIO(_member(b, "./model_weights.ckpt")), weights_only=True)
    assert wa.keys() == wb.keys()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def _member(tar: tarfile.TarFile, name: str) -> bytes:
    f = tar.extractfile(name)
    assert f is not None
    with f:
        return f.read()


def test_nemo_from_tar_gz_is_written_uncompressed(tmp_path: Path) -> None:
    gz = tmp_path / "old.nemo"
    with tarfile.open(NEMO) as a, tarfile.open(gz, "w:gz") as b:
        for m in a.getmembers():
            b.addfile(m, io.BytesIO(_member(a, m.name)) if m.isfile() else None)
    out = tmp_path / "new.nemo"
    nemo.write(build_output(inspector.open(gz, cache_dir=tmp_path / "cache"), {}), out)
    assert out.read_bytes()[:2] != b"\x1f\x8b"
    with tarfile.open(out, "r:") as b, tarfile.open(NEMO) as a:
        assert _member(b, "./model_config.yaml") == _member(a, "./model_config.yaml")


@pytest.mark.parametrize("dtype", ["bfloat16", "float16", "float64"])
def test_cast_matches_torch(tmp_path: Path, dtype: str) -> None:
    x = torch.randn(64, 33) * 1000
    x[0, :4] = torch.tensor([float("inf"), float("nan"), 1e-40, 65519.0])
    src = tmp_path / "x.pt"
    torch.save({"x": x}, src)
    ck = inspector.open(src)
    value = apply_transforms([source_value(ck, ck["x"])], [Cast(dtype)])
    out = tmp_path / "y.pt"
    torch_zip.write(build_output(ck, {"x": value}), out)
    got = torch.load(out, weights_only=True)["x"]
    want = x.to(getattr(torch, dtype))
    assert got.dtype == want.dtype
    assert torch.equal(got.view(torch.uint8), want.view(torch.uint8))  # bit for bit, NaN too


def test_view_transforms_match_torch(tmp_path: Path) -> None:
    a, b = torch.randn(6, 4), torch.randn(2, 4)
    src = tmp_path / "s.pt"
    torch.save({"a": a, "b": b, "t": torch.zeros(10, 4)}, src)
    ck = inspector.open(src)
    av, bv = source_value(ck, ck["a"]), source_value(ck, ck["b"])
    target = source_value(ck, ck["t"])
    cases = {
        "transpose": (apply_transforms([av], [Transpose()]), a.t()),
        "slice": (apply_transforms([av], [Slice(0, 1, 4)]), a[1:4]),
        "select": (apply_transforms([av], [Select(0, 2)]), a[2]),
        "select_of_transposed": (apply_transforms([av], [Transpose(), Select(1, 3)]), a.t()[:, 3]),
        "select_materialized": (apply_transforms([av, bv], [Concat(0), Select(1, 1)]),
                                torch.cat([a, b])[:, 1]),
        "concat": (apply_transforms([av, bv], [Concat(0)]), torch.cat([a, b])),
        "pad_target": (apply_transforms([av], [Pad(0, 1, 3, "target")], target),
                       torch.cat([torch.zeros(1, 4), a, torch.zeros(3, 4)])),
        "pad_zeros": (apply_transforms([av], [Pad(1, 0, 2, "zeros")]),
                      torch.cat([a, torch.zeros(6, 2)], dim=1)),
    }
    from inspector.writers.produce import materialize

    for name, (value, want) in cases.items():
        got = materialize(value, value.dtype, value.shape)
        assert np.array_equal(got, want.numpy()), name


def test_choose_format() -> None:
    assert choose_format("x.safetensors", "nemo") == "safetensors"
    assert choose_format("x.nemo", "torch-zip") == "nemo"
    assert choose_format("folder", "hf") == "hf"
    assert choose_format("x.pt", "safetensors", "safetensors") == "safetensors"


def test_nonfinite_chunks_cover_big_rows(tmp_path: Path) -> None:
    # A view whose one row is larger than a chunk still streams (one row per chunk).
    x = torch.randn(3, 1000).t()  # non-contiguous
    src = tmp_path / "x.pt"
    torch.save({"x": x}, src)
    ck = inspector.open(src)
    t = ck["x"]
    value = ViewValue(ck, t.storage, View.of(t))
    chunks = list(value.chunks(8))
    assert len(chunks) == 1000
    assert sum(n for n, _ in chunks) == x.numel() * 4
    value.close()


def test_rewrite_of_copied_fixture_does_not_touch_input(tmp_path: Path) -> None:
    copy = tmp_path / "in.nemo"
    shutil.copy(NEMO, copy)
    before = copy.read_bytes()
    nemo.write(build_output(inspector.open(copy), {}), tmp_path / "out.nemo")
    assert copy.read_bytes() == before


class _Payload:
    """Pickles as a call to os.system: what a code-execution payload beside the weights is."""

    def __reduce__(self) -> tuple[object, tuple[str]]:
        import os

        return os.system, ("true",)


def test_pickler_refuses_unknown_calls_unless_asked(tmp_path: Path) -> None:
    import argparse

    from inspector.errors import WriteError

    src, out = tmp_path / "a.pt", tmp_path / "b.pt"
    torch.save({"model": _state(), "hook": [_Payload()], "args": argparse.Namespace(lr=0.5)}, src)
    output = build_output(inspector.open(src), {})
    with pytest.raises(WriteError, match=r"'hook\.0'.*posix\.system.*keep_unknown_globals"):
        torch_zip.write(output, out)
    output.keep_unknown_globals = True
    torch_zip.write(output, out)
    assert zipfile.ZipFile(out).read("a/data.pkl") == zipfile.ZipFile(src).read("a/data.pkl")


def test_namespace_is_written_as_torch_writes_it(tmp_path: Path) -> None:
    """argparse.Namespace (state only) pickles to torch.save's own bytes: weights_only=True
    refuses it in both files alike, and allowing the class loads it back equal."""
    import argparse

    src, out = tmp_path / "a.pt", tmp_path / "b.pt"
    args = argparse.Namespace(lr=0.5, layers=[1, 2], name="x")
    torch.save({"model": _state(), "args": args}, src)
    torch_zip.write(build_output(inspector.open(src), {}), out)
    assert zipfile.ZipFile(out).read("a/data.pkl") == zipfile.ZipFile(src).read("a/data.pkl")
    for path in (src, out):
        with pytest.raises(Exception, match=r"argparse\.Namespace"):
            torch.load(path, weights_only=True)
    with torch.serialization.safe_globals([argparse.Namespace]):
        got = torch.load(out, weights_only=True)
    assert got["args"] == args


def test_writeback_follows_files_written_during_the_body_and_stops(tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    before = {t.name for t in threading.enumerate()}
    with start_writeback(folder, every=0.001):
        for i in range(20):  # files appear and grow while the thread asks for their writeback
            (folder / f"shard-{i}.bin").write_bytes(bytes([i]) * 100_000)
        (folder / "shard-0.bin").unlink()  # a file gone between two rounds is skipped
    assert "ckpt-writeback" not in {t.name for t in threading.enumerate()} - before
    assert sorted(p.name for p in folder.iterdir())[0] == "shard-1.bin"
    assert (folder / "shard-7.bin").read_bytes() == bytes([7]) * 100_000


def test_writeback_thread_stops_when_the_body_fails(tmp_path):
    f = tmp_path / "out.bin"
    f.write_bytes(b"x" * 4096)
    with pytest.raises(RuntimeError, match="boom"), start_writeback(f, every=0.001):
        raise RuntimeError("boom")
    assert not [t for t in threading.enumerate() if t.name == "ckpt-writeback"]


def test_apply_imports_neither_numpy_nor_torch():
    # a patch copies bytes and hashes them in the core: numpy is imported where arrays are built
    code = ("import sys, inspector.applying, inspector.cli.apply; "
            "print(sorted(m for m in ('numpy', 'torch') if m in sys.modules))")
    out = python("-c", code, check=True)
    assert out.stdout.strip() == "[]"


def test_tied_views_given_two_sources_of_one_storage_key_are_refused(tmp_path: Path) -> None:
    """A storage key is unique within one checkpoint only: two safetensors sources each holding
    a `w` give equal keys (a tensor's own name). A tied pair fed one from each would get two
    values: refused, not taken for one value because the keys are equal."""
    from inspector.errors import PlanError
    from inspector.writers.build import build_output
    from inspector.writers.produce import View, ViewValue

    save_file({"w": torch.ones(4, 3)}, str(tmp_path / "a.safetensors"))
    save_file({"w": torch.zeros(4, 3)}, str(tmp_path / "b.safetensors"))
    w = torch.randn(4, 3)
    torch.save({"emb.weight": w, "head.weight": w}, tmp_path / "tgt.pt")
    a, b = inspector.open(tmp_path / "a.safetensors"), inspector.open(tmp_path / "b.safetensors")
    target = inspector.open(tmp_path / "tgt.pt")

    def value(ckpt: inspector.Checkpoint) -> ViewValue:
        return ViewValue(ckpt, ckpt["w"].storage, View.of(ckpt["w"]))

    assert a["w"].storage.key == b["w"].storage.key
    with pytest.raises(PlanError, match="tied"):
        build_output(target, {"emb.weight": value(a), "head.weight": value(b)})
    out = build_output(target, {"emb.weight": value(a), "head.weight": value(a)})
    assert out.tensors["emb.weight"].storage is out.tensors["head.weight"].storage
