"""`ckpt apply`: exit codes 0/1/2, text and JSON reports, scripted --source/--target."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from inspector.cli import main
from inspector.mapping import propose


@pytest.fixture
def files(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 2))
    torch.save(m.state_dict(), tmp_path / "src.pt")
    torch.save(torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 2)).state_dict(),
               tmp_path / "tgt.pt")
    plan = propose(tmp_path / "src.pt", tmp_path / "tgt.pt")
    plan.save(tmp_path / "proposed.yaml")
    plan.approve(list(plan.entries))
    plan.save(tmp_path / "plan.yaml")
    return tmp_path


def test_apply_plan_prints_report(files: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["apply", str(files / "plan.yaml"), "-o", str(files / "out.pt")]) == 0
    assert "verified: OK" in capsys.readouterr().out
    assert (files / "out.pt").exists()


def test_apply_json(files: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["apply", str(files / "plan.yaml"), "-o", str(files / "o.safetensors"),
                 "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["verification"]["ok"] is True
    assert data["format"] == "safetensors"
    assert len(data["loaded"]) == 4


def test_proposed_rows_exit_1(files: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["apply", str(files / "proposed.yaml"), "-o", str(files / "out.pt")]) == 1
    assert "still proposed" in capsys.readouterr().err
    assert not (files / "out.pt").exists()


def test_scripted_source_target(files: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["apply", "--source", str(files / "src.pt"), "--target", str(files / "tgt.pt"),
            "-o", str(files / "out.pt")]
    assert main(args) == 1
    assert main([*args, "--accept-proposed"]) == 0
    assert "accepted without review" in capsys.readouterr().out


def test_errors_exit_2(files: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["apply", str(files / "plan.yaml"), "-o", str(files / "tgt.pt")]) == 2
    assert "refusing to overwrite an input" in capsys.readouterr().err
    assert main(["apply", str(files / "missing.yaml"), "-o", str(files / "x.pt")]) == 2


class _Payload:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        import os

        return os.system, ("true",)


def test_payload_in_target_exit_2_unless_kept(files: Path, capsys: pytest.CaptureFixture[str]
                                              ) -> None:
    sd = torch.load(files / "tgt.pt", weights_only=True)
    torch.save({"model": sd, "hook": _Payload()}, files / "evil.pt")
    args = ["apply", "--source", str(files / "src.pt"), "--target", str(files / "evil.pt"),
            "--accept-proposed", "-o", str(files / "out.pt")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "hook: posix.system" in err
    assert "--keep-unknown-globals" in err
    assert not (files / "out.pt").exists()
    assert main([*args, "--keep-unknown-globals"]) == 0
    out = capsys.readouterr().out
    assert "WARNING: 1 global(s) that are not data were kept" in out
    assert "verified: OK" in out


def test_output_over_the_plan_file_exit_2(files: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = (files / "plan.yaml").read_bytes()
    assert main(["apply", str(files / "plan.yaml"), "-o", str(files / "plan.yaml"),
                 "--format", "torch-zip"]) == 2
    assert "refusing to overwrite an input" in capsys.readouterr().err
    assert (files / "plan.yaml").read_bytes() == before
