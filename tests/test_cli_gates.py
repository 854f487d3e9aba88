"""`ckpt check` and `ckpt scan` end to end through the real CLI in a subprocess, every format."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest
import torch
from subproc import child_env
from subproc import ckpt as subprocess_ckpt
from test_findings_formats import SCHEMA, validate

REPO = Path(__file__).resolve().parent.parent


def ckpt(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = child_env(NO_COLOR="1")  # outputs compared as text
    return subprocess_ckpt(
        *args,
        env=env,
        cwd=cwd,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("gates")
    sd = {f"encoder.layers.{i}.w": torch.zeros(4, 4) for i in range(6)}
    torch.save(sd, d / "ref.pt")
    torch.save({k: torch.zeros(4, 8) for k in sd}, d / "wide.pt")
    torch.save({"model": sd, "hook": _Evil()}, d / "evil.pt")
    return {"ref": d / "ref.pt", "wide": d / "wide.pt", "evil": d / "evil.pt", "dir": d}


class _Evil:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, ("true",)


@pytest.mark.parametrize("fmt", ["text", "json", "junit", "github", "markdown"])
def test_check_formats(files: dict[str, Path], fmt: str) -> None:
    if fmt in ("json", "junit"):  # the passing form of the structured formats (each run ~1 s)
        ok = ckpt("check", files["ref"], "--against", files["ref"], "--format", fmt)
        assert ok.returncode == 0, ok.stderr
        _validate(fmt, ok.stdout, passed=True)
    bad = ckpt("check", files["wide"], "--against", files["ref"], "--format", fmt)
    assert bad.returncode == 1, bad.stderr
    _validate(fmt, bad.stdout, passed=False)
    if fmt in ("text", "github", "markdown"):
        assert "encoder.layers.{0..5}.w" in bad.stdout


@pytest.mark.parametrize("fmt", ["text", "json", "junit", "github", "markdown"])
def test_scan_formats(files: dict[str, Path], fmt: str) -> None:
    if fmt in ("json", "junit"):  # the passing form of the structured formats (each run ~1 s)
        ok = ckpt("scan", files["ref"], "--format", fmt)
        assert ok.returncode == 0, ok.stderr
        _validate(fmt, ok.stdout, passed=True)
    bad = ckpt("scan", files["evil"], files["ref"], "--format", fmt)
    assert bad.returncode == 1, bad.stderr
    _validate(fmt, bad.stdout, passed=False)
    assert "system" in bad.stdout  # os.system is pickled as posix.system


def _validate(fmt: str, out: str, *, passed: bool) -> None:
    if fmt == "json":
        doc = json.loads(out)
        validate(doc, SCHEMA)
        assert doc["passed"] is passed
    elif fmt == "junit":
        suite = ET.fromstring(out).find("testsuite")
        assert suite is not None
        assert (suite.get("failures") == "0") is passed
    elif fmt == "github":
        annotations = [line for line in out.splitlines() if line.startswith("::")]
        assert bool(annotations) is not passed
        assert all(line.startswith("::error file=") for line in annotations)
    elif fmt == "markdown":
        assert out.startswith(f"### ckpt {'check' if 'check' in out.split()[2] else 'scan'}")
        assert ("| severity | code | file | key | message |" in out) is not passed
    else:
        assert ("passed" if passed else "FAILED") in out.splitlines()[-1]


def test_manifest_from_ls_gates_check(files: dict[str, Path]) -> None:
    ls = ckpt("ls", files["ref"], "--manifest")
    assert ls.returncode == 0, ls.stderr
    manifest = files["dir"] / "shapes.yaml"
    manifest.write_text(ls.stdout)
    assert ckpt("check", files["ref"], "--manifest", manifest).returncode == 0
    bad = ckpt("check", files["wide"], "--manifest", manifest, "--format", "json")
    assert bad.returncode == 1
    assert json.loads(bad.stdout)["summary"]["error"] == 6


def test_model_factory_cli(files: dict[str, Path]) -> None:
    (files["dir"] / "cli_factory_mod.py").write_text(
        "import torch\n"
        "def build():\n"
        "    m = torch.nn.Module()\n"
        "    m.encoder = torch.nn.Module()\n"
        "    layers = (torch.nn.Linear(4, 4, bias=False) for _ in range(6))\n"
        "    m.encoder.layers = torch.nn.ModuleList(layers)\n"
        "    return m\n"
    )
    r = ckpt(
        "check", "--model", "cli_factory_mod:build", "--against", files["ref"], cwd=files["dir"]
    )
    # Linear(4, 4).weight is [4, 4] as in ref.pt, but named layers.N.weight, not layers.N.w
    assert r.returncode == 1, r.stderr
    assert "encoder.layers.{0..5}.weight" in r.stdout


def test_output_file_and_strict(files: dict[str, Path], tmp_path: Path) -> None:
    unknown = tmp_path / "unknown.pkl"
    unknown.write_bytes(b"comegaconf.dictconfig\nDictConfig\n)R.")
    assert ckpt("scan", unknown).returncode == 0
    out = tmp_path / "report.xml"
    r = ckpt("scan", unknown, "--strict", "--format", "junit", "--output", out)
    assert r.returncode == 1
    assert ET.parse(out).getroot().tag == "testsuites"
    assert "FAILED" in r.stdout


@pytest.mark.parametrize(
    "args",
    [
        ("check", "missing.pt", "--against", "missing.pt"),
        ("check", "--against", "x.pt"),
        ("check", "a.pt"),
        ("check", "a.pt", "--manifest", "m.yaml", "--plan", "p.yaml"),
        ("scan", "no/such/file.pt"),
        ("scan", "x.pt", "--format", "yaml"),
    ],
)
def test_usage_and_input_errors_exit_2(args: tuple[str, ...], tmp_path: Path) -> None:
    r = ckpt(*args, cwd=tmp_path)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert r.stderr.strip()


def _aliases(target: Path, tmp_path: Path) -> list[Path]:
    """`target` itself and two other names for it: a symlink and a hard link."""
    sym, hard = tmp_path / "sym.pt", tmp_path / "hard.pt"
    sym.symlink_to(target)
    os.link(target, hard)
    return [target, sym, hard]


@pytest.mark.parametrize("command", ["scan", "check-checkpoint", "check-against", "check-manifest"])
def test_output_over_an_input_is_refused(files: dict[str, Path], tmp_path: Path,
                                         command: str) -> None:
    """`-o` naming an input (or a link to it) exits 2 naming the file; the input is unchanged."""
    victim = tmp_path / "victim.pt"
    victim.write_bytes(files["ref"].read_bytes())
    manifest = tmp_path / "shapes.yaml"
    manifest.write_text(ckpt("ls", files["ref"], "--manifest").stdout)
    guarded = manifest if command == "check-manifest" else victim
    before = guarded.read_bytes()
    args = {
        "scan": ("scan", victim),
        "check-checkpoint": ("check", victim, "--against", files["ref"]),
        "check-against": ("check", files["ref"], "--against", victim),
        "check-manifest": ("check", files["ref"], "--manifest", manifest),
    }[command]
    for alias in [guarded] if command == "check-manifest" else _aliases(victim, tmp_path):
        r = ckpt(*args, "--format", "json", "-o", alias)
        assert r.returncode == 2, (r.stdout, r.stderr)
        assert str(alias) in r.stderr
        assert "refusing to overwrite an input" in r.stderr
        assert guarded.read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp left


def test_output_report_is_written_atomically_over_an_old_one(files: dict[str, Path],
                                                             tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    out.write_text("old")
    r = ckpt("scan", files["ref"], "--format", "json", "-o", out)
    assert r.returncode == 0, r.stderr
    validate(json.loads(out.read_text()), SCHEMA)
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


@pytest.mark.parametrize("fmt", ["junit", "markdown", "github", "json", "text"])
@pytest.mark.parametrize("command", ["check", "scan"])
def test_input_error_still_writes_the_report(files: dict[str, Path], tmp_path: Path,
                                             command: str, fmt: str) -> None:
    """A CI step that uploads the report (`if: always()`) finds one naming the file and the
    problem, while the command still exits 2 with the error on stderr."""
    if command == "scan":  # a broken file is a scan finding; a missing one stops the scan
        bad = tmp_path / "absent.pt"
        args: tuple[str | Path, ...] = ("scan", bad)
        problem = "no such file or folder"
    else:
        bad = tmp_path / "broken.pt"
        bad.write_bytes(files["ref"].read_bytes()[:300])
        args = ("check", bad, "--against", files["ref"])
        problem = "no end-of-central-directory record"
    out = tmp_path / f"report.{fmt}"
    r = ckpt(*args, "--format", fmt, "-o", out)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert r.stderr.startswith(f"ckpt {command}: error: {bad}")
    text = out.read_text()
    assert "input-error" in text
    assert str(bad) in text
    assert problem in text
    if fmt == "junit":
        (case,) = ET.fromstring(text).iter("testcase")
        failure = case.find("failure")
        assert failure is not None
        assert failure.get("type") == "input-error"
        assert problem in (failure.get("message") or "")
    if fmt == "json":
        doc = json.loads(text)
        validate(doc, SCHEMA)
        assert doc["exit_code"] == 2
        assert doc["findings"][0]["file"] == str(bad)


def test_input_error_report_to_stdout_in_machine_formats(tmp_path: Path) -> None:
    r = ckpt("scan", tmp_path / "absent.pt", "--format", "github")
    assert r.returncode == 2
    assert r.stdout.startswith(f"::error file={tmp_path / 'absent.pt'},title=input-error::")
    r = ckpt("scan", tmp_path / "absent.pt")  # text: the error on stderr only
    assert r.returncode == 2
    assert r.stdout == ""
