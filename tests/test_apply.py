"""apply(): patch in place or rewrite, verification, the transfer report, refusals."""

from __future__ import annotations

import dataclasses
import io
import shutil
import tarfile
import zipfile
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

import inspector
from inspector.applying import apply
from inspector.errors import PlanError, WriteError
from inspector.mapping import propose
from inspector.mapping.plan import Plan
from inspector.mapping.transforms import Cast

NEMO = Path(__file__).parent / "data" / "conformer_ctc_bpe_small.nemo"


def _model() -> torch.nn.Module:
    return torch.nn.ModuleDict({
        "encoder": torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Linear(16, 8)),
        "decoder": torch.nn.Linear(8, 5),
    })


def _pair(tmp_path: Path) -> tuple[Path, Path, dict, dict]:
    torch.manual_seed(0)
    src, tgt = _model().state_dict(), _model().state_dict()
    torch.save(src, tmp_path / "src.pt")
    torch.save({"state_dict": tgt, "epoch": 7}, tmp_path / "tgt.pt")
    return tmp_path / "src.pt", tmp_path / "tgt.pt", src, tgt


def _encoder_plan(tmp_path: Path) -> tuple[Plan, dict, dict]:
    src_path, tgt_path, src, tgt = _pair(tmp_path)
    plan = propose(src_path, tgt_path)
    plan.approve(plan.under("encoder"))
    plan.reject(plan.under("decoder"))
    return plan, src, tgt


def test_same_layout_is_patched_in_place_and_verified(tmp_path: Path) -> None:
    plan, src, tgt = _encoder_plan(tmp_path)
    out = tmp_path / "out.pt"
    report = apply(plan, out)
    assert report.mode == "patch"
    assert report.verification is not None
    assert report.verification.ok
    assert report.verification.replaced_ok == 4
    assert zipfile.ZipFile(out).testzip() is None  # every patched record's CRC was rewritten
    got = torch.load(out, weights_only=True)
    assert got["epoch"] == 7
    for k in src:
        want = src[k] if k.startswith("encoder") else tgt[k]
        assert torch.equal(got["state_dict"][k], want), k


def test_report_rows(tmp_path: Path) -> None:
    plan, _, _ = _encoder_plan(tmp_path)
    report = apply(plan, tmp_path / "out.pt")
    assert [r.target for r in report.loaded] == list(plan.under("encoder"))
    assert {r.target for r in report.skipped} == {"decoder.weight", "decoder.bias"}
    assert all(r.reason.startswith("rejected") for r in report.skipped)
    assert report.module_percent("encoder") == 100.0
    assert report.module_percent("decoder") == 0.0
    assert report.params_loaded == 8 * 16 + 16 + 16 * 8 + 8
    text, data = report.to_text(), report.to_dict()
    assert "verified: OK" in text
    assert data["verification"]["ok"] is True
    assert data["modules"]["encoder"]["percent"] == 100.0


def test_cast_changes_layout_and_rewrites(tmp_path: Path) -> None:
    plan, src, _ = _encoder_plan(tmp_path)
    name = "encoder.0.weight"
    plan.entries[name] = dataclasses.replace(
        plan.entries[name], transform=(Cast("bfloat16"),))
    out = tmp_path / "out.pt"
    report = apply(plan, out)
    assert report.mode == "rewrite"
    assert report.verification is not None
    assert report.verification.ok
    got = torch.load(out, weights_only=True)["state_dict"][name]
    assert got.dtype == torch.bfloat16
    assert torch.equal(got, src[name].to(torch.bfloat16))


def test_convert_to_safetensors(tmp_path: Path) -> None:
    plan, src, tgt = _encoder_plan(tmp_path)
    out = tmp_path / "out.safetensors"
    report = apply(plan, out)
    assert report.format == "safetensors"
    with safe_open(out, "pt") as f:
        for k in f.keys():  # noqa: SIM118 - safe_open has no __iter__
            want = src[k] if k.startswith("encoder") else tgt[k]
            assert torch.equal(f.get_tensor(k), want)


def test_proposed_rows_are_refused_with_their_names(tmp_path: Path) -> None:
    src_path, tgt_path, _, _ = _pair(tmp_path)
    plan = propose(src_path, tgt_path)
    out = tmp_path / "out.pt"
    with pytest.raises(PlanError, match=r"still proposed.*encoder\.0\.weight"):
        apply(plan, out)
    assert not out.exists()
    report = apply(plan, out, accept_proposed=True)
    assert len(report.accepted_without_review) == len(report.loaded) > 0
    assert "accepted without review" in report.to_text()


def test_fingerprint_mismatch_needs_force(tmp_path: Path) -> None:
    plan, _, _ = _encoder_plan(tmp_path)
    torch.save({"state_dict": {**_model().state_dict(), "extra": torch.ones(1)}, "epoch": 7},
               tmp_path / "tgt.pt")
    with pytest.raises(PlanError, match="fingerprint"):
        apply(plan, tmp_path / "out.pt")
    report = apply(plan, tmp_path / "out.pt", force=True)
    assert any("fingerprint" in n for n in report.notes)


def test_refuses_to_overwrite_an_input(tmp_path: Path) -> None:
    plan, _, _ = _encoder_plan(tmp_path)
    target = tmp_path / "tgt.pt"
    before = target.read_bytes()
    with pytest.raises(WriteError, match="refusing to overwrite an input"):
        apply(plan, target)
    link = tmp_path / "link.pt"
    link.symlink_to(target)
    with pytest.raises(WriteError, match="refusing to overwrite an input"):
        apply(plan, link)
    assert target.read_bytes() == before


def test_tied_target_twin_follows(tmp_path: Path) -> None:
    torch.manual_seed(1)
    w_src, w_tgt = torch.randn(4, 3), torch.randn(4, 3)
    torch.save({"emb.weight": w_src}, tmp_path / "src.pt")
    torch.save({"emb.weight": w_tgt, "head.weight": w_tgt}, tmp_path / "tgt.pt")
    plan = propose(tmp_path / "src.pt", tmp_path / "tgt.pt")
    plan.approve(["emb.weight"])
    plan.reject(["head.weight"])
    out = tmp_path / "out.pt"
    report = apply(plan, out, format="torch-zip")
    got = torch.load(out, weights_only=True)
    assert got["head.weight"].data_ptr() == got["emb.weight"].data_ptr()
    assert torch.equal(got["head.weight"], w_src)
    assert report.verification is not None
    assert report.verification.ok


def _nemo_plan(tmp_path: Path, nemo: Path) -> tuple[Plan, dict]:
    with tarfile.open(nemo) as tar:
        f = tar.extractfile("./model_weights.ckpt")
        assert f is not None
        state = torch.load(io.BytesIO(f.read()), weights_only=True)
    src = {k: v + 1 if v.is_floating_point() else v for k, v in state.items()}
    torch.save(src, tmp_path / "src.pt")
    plan = propose(tmp_path / "src.pt", nemo)
    plan.approve(plan.under("encoder"))
    plan.reject([n for n in plan.entries if not n.startswith("encoder")])
    return plan, src


def test_nemo_patch_keeps_other_members_and_offsets(tmp_path: Path) -> None:
    nemo = tmp_path / "tgt.nemo"
    shutil.copy(NEMO, nemo)
    plan, src = _nemo_plan(tmp_path, nemo)
    out = tmp_path / "out.nemo"
    report = apply(plan, out)
    assert report.mode == "patch"
    a, b = nemo.read_bytes(), out.read_bytes()
    assert len(a) == len(b)
    weights = inspector.open(nemo).metadata["weights"]
    lo, hi = weights["offset"], weights["offset"] + weights["size"]
    assert a[:lo] == b[:lo]  # config, tokenizer, headers: untouched bytes
    assert a[hi:] == b[hi:]
    with tarfile.open(out) as tar:
        f = tar.extractfile("./model_weights.ckpt")
        assert f is not None
        raw = f.read()
    assert zipfile.ZipFile(io.BytesIO(raw)).testzip() is None
    got = torch.load(io.BytesIO(raw), weights_only=True)
    for k in plan.under("encoder"):
        assert torch.equal(got[k], src[k])


def test_nemo_tar_gz_target_written_uncompressed(tmp_path: Path) -> None:
    gz = tmp_path / "old.nemo"
    with tarfile.open(NEMO) as a, tarfile.open(gz, "w:gz") as b:
        for m in a.getmembers():
            f = a.extractfile(m) if m.isfile() else None
            b.addfile(m, io.BytesIO(f.read()) if f is not None else None)
    plan, _ = _nemo_plan(tmp_path, gz)
    out = tmp_path / "out.nemo"
    report = apply(plan, out)
    assert report.verification is not None
    assert report.verification.ok
    assert out.read_bytes()[:2] != b"\x1f\x8b"
    with tarfile.open(out, "r:") as tar:
        assert "./model_config.yaml" in tar.getnames()


def _sparse_safetensors(path: Path, hole: int, tensors: dict[str, torch.Tensor]) -> None:
    """A safetensors file whose first tensor ("pad", uint8) is a `hole`-byte hole: the others
    lie past it, at offsets no small test could reach by writing bytes."""
    import json
    import struct

    header: dict[str, object] = {"pad": {"dtype": "U8", "shape": [hole], "data_offsets": [0, hole]}}
    pos, blobs = hole, []
    for name, t in tensors.items():
        raw = t.contiguous().numpy().tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape),
                        "data_offsets": [pos, pos + len(raw)]}
        blobs.append((pos, raw))
        pos += len(raw)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text)
        start = f.tell()
        for off, raw in blobs:
            f.seek(start + off)
            f.write(raw)


@pytest.mark.parametrize("out_name", ["out.safetensors", "out.pt"])
def test_source_bytes_past_4_gib(tmp_path: Path, out_name: str) -> None:
    # Regression guard for multi-GB checkpoints: source tensors at file offsets past 2**31 and
    # 2**32 (a sparse file, so nothing big is written) are copied in the kernel and hashed from
    # maps at those offsets, patched in place (safetensors) or rewritten (.pt).
    from safetensors.torch import save_file

    torch.manual_seed(0)
    want = {"a.weight": torch.randn(64, 32), "b.weight": torch.randn(1000)}
    _sparse_safetensors(tmp_path / "src.safetensors", 2**32 + 4096 + 12, want)
    save_file({k: torch.zeros_like(v) for k, v in want.items()}, tmp_path / "tgt.safetensors")
    plan = propose(tmp_path / "src.safetensors", tmp_path / "tgt.safetensors")
    plan.approve([n for n in plan.entries if n in want])
    report = apply(plan, tmp_path / out_name)
    assert report.verification is not None
    assert report.verification.replaced_ok == 2
    assert report.mode == ("patch" if out_name.endswith(".safetensors") else "rewrite")
    if out_name.endswith(".pt"):
        got = torch.load(tmp_path / out_name, weights_only=True)
        assert zipfile.ZipFile(tmp_path / out_name).testzip() is None
    else:
        with safe_open(str(tmp_path / out_name), "pt") as f:
            got = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (not iterable)
    for k, v in want.items():
        assert torch.equal(got[k], v), k


class _Payload:
    """Pickles as `os.system("true")`: a code-execution payload stored next to the weights."""

    def __reduce__(self) -> tuple[object, tuple[str]]:
        import os

        return os.system, ("true",)


def _payload_plan(tmp_path: Path) -> Plan:
    import argparse

    src_path, _, _, tgt = _pair(tmp_path)
    torch.save({"state_dict": tgt, "epoch": 7, "hook": {"on_load": _Payload()},
                "args": argparse.Namespace(lr=0.1)}, tmp_path / "tgt.pt")
    plan = propose(src_path, tmp_path / "tgt.pt")
    plan.approve(plan.under("encoder"))
    plan.reject(plan.under("decoder"))
    return plan


def _with_cast(plan: Plan) -> Plan:
    """The same plan with one row cast to bfloat16: the layout changes, so apply rewrites."""
    e = plan.entries["encoder.0.weight"]
    plan.entries[e.target] = dataclasses.replace(e, transform=(Cast("bfloat16"),))
    return plan


@pytest.mark.parametrize("mode", ["patch", "rewrite", "nemo-rewrite"])
def test_unknown_global_in_target_is_refused(tmp_path: Path, mode: str) -> None:
    """Patch (data.pkl copied verbatim) and rewrite (re-pickled) alike: a target holding a call
    the safe reader did not recognise as data is refused, naming the key and the global, and
    nothing appears at the destination."""
    plan = _payload_plan(tmp_path)
    plan = _with_cast(plan) if mode == "rewrite" else plan
    out = tmp_path / ("out.nemo" if mode == "nemo-rewrite" else "out.pt")
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(WriteError, match=r"hook\.on_load: posix\.system.*--keep-unknown-globals"):
        apply(plan, out)
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no output, no temp


@pytest.mark.parametrize("mode", ["patch", "rewrite"])
def test_unknown_global_kept_on_request_and_reported(tmp_path: Path, mode: str) -> None:
    plan = _payload_plan(tmp_path)
    plan = _with_cast(plan) if mode == "rewrite" else plan
    out = tmp_path / "out.pt"
    report = apply(plan, out, keep_unknown_globals=True)
    assert report.mode == mode
    assert report.unknown_globals == [
        "hook.on_load: posix.system (a call the safe reader did not recognise as data; "
        "dangerous: operating-system calls)"]
    text = report.to_text()
    assert "WARNING: 1 global(s) that are not data were kept" in text
    assert "hook.on_load: posix.system" in text
    assert report.to_dict()["unknown_globals"] == report.unknown_globals
    # The output carries the call as the target does (read safely, never loaded with torch)...
    written = inspector.open(out)
    from inspector.writers.foreign_globals import find_unknown_globals

    assert [g.name for g in find_unknown_globals(written.tree)] == ["posix.system"]
    with pytest.raises(Exception, match=r"posix\.system"):
        torch.load(out, weights_only=True)
    # The state-only Namespace is data, written as torch wrote it (test_writers); weights_only=True
    # refuses that class in the target and the output alike, which the report says.
    assert any("argparse.Namespace at args" in n and "weights_only=True" in n
               for n in report.notes)


def test_safetensors_output_of_a_target_with_a_payload_is_not_refused(tmp_path: Path) -> None:
    """safetensors holds tensors only: nothing of the target's pickle reaches it."""
    plan = _payload_plan(tmp_path)
    report = apply(plan, tmp_path / "out.safetensors")
    assert report.unknown_globals == []
    assert report.verification is not None
    assert report.verification.ok


def test_output_over_the_plan_file_is_refused(tmp_path: Path) -> None:
    plan, _, _ = _encoder_plan(tmp_path)
    plan.save(tmp_path / "plan.pt")
    before = (tmp_path / "plan.pt").read_bytes()
    with pytest.raises(WriteError, match="refusing to overwrite an input"):
        apply(tmp_path / "plan.pt", tmp_path / "plan.pt")
    assert (tmp_path / "plan.pt").read_bytes() == before


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])  # patched in place / rewritten
def test_an_output_corrupted_before_verification_is_refused_and_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, suffix: str
) -> None:
    """One byte of a copied tensor flipped in the written temp, between the writer and the
    verification: apply must notice, say so, and leave nothing at the destination."""
    from inspector import applying

    plan, _, _ = _encoder_plan(tmp_path)
    real_verify = applying.verify

    def corrupt_then_verify(path: Path, *args: object, **kwargs: object) -> object:
        with inspector.open(path) as written:
            t = written["encoder.0.weight"]
        src = t.storage.source
        assert src.path is not None
        assert not src.compression
        at = src.offset + t.storage_offset * 4
        with open(src.path, "r+b") as f:
            f.seek(at)
            byte = f.read(1)[0]
            f.seek(at)
            f.write(bytes([byte ^ 0x40]))
        return real_verify(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(applying, "verify", corrupt_then_verify)
    out = tmp_path / f"out{suffix}"
    with pytest.raises(WriteError, match=r"verification failed, nothing written: "
                                         r"encoder\.0\.weight: digest ckh1:"):
        apply(plan, out)
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src.pt", "tgt.pt"]
