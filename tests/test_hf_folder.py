"""HF model folders and sharded safetensors, built the way transformers writes them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

import inspector

CONFIG = {"architectures": ["TinyForCTC"], "model_type": "tiny", "hidden_size": 8}


def _state_dict() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    sd = {}
    for i in range(4):
        sd[f"encoder.layers.{i}.weight"] = torch.randn(8, 8, generator=g)
        sd[f"encoder.layers.{i}.bias"] = torch.randn(8, generator=g).to(torch.bfloat16)
    sd["lm_head.weight"] = torch.randn(5, 8, generator=g)
    return sd


def _write_sharded(folder: Path, sd: dict[str, torch.Tensor], n_shards: int = 3) -> dict[str, str]:
    """Shards named like transformers' `save_pretrained`, plus the index it writes."""
    names = list(sd)
    weight_map = {}
    for s in range(n_shards):
        shard = f"model-{s + 1:05d}-of-{n_shards:05d}.safetensors"
        part = {k: sd[k] for k in names[s::n_shards]}
        save_file(part, str(folder / shard), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(part, shard))
    total = sum(t.numel() * t.element_size() for t in sd.values())
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
    return weight_map


def _assert_matches(ckpt: inspector.Checkpoint, folder: Path, weight_map: dict[str, str]) -> None:
    assert sorted(ckpt) == sorted(weight_map)
    for name, shard in weight_map.items():
        with safe_open(str(folder / shard), framework="pt") as f:
            ref = f.get_tensor(name)
        info = ckpt[name]
        assert info.dtype == str(ref.dtype).removeprefix("torch.")
        assert info.shape == tuple(ref.shape)
        assert info.storage.source.path == str((folder / shard).resolve())
        raw = ref.contiguous().view(-1).view(torch.uint8).numpy().tobytes()
        assert bytes(ckpt.storage_bytes(info.storage)) == raw


def test_hf_folder_single_safetensors(tmp_path):
    sd = _state_dict()
    save_file(sd, str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
    (tmp_path / "config.json").write_text(json.dumps(CONFIG))
    ckpt = inspector.open(tmp_path)
    assert ckpt.format == "hf"
    assert ckpt.metadata["config"] == CONFIG
    assert ckpt.metadata["weights"] == "model.safetensors"
    _assert_matches(ckpt, tmp_path, dict.fromkeys(sd, "model.safetensors"))


def test_hf_folder_sharded_safetensors(tmp_path):
    sd = _state_dict()
    weight_map = _write_sharded(tmp_path, sd)
    (tmp_path / "config.json").write_text(json.dumps(CONFIG))
    ckpt = inspector.open(tmp_path)
    assert ckpt.format == "hf"
    assert ckpt.metadata["weights"] == "model.safetensors.index.json"
    assert set(ckpt.metadata["shards"]) == set(weight_map.values())
    assert ckpt.notes == []
    _assert_matches(ckpt, tmp_path, weight_map)


def test_index_file_and_index_folder_without_config(tmp_path):
    weight_map = _write_sharded(tmp_path, _state_dict(), n_shards=2)
    for path in (tmp_path / "model.safetensors.index.json", tmp_path):
        ckpt = inspector.open(path)
        assert ckpt.format == "safetensors-sharded"
        assert ckpt.metadata["index_metadata"]["total_size"] > 0
        _assert_matches(ckpt, tmp_path, weight_map)


def test_index_notes_unlisted_tensors_and_wrong_total(tmp_path):
    sd = _state_dict()
    save_file(sd, str(tmp_path / "a.safetensors"))
    listed = dict.fromkeys(list(sd)[:3], "a.safetensors")
    index = {"metadata": {"total_size": 1}, "weight_map": listed}
    (tmp_path / "m.safetensors.index.json").write_text(json.dumps(index))
    ckpt = inspector.open(tmp_path / "m.safetensors.index.json")
    assert sorted(ckpt) == sorted(sd)  # the shard's unlisted tensors are still shown
    assert any("not listed" in n for n in ckpt.notes)
    assert any("total_size 1" in n for n in ckpt.notes)


def test_hf_cache_symlinked_shards_open(tmp_path):
    # The HF hub cache stores snapshots as symlinks into ../../blobs: they must not be refused.
    blobs = tmp_path / "blobs"
    snap = tmp_path / "snapshots" / "abc"
    blobs.mkdir()
    snap.mkdir(parents=True)
    save_file({"w": torch.ones(2)}, str(blobs / "1234"))
    (snap / "model.safetensors").symlink_to(Path("../../blobs/1234"))
    (snap / "config.json").write_text(json.dumps(CONFIG))
    ckpt = inspector.open(snap)
    assert list(ckpt) == ["w"]


def test_hf_folder_pytorch_model_bin(tmp_path):
    sd = _state_dict()
    sd["tied.weight"] = sd["lm_head.weight"]  # tied: one storage
    torch.save(sd, tmp_path / "pytorch_model.bin")
    (tmp_path / "config.json").write_text(json.dumps(CONFIG))
    ckpt = inspector.open(tmp_path)
    assert ckpt.format == "hf"
    ref = torch.load(tmp_path / "pytorch_model.bin", weights_only=True)
    assert sorted(ckpt) == sorted(ref)
    for name, t in ref.items():
        assert ckpt[name].shape == tuple(t.shape)
        assert ckpt[name].dtype == str(t.dtype).removeprefix("torch.")
    assert sorted(map(sorted, ckpt.tied_groups())) == [["lm_head.weight", "tied.weight"]]


def test_hf_folder_sharded_bin_keeps_shard_storages_apart(tmp_path):
    sd = _state_dict()
    names = list(sd)
    weight_map = {}
    for s, part_names in enumerate((names[:4], names[4:])):
        shard = f"pytorch_model-{s + 1:05d}-of-00002.bin"
        torch.save({k: sd[k] for k in part_names}, tmp_path / shard)
        weight_map.update(dict.fromkeys(part_names, shard))
    index = {"metadata": {"total_size": 0}, "weight_map": weight_map}
    (tmp_path / "pytorch_model.bin.index.json").write_text(json.dumps(index))
    (tmp_path / "config.json").write_text(json.dumps(CONFIG))
    ckpt = inspector.open(tmp_path)
    assert sorted(ckpt) == sorted(sd)
    assert ckpt.tied_groups() == []  # record "data/0" of shard 1 is not record "data/0" of shard 2
    for name, shard in weight_map.items():
        assert ckpt[name].storage.source.path == str((tmp_path / shard).resolve())


def test_ambiguous_weights_are_refused(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(CONFIG))
    save_file({"a": torch.ones(1)}, str(tmp_path / "x.safetensors"))
    save_file({"a": torch.ones(1)}, str(tmp_path / "y.safetensors"))
    with pytest.raises(inspector.CheckpointError, match="several weight files"):
        inspector.open(tmp_path)
