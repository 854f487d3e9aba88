"""`ckpt ls`'s short cuts give what the general code gives: a state dict's names without the
walk, tied groups when no storage is shared, the header's sums from the tree."""

from __future__ import annotations

from pathlib import Path

import torch

from inspector import reader
from inspector.cli.ls import header
from inspector.containers import dotted, iter_tensors
from inspector.tree import build_tree


def _walked(node: object) -> dict[str, object]:
    return {dotted(p): reader._rename(t, dotted(p)) for p, t in iter_tensors(node)}


def _save(tmp_path: Path, obj: object) -> Path:
    path = tmp_path / "m.pt"
    torch.save(obj, path)
    return path


def test_a_state_dict_is_named_as_the_walk_names_it(tmp_path: Path) -> None:
    w = torch.arange(6.0).reshape(2, 3)
    state = {"a.weight": w, "b.weight": w, "c": w.t(), "d.0.bias": torch.zeros(3, dtype=torch.int8)}
    ckpt = reader.open_checkpoint(_save(tmp_path, state))
    flat = reader._named_flat(ckpt.tree)
    assert flat is not None
    assert flat == _walked(ckpt.tree) == ckpt.tensors
    assert list(flat) == list(state)
    assert ckpt.tied_groups() == [["a.weight", "b.weight", "c"]]


def test_a_tensor_shared_by_two_keys_keeps_each_name(tmp_path: Path) -> None:
    """Named in place at its first key and copied at the next; the key "" too, which is the
    one place an unnamed tensor may already have its name."""
    w, b = torch.ones(3), torch.zeros(2)
    for state in ({"": w, "x": w, "y": b}, {"x": w, "": w, "y": b}, {"": w, "y": b}):
        ckpt = reader.open_checkpoint(_save(tmp_path, state))
        assert {k: t.name for k, t in ckpt.tensors.items()} == {k: k for k in state}
        assert ckpt.tensors == _walked(ckpt.tree)


def test_the_tree_of_a_state_dict_is_its_tensors(tmp_path: Path) -> None:
    """One dict for both when every tensor is named in place (OrderedDict too, with the
    `_metadata` Module.state_dict() carries); a dict of its own once a name needs a copy."""
    module = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.LayerNorm(3))
    for state in ({"a": torch.ones(2), "b": torch.zeros(1)}, module.state_dict()):
        ckpt = reader.open_checkpoint(_save(tmp_path, state))
        assert ckpt.tensors is ckpt.tree
        assert list(ckpt.tensors) == list(state)
    w = torch.ones(2)
    ckpt = reader.open_checkpoint(_save(tmp_path, {"a": w, "b": w, "c": torch.ones(1)}))
    assert ckpt.tensors is not ckpt.tree
    assert [t.name for t in ckpt.tensors.values()] == ["a", "b", "c"]
    assert ckpt.tree["b"] is ckpt.tree["a"]


def test_other_containers_take_the_walk(tmp_path: Path) -> None:
    ckpt = reader.open_checkpoint(_save(tmp_path, {"x": {"w": torch.ones(2)}, 3: torch.ones(1)}))
    assert reader._named_flat(ckpt.tree) is None
    assert reader._named_flat({1: ckpt.tensors["x.w"]}) is None
    assert list(ckpt.tensors) == ["x.w", "3"]
    assert ckpt.tied_groups() == []


def test_the_header_from_the_tree_is_the_header(tmp_path: Path) -> None:
    state = {f"l.{i}.w": torch.zeros(i + 1, 2, dtype=torch.float16) for i in range(5)}
    state["l.head"] = torch.zeros(7, dtype=torch.int64)
    ckpt = reader.open_checkpoint(_save(tmp_path, state))
    assert header(ckpt, build_tree(ckpt.tensors)) == header(ckpt)
    assert "6 tensors, 37 params, 116 B" in header(ckpt)
