"""`ckpt check --plan` checks every row against its own source: one file per source of the plan
(in its order or as LABEL=PATH, or the paths the plan records), each bound by its label and its
header fingerprint. Through the real CLI in a subprocess."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from subproc import child_env
from subproc import ckpt as subprocess_ckpt

MODULES = {  # module -> (tensor names under it, width)
    "encoder": ([f"layers.{i}.fc.weight" for i in range(3)], 8),
    "decoder": (["prediction.embed.weight", "prediction.lstm.weight"], 6),
    "joint": (["joint_net.2.weight", "enc.weight"], 4),
}


def ckpt(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess_ckpt(*args, env=child_env(NO_COLOR="1"), cwd=cwd, timeout=120, check=False)


def _module(name: str, seed: int, extra: int = 0) -> dict[str, torch.Tensor]:
    """One module's tensors under its full names; `extra` adds a tensor (another header)."""
    torch.manual_seed(seed)
    names, d = MODULES[name]
    out = {f"{name}.{n}": torch.randn(d, d) for n in names}
    if extra:
        out[f"{name}.extra.weight"] = torch.randn(extra)
    return out


@pytest.fixture
def three(tmp_path: Path) -> Path:
    """enc.safetensors, dec.safetensors, joint.safetensors (one module each), the whole-model
    target, and an approved plan taking each module from its own file."""
    for name, file in [("encoder", "enc"), ("decoder", "dec"), ("joint", "joint")]:
        save_file(_module(name, 1), tmp_path / f"{file}.safetensors")
    target = {k: v for m in MODULES for k, v in _module(m, 2).items()}
    save_file(target, tmp_path / "target.safetensors")
    files = ["enc.safetensors", "dec.safetensors", "joint.safetensors", "target.safetensors"]
    made = ckpt("map", *files, "-o", "plan.yaml", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    assert ckpt("plan", "approve", "plan.yaml", "*", cwd=tmp_path).returncode == 0
    return tmp_path


def _findings(r: subprocess.CompletedProcess[str]) -> list[dict[str, str]]:
    findings: list[dict[str, str]] = json.loads(r.stdout)["findings"]
    return findings


def test_three_sources_each_row_checked_against_its_own(three: Path) -> None:
    args = ("check", "--plan", "plan.yaml", "--against", "target.safetensors")
    ok = ckpt(*args, "enc.safetensors", "dec.safetensors", "joint.safetensors", cwd=three)
    assert ok.returncode == 0, (ok.stdout, ok.stderr)
    assert "(7 tensors examined)" in ok.stdout
    # the files the plan records, and the target it records: nothing to name
    assert ckpt("check", "--plan", "plan.yaml", cwd=three).returncode == 0
    # by label, in any order
    labelled = ckpt(*args, "joint.safetensors=joint.safetensors", "enc.safetensors",
                    "dec.safetensors", cwd=three)
    assert labelled.returncode == 0, labelled.stderr


def test_swapped_sources_fail_naming_label_and_file(three: Path) -> None:
    r = ckpt("check", "--plan", "plan.yaml", "--against", "target.safetensors",
             "dec.safetensors", "enc.safetensors", "joint.safetensors", "--format", "json",
             cwd=three)
    assert r.returncode == 1, r.stderr
    mismatch = [f for f in _findings(r) if f["code"] == "plan-source-mismatch"]
    assert {(f["file"], f["details"]["label"]) for f in mismatch} == {  # type: ignore[index]
        ("dec.safetensors", "enc.safetensors"),
        ("enc.safetensors", "dec.safetensors"),
    }
    assert all("header fingerprint" in f["message"] for f in mismatch)
    missing = [f for f in _findings(r) if f["code"] == "plan-source-missing"]
    assert {f["message"].rpartition("(")[2] for f in missing} == {
        "the plan's source 'enc.safetensors')", "the plan's source 'dec.safetensors')"}


def test_a_different_file_with_fitting_rows_still_fails(three: Path) -> None:
    """Before: only the rows' names and shapes were looked at, so any file holding an encoder of
    the same shapes passed. The plan's fingerprint binds the file to its label."""
    save_file(_module("encoder", 5, extra=3), three / "other_enc.safetensors")
    r = ckpt("check", "--plan", "plan.yaml", "other_enc.safetensors", "dec.safetensors",
             "joint.safetensors", cwd=three)
    assert r.returncode == 1
    assert "other_enc.safetensors" in r.stdout
    assert "'enc.safetensors'" in r.stdout
    assert "plan-source-mismatch" in r.stdout


@pytest.mark.parametrize(
    ("given", "message"),
    [
        (["enc.safetensors"], "3 source(s) (enc.safetensors, dec.safetensors, joint.safetensors); "
                              "1 given: give one per source in the plan's order, or LABEL=PATH"),
        (["joint.safetensors=joint.safetensors", "enc.safetensors"],
         "1 given for the 2 not named (enc.safetensors, dec.safetensors)"),
        (["nope.safetensors=enc.safetensors"], "'nope.safetensors': no source of the plan"),
        (["gone.safetensors", "dec.safetensors", "joint.safetensors"],
         "'enc.safetensors': gone.safetensors: no such file"),
    ],
)
def test_source_errors_exit_2_naming_the_label(three: Path, given: list[str],
                                               message: str) -> None:
    r = ckpt("check", "--plan", "plan.yaml", *given, cwd=three)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert message in r.stderr


def test_missing_recorded_source_names_its_label(three: Path) -> None:
    (three / "dec.safetensors").unlink()
    r = ckpt("check", "--plan", "plan.yaml", cwd=three)
    assert r.returncode == 2
    assert "'dec.safetensors': " in r.stderr
    assert "no such file" in r.stderr


def test_two_sources_with_prefixes(tmp_path: Path) -> None:
    """Per-module files (names without the module's prefix), bound as PREFIX=FILE by `ckpt map`:
    each row is looked up in its own file under its own name."""
    enc = {k.removeprefix("encoder."): v for k, v in _module("encoder", 1).items()}
    save_file(enc, tmp_path / "enc.safetensors")
    rest = {**_module("decoder", 1), **_module("joint", 1)}
    save_file(rest, tmp_path / "rest.safetensors")
    target = {k: v for m in MODULES for k, v in _module(m, 2).items()}
    save_file(target, tmp_path / "t.safetensors")
    made = ckpt("map", "encoder.=enc.safetensors", "rest.safetensors", "t.safetensors",
                "-o", "plan.yaml", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    assert ckpt("plan", "approve", "plan.yaml", "*", cwd=tmp_path).returncode == 0
    ok = ckpt("check", "--plan", "plan.yaml", "enc.safetensors", "rest.safetensors",
              "--against", "t.safetensors", cwd=tmp_path)
    assert ok.returncode == 0, (ok.stdout, ok.stderr)
    swapped = ckpt("check", "--plan", "plan.yaml", "rest.safetensors", "enc.safetensors",
                   cwd=tmp_path)
    assert swapped.returncode == 1
    assert "given for the plan's source 'enc.safetensors'" in swapped.stdout


def test_report_never_written_over_a_source_the_plan_records(three: Path) -> None:
    before = (three / "enc.safetensors").read_bytes()
    r = ckpt("check", "--plan", "plan.yaml", "-o", "enc.safetensors", cwd=three)
    assert r.returncode == 2
    assert "enc.safetensors" in r.stderr
    assert (three / "enc.safetensors").read_bytes() == before
