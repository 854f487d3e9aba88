"""torch.distributed.checkpoint folders written by torch itself, in one process."""

from __future__ import annotations

import dataclasses
import io

import pytest
import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.default_planner import DefaultSavePlanner
from torch.distributed.checkpoint.metadata import ChunkStorageMetadata, MetadataIndex
from torch.distributed.checkpoint.planner import TensorWriteData, WriteItem, WriteItemType

import inspector
from inspector.hashing import digest_array

pytestmark = pytest.mark.filterwarnings("ignore:torch.distributed is disabled:UserWarning")


def _raw(t: torch.Tensor) -> bytes:
    return t.contiguous().view(-1).view(torch.uint8).numpy().tobytes()


class RowSplitPlanner(DefaultSavePlanner):
    """Saves the named tensors as two row chunks, the layout two ranks sharding dim 0 write."""

    def __init__(self, split: set[str]):
        super().__init__()
        self.split = split

    def create_local_plan(self):  # type: ignore[no-untyped-def]
        plan = super().create_local_plan()
        items = []
        for item in plan.items:
            if item.index.fqn not in self.split:
                items.append(item)
                continue
            size = item.tensor_data.size
            half = size[0] // 2
            for start, rows in ((0, half), (half, size[0] - half)):
                offsets = torch.Size([start] + [0] * (len(size) - 1))
                chunk = ChunkStorageMetadata(offsets=offsets, sizes=torch.Size([rows, *size[1:]]))
                data = TensorWriteData(
                    chunk=chunk, properties=item.tensor_data.properties, size=size
                )
                index = MetadataIndex(item.index.fqn, offsets)
                items.append(WriteItem(index=index, type=WriteItemType.SHARD, tensor_data=data))
        self.plan = dataclasses.replace(plan, items=items)
        return self.plan

    def lookup_object(self, index):  # type: ignore[no-untyped-def]
        if index.fqn in self.split:
            return super().lookup_object(MetadataIndex(index.fqn))
        return super().lookup_object(index)

    def transform_object(self, write_item, obj):  # type: ignore[no-untyped-def]
        if write_item.index.fqn not in self.split:
            return super().transform_object(write_item, obj)
        chunk = write_item.tensor_data.chunk
        for dim, (start, n) in enumerate(zip(chunk.offsets, chunk.sizes, strict=True)):
            obj = obj.narrow(dim, start, n)
        return obj


def _training_state() -> dict:
    g = torch.Generator().manual_seed(2)
    return {
        "model": {
            "encoder.weight": torch.randn(6, 4, generator=g),
            "encoder.bias": torch.randn(4, generator=g).to(torch.bfloat16),
            "embed.ids": torch.arange(10, dtype=torch.int64),
        },
        "step": 17,
        "extra": {"lr": 0.25, "name": "run-1"},
    }


def test_single_process_checkpoint_matches_torch(tmp_path):
    state = _training_state()
    dcp.save(state, checkpoint_id=str(tmp_path))
    ckpt = inspector.open(tmp_path)
    assert ckpt.format == "dcp"
    assert ckpt.root == ("model",)  # the nested tree is rebuilt from planner_data
    assert ckpt.tree["step"] == 17
    assert ckpt.tree["extra"] == {"lr": 0.25, "name": "run-1"}
    loaded = {"model": {k: torch.empty_like(v) for k, v in state["model"].items()}}
    dcp.load(loaded, checkpoint_id=str(tmp_path))
    assert sorted(ckpt) == sorted(loaded["model"])
    for name, ref in loaded["model"].items():
        info = ckpt[name]
        assert info.dtype == str(ref.dtype).removeprefix("torch.")
        assert info.shape == tuple(ref.shape)
        assert ckpt.array(name).tobytes() == _raw(ref)
        assert info.storage.source.path.endswith(".distcp")
    assert ckpt.tied_groups() == []


def test_multi_chunk_tensor_is_one_logical_tensor(tmp_path):
    w = torch.arange(24.0).reshape(6, 4)
    dcp.save(
        {"w": w, "b": torch.ones(2)}, checkpoint_id=str(tmp_path), planner=RowSplitPlanner({"w"})
    )
    back = {"w": torch.zeros(6, 4), "b": torch.zeros(2)}
    dcp.load(back, checkpoint_id=str(tmp_path))  # torch itself reads it back
    assert torch.equal(back["w"], w)

    ckpt = inspector.open(tmp_path)
    assert list(ckpt) == ["w", "b"]
    t = ckpt["w"]
    assert (t.dtype, t.shape, t.strides) == ("float32", (6, 4), (4, 1))
    assert t.byte_range is None  # assembled from two records: never patched in place
    assert (ckpt.array("w") == w.numpy()).all()
    assert any("assembled from chunks" in n for n in ckpt.notes)
    source = ckpt.source(t.storage.source.path)
    assert source.in_place  # row chunks: the tensor's bytes are the chunks' bytes in order
    for chunk in source.chunks:  # the layout names the torch.save record of each chunk
        raw = (tmp_path / chunk.file).read_bytes()[chunk.offset : chunk.offset + chunk.length]
        part = torch.load(io.BytesIO(raw), weights_only=True)
        rows = slice(chunk.offsets[0], chunk.offsets[0] + chunk.sizes[0])
        assert torch.equal(part, w[rows])
    digests = inspector.hash_tensors(ckpt)
    assert digests["w"] == digest_array(w.numpy())
    ckpt.close()


def test_missing_distcp_file_is_reported(tmp_path):
    dcp.save({"w": torch.ones(3)}, checkpoint_id=str(tmp_path))
    for f in tmp_path.glob("*.distcp"):
        f.unlink()
    with pytest.raises(inspector.CheckpointError, match="missing") as info:
        inspector.open(tmp_path)
    assert type(info.value).__name__ == "MissingRecordError"
    assert info.value.key == "w"


def test_each_tensors_zip_is_read_by_the_compiled_layout(tmp_path, monkeypatch):
    """The torch zip each tensor is stored as (8,000 for 8,000 tensors) is read in one compiled
    pass (csrc/torch_zip_layout.hpp); with INSPECTOR_ZIP_FAST=0 the Python steps read it, to
    the same tensors, bytes and listing."""
    from subproc import child_env, ckpt

    from inspector.formats import torch_zip

    state = _training_state()
    dcp.save(state, checkpoint_id=str(tmp_path))

    def no_python_walk(*args, **kwargs):
        raise AssertionError("the Python directory walk ran")

    with monkeypatch.context() as m:
        m.setattr(torch_zip, "read_directory", no_python_walk)
        fast = inspector.open(tmp_path)
        fast = {name: (info, fast.array(name).tobytes()) for name, info in fast.items()}
    monkeypatch.setenv("INSPECTOR_ZIP_FAST", "0")
    slow = inspector.open(tmp_path)
    assert fast == {name: (info, slow.array(name).tobytes()) for name, info in slow.items()}
    assert sorted(fast) == sorted(state["model"])
    on = ckpt("ls", "--json", str(tmp_path))
    off = ckpt("ls", "--json", str(tmp_path), env=child_env(INSPECTOR_ZIP_FAST="0"))
    assert on.returncode == off.returncode == 0, on.stderr + off.stderr
    assert on.stdout == off.stdout
