from __future__ import annotations

import argparse

import numpy as np
import pytest

import inspector
from inspector.errors import CheckpointError

W = {"enc.w": np.ones((2, 3), np.float32), "dec.b": np.arange(4, dtype=np.int64)}


@pytest.mark.parametrize(
    ("container", "root"),
    [
        (W, ()),
        (
            {
                "epoch": 3,
                "model": W,
                "optimizer": {"state": {0: {"exp_avg": np.ones(3)}}},
                "loss": 0.5,
            },
            ("model",),
        ),
        (
            {"state_dict": W, "optimizer_states": [{"state": {0: {"m": np.ones(9)}}}], "epoch": 1},
            ("state_dict",),
        ),
        (
            {
                "args": argparse.Namespace(lr=1.0),
                "model": W,
                "last_optimizer_state": {"m": np.ones(9)},
            },
            ("model",),
        ),
        ({"checkpoint": {"model_state_dict": W}}, ("checkpoint", "model_state_dict")),
    ],
)
def test_weights_root_is_detected(container, root):
    ckpt = inspector.open(container)
    assert ckpt.root == root
    assert sorted(ckpt) == sorted(W)
    np.testing.assert_array_equal(ckpt.array("enc.w"), W["enc.w"])


def test_root_can_be_chosen_and_errors_name_the_key():
    ckpt = inspector.open({"model": W, "ema": W}, root="ema")
    assert ckpt.root == ("ema",)
    with pytest.raises(CheckpointError, match="'nope'"):
        inspector.open({"model": W}, root="nope")


def test_non_tensor_leaves_stay_values():
    ckpt = inspector.open({"model": W, "args": argparse.Namespace(lr=0.1), "epoch": 7})
    assert ckpt.tree["epoch"] == 7
    assert isinstance(ckpt.tree["args"], inspector.Record)
    assert ckpt.tree["args"].cls == "argparse.Namespace"


def test_in_memory_torch_tensors_keep_views_and_ties():
    import torch
    base = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    sd = {"a": base, "b": base.t(), "c": base[1:, 1:], "bf": torch.ones(3, dtype=torch.bfloat16)}
    ckpt = inspector.open(sd)
    assert ckpt["b"].strides == (1, 4)
    assert ckpt["c"].storage_offset == 5
    assert ckpt["a"].storage is ckpt["b"].storage
    assert sorted(ckpt.tied_groups()[0]) == ["a", "b", "c"]
    np.testing.assert_array_equal(ckpt.array("b"), base.t().numpy())
    np.testing.assert_array_equal(ckpt.array("c"), base[1:, 1:].numpy())
    assert ckpt.array("bf").tobytes() == sd["bf"].view(torch.uint16).numpy().tobytes()


def test_module_is_opened_through_its_state_dict():
    import torch
    mod = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    ckpt = inspector.open(mod)
    assert sorted(ckpt) == sorted(mod.state_dict())
    assert ckpt["0.weight"].shape == (2, 3)
    assert ckpt["1.num_batches_tracked"].dtype == "int64"


def _shared_tree(kind: str, depth: int = 60):
    x: object = []
    for _ in range(depth):
        x = [x, x] if kind == "list" else {"a": x, "b": x}
    return x


@pytest.mark.parametrize("kind", ["list", "dict"])
def test_a_pickle_sharing_containers_exponentially_is_refused_not_hung(tmp_path, kind):
    import torch
    path = tmp_path / f"dag_{kind}.pt"
    torch.save({"w": torch.ones(2), "cfg": _shared_tree(kind)}, path)  # 1 KB on disk
    with pytest.raises(inspector.CheckpointError, match="expands past") as info:
        inspector.open(path)
    assert "data.pkl" in str(info.value)


def test_modest_sharing_is_walked_once_and_tied_tensors_keep_every_name():
    w = np.ones(3, np.float32)
    shared = {"w": w}
    ckpt = inspector.open(
        {"a": shared, "b": shared, "t1": w, "t2": w, "deep": _shared_tree("list", 40)}
    )
    assert sorted(ckpt) == ["a.w", "t1", "t2"]  # 'b' is the same container as 'a'
