"""Tensor names that cannot be encoded (a lone surrogate) are refused at read, in every format,
naming the file that holds them: never a UnicodeEncodeError later, never the other file blamed."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import torch
from subproc import ckpt

import inspector
from inspector.errors import HeaderError

BAD = "encoder.\ud800.weight"


def _safetensors(path: Path, name: str) -> Path:
    header = json.dumps({name: {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}).encode()
    path.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 4)
    return path


def _torch(path: Path, name: str) -> Path:
    torch.save({name: torch.zeros(1)}, path)
    return path


@pytest.fixture(params=["safetensors", "torch"])
def files(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Path, Path]:
    make = _safetensors if request.param == "safetensors" else _torch
    suffix = ".safetensors" if request.param == "safetensors" else ".pt"
    good = make(tmp_path / f"good{suffix}", "encoder.x.weight")
    return good, make(tmp_path / f"bad{suffix}", BAD)


def test_open_refuses_the_name(files: tuple[Path, Path]) -> None:
    with pytest.raises(HeaderError, match=r"bad\..*not valid Unicode"):
        inspector.open(files[1])


@pytest.mark.parametrize("command", [["ls"], ["ls", "--json"], ["hash"], ["diff", "GOOD"],
                                     ["diff", "GOOD", "--no-values"]])
def test_every_command_names_the_bad_file(files: tuple[Path, Path], command: list[str]) -> None:
    good, bad = files
    args = [str(good) if a == "GOOD" else a for a in command]
    out = ckpt(*args, bad)
    assert out.returncode == 2
    assert str(bad) in out.stderr
    assert "not valid Unicode" in out.stderr
    assert "Traceback" not in out.stderr
