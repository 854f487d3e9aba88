from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import torch as safetensors_torch
from subproc import child_env, ckpt

import inspector
from inspector.diffing import CHANGED, DTYPE, IDENTICAL, ONLY_A, ONLY_B, SHAPE, UNCHECKED, diff

REPO = Path(__file__).resolve().parents[1]


def _pair():
    g = torch.Generator().manual_seed(0)
    a = {f"encoder.layers.{i}.w": torch.randn(8, 4, generator=g) for i in range(4)}
    a["decoder.out.weight"] = torch.randn(29, 8, generator=g)
    a["decoder.out.bias"] = torch.zeros(29)
    a["old.only"] = torch.ones(2)
    b = {k: v.clone() for k, v in a.items() if k != "old.only"}
    b["encoder.layers.2.w"] = b["encoder.layers.2.w"] + 0.5
    b["decoder.out.weight"] = torch.randn(1025, 8, generator=g)
    b["decoder.out.bias"] = torch.zeros(29, dtype=torch.float16)
    b["new.only"] = torch.ones(3)
    return a, b


def test_diff_classifies_every_tensor_with_real_files(tmp_path):
    a, b = _pair()
    torch.save(a, tmp_path / "a.pt")
    safetensors_torch.save_file(b, tmp_path / "b.safetensors")
    r = diff(tmp_path / "a.pt", tmp_path / "b.safetensors")
    status = {row.name: row.status for row in r.rows}
    assert status == {
        "encoder.layers.0.w": IDENTICAL,
        "encoder.layers.1.w": IDENTICAL,
        "encoder.layers.2.w": CHANGED,
        "encoder.layers.3.w": IDENTICAL,
        "decoder.out.weight": SHAPE,
        "decoder.out.bias": DTYPE,
        "old.only": ONLY_A,
        "new.only": ONLY_B,
    }
    changed = next(row for row in r.rows if row.status == CHANGED)
    assert changed.comparison is not None
    assert changed.comparison.max_abs_diff == pytest.approx(0.5, rel=1e-6)
    assert changed.comparison.n_diff == 32
    assert not r.equal
    shape_row = next(row for row in r.rows if row.status == SHAPE)
    assert "[29, 8] vs [1025, 8]" in shape_row.reason
    assert r.folded(IDENTICAL) == ["encoder.layers.{0..1,3}.w"]


def test_identical_digests_across_formats_and_layouts(tmp_path):
    a, _ = _pair()
    a["tied"] = a["decoder.out.weight"]  # a view of the same storage
    a["t"] = a["decoder.out.weight"].t()  # strided view
    torch.save(a, tmp_path / "a.pt")
    contiguous = {k: v.contiguous().clone() for k, v in a.items()}
    safetensors_torch.save_file(contiguous, tmp_path / "a.safetensors")
    r = diff(tmp_path / "a.pt", tmp_path / "a.safetensors")
    assert r.equal
    assert {row.status for row in r.rows} == {IDENTICAL}
    assert diff(tmp_path / "a.pt", contiguous).equal  # a state dict in memory too


def test_header_only_diff_reads_no_values(tmp_path):
    a, b = _pair()
    r = diff(a, b, values=False)
    assert {row.status for row in r.rows} >= {UNCHECKED, SHAPE, DTYPE}
    assert all(row.digest_a is None for row in r.rows)


def test_prefix_and_plan_style_mappings_align_names():
    a = {"module.enc.w": np.ones((2, 2), np.float32), "module.head": np.zeros(3, np.float32)}
    b = {"enc.w": np.ones((2, 2), np.float32), "head": np.zeros(3, np.float32)}
    assert diff(a, b, mapping="module.").equal
    assert diff(a, b, mapping={"module.enc.w": "enc.w", "module.head": "head"}).equal
    assert not diff(a, b).equal


def test_many_to_one_mapping_is_a_clear_error():
    a = {"x": np.ones(2, np.float32), "y": np.ones(2, np.float32)}
    with pytest.raises(inspector.CheckpointError, match="one-to-one"):
        diff(a, {"z": np.ones(2, np.float32)}, mapping=lambda n: "z")


def _ckpt(*args: str) -> subprocess.CompletedProcess[str]:
    return ckpt(*args, env=child_env(NO_COLOR="1"))


def test_cli_diff_exit_codes_and_json(tmp_path):
    a, b = _pair()
    torch.save(a, tmp_path / "a.pt")
    torch.save(b, tmp_path / "b.pt")
    same = _ckpt("diff", str(tmp_path / "a.pt"), str(tmp_path / "a.pt"))
    assert same.returncode == 0, same.stderr
    assert "equal" in same.stdout
    different = _ckpt("diff", str(tmp_path / "a.pt"), str(tmp_path / "b.pt"))
    assert different.returncode == 1
    assert "decoder.out.weight  (shape [29, 8] vs [1025, 8])" in different.stdout
    out = _ckpt("diff", "--json", str(tmp_path / "a.pt"), str(tmp_path / "b.pt"))
    doc = json.loads(out.stdout)
    assert doc["equal"] is False
    assert doc["counts"] == {
        "only-a": 1,
        "only-b": 1,
        "shape-mismatch": 1,
        "dtype-mismatch": 1,
        "changed": 1,
        "identical": 3,
    }
    missing = _ckpt("diff", str(tmp_path / "a.pt"), str(tmp_path / "nope.pt"))
    assert missing.returncode == 2
    assert "nope.pt" in missing.stderr


def test_cli_hash_matches_library_and_is_format_independent(tmp_path):
    a, _ = _pair()
    torch.save(a, tmp_path / "a.pt")
    safetensors_torch.save_file(a, tmp_path / "a.safetensors")
    from inspector.hashing import checkpoint_digest, hash_tensors

    expected = str(checkpoint_digest(hash_tensors(inspector.open(tmp_path / "a.pt"))))
    docs = [
        json.loads(_ckpt("hash", "--json", str(tmp_path / n)).stdout)
        for n in ("a.pt", "a.safetensors")
    ]
    assert docs[0]["digest"] == docs[1]["digest"] == expected
    assert expected.startswith("ckh1:")


def test_cli_ls_tree_flat_and_json(tmp_path):
    a, _ = _pair()
    torch.save({"epoch": 3, "model": a, "optimizer": {"state": {}}}, tmp_path / "train.pt")
    tree = _ckpt("ls", str(tmp_path / "train.pt"))
    assert tree.returncode == 0, tree.stderr
    assert "weights under 'model'" in tree.stdout
    assert "layers.{0..3}" in tree.stdout
    flat = _ckpt("ls", "--flat", str(tmp_path / "train.pt")).stdout.splitlines()
    assert len(flat) == len(a)
    doc = json.loads(_ckpt("ls", "--json", str(tmp_path / "train.pt")).stdout)
    loaded = torch.load(tmp_path / "train.pt", weights_only=True)["model"]
    assert {t["name"]: t["shape"] for t in doc["tensors"]} == {
        k: list(v.shape) for k, v in loaded.items()
    }
    bad = _ckpt("ls", str(tmp_path / "train.pt"), "--root", "nope")
    assert bad.returncode == 2
    assert "'nope'" in bad.stderr
