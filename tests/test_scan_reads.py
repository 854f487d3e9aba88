"""`ckpt scan` never passes what the readers refuse: a checkpoint that `ckpt ls` cannot read is an
error finding; an empty folder is not a pass under --strict; any folder depth is walked."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import torch
from safetensors_cases import CASES
from subproc import ckpt

import inspector
from inspector.errors import CheckpointError
from inspector.scanning import scan


def _refused_by_ls(path: Path) -> None:
    with pytest.raises(CheckpointError):
        inspector.open(path)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_every_safetensors_file_the_readers_refuse_fails_the_scan(tmp_path: Path, case) -> None:
    path = case.make(tmp_path)
    _refused_by_ls(path)
    result = scan(path)
    assert not result.passed, (case.id, result.findings)
    assert result.exit_code == 1


def _shard(folder: Path, name: str, tensors: dict[str, torch.Tensor]) -> None:
    import safetensors.torch

    safetensors.torch.save_file(tensors, folder / name)


def test_a_broken_sharded_index_fails_the_scan(tmp_path: Path) -> None:
    folder = tmp_path / "hf"
    folder.mkdir()
    _shard(folder, "s1.safetensors", {"a": torch.zeros(2)})
    index = {"metadata": {}, "weight_map": {"a": "s1.safetensors", "ghost": "s1.safetensors"}}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    _refused_by_ls(folder)
    result = scan(folder)
    assert "unreadable" in {f.code for f in result.findings}
    assert result.exit_code == 1


def test_a_truncated_distcp_fails_the_scan(tmp_path: Path) -> None:
    import warnings

    import torch.distributed.checkpoint as dcp

    folder = tmp_path / "dcp"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        dcp.save({"w": torch.ones(64, 64)}, checkpoint_id=str(folder), no_dist=True)
    (data,) = folder.glob("*.distcp")
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
    result = scan(folder)
    assert "unreadable" in {f.code for f in result.findings}, result.findings
    assert result.exit_code == 1


def test_a_legacy_storage_past_the_end_fails_the_scan(tmp_path: Path) -> None:
    path = tmp_path / "legacy.pt"
    torch.save({"w": torch.arange(100.0)}, path, _use_new_zipfile_serialization=False)
    path.write_bytes(path.read_bytes()[:-40])
    _refused_by_ls(path)
    assert scan(path).exit_code == 1


def test_a_surrogate_name_fails_the_scan(tmp_path: Path) -> None:
    header = json.dumps({"a\ud800": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}})
    path = tmp_path / "s.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header.encode() + b"\0" * 4)
    result = scan(path)
    assert result.exit_code == 1
    assert any("not valid Unicode" in f.message for f in result.findings)


def test_readable_checkpoints_in_a_folder_still_pass(tmp_path: Path) -> None:
    torch.save({"w": torch.zeros(2)}, tmp_path / "a.pt")
    _shard(tmp_path, "b.safetensors", {"w": torch.zeros(2)})
    (tmp_path / "README.md").write_text("not a checkpoint")
    assert scan(tmp_path).passed


def test_an_empty_folder_is_not_a_pass_under_strict(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert scan(empty).passed  # a warning ...
    assert not scan(empty, strict=True).passed  # ... that fails under --strict
    out = ckpt("scan", "--strict", empty)
    assert out.returncode == 1


def test_deeply_nested_folders_are_walked(tmp_path: Path) -> None:
    deep = here = tmp_path / "top"
    deep.mkdir()
    for _ in range(1000):  # one level at a time: Path.mkdir(parents=True) recurses
        here = here / "d"
        here.mkdir()
    torch.save({"w": torch.zeros(2)}, here / "m.pt")
    try:
        out = ckpt("scan", deep, timeout=120)
        assert out.returncode == 0, out.stderr[-500:]
        assert "Traceback" not in out.stderr
    finally:  # bottom up: pytest's own clean-up (shutil.rmtree) recurses and cannot
        (here / "m.pt").unlink()
        while here != tmp_path:
            here.rmdir()
            here = here.parent
