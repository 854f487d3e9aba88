"""Training containers as real scripts save them, per-input roots (`PATH::ROOT`), and containers
that point back into themselves (legal in pickles: OmegaConf's `_parent`)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import torch
from subproc import ckpt

import inspector
from inspector.errors import CheckpointError
from inspector.plaintree import to_plain
from inspector.reader import split_root


def _model_and_adam() -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3), torch.nn.Linear(3, 2)
    )
    opt = torch.optim.Adam(model.parameters())
    model(torch.randn(5, 4)).sum().backward()
    opt.step()  # Adam now holds step / exp_avg / exp_avg_sq per parameter
    return model, opt


def _signature(sd: dict[str, torch.Tensor]) -> dict[str, tuple[tuple[int, ...], str]]:
    return {k: (tuple(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in sd.items()}


def _listed(c: inspector.Checkpoint) -> dict[str, tuple[tuple[int, ...], str]]:
    return {n: (t.shape, t.dtype) for n, t in c.items()}


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("training")
    model, opt = _model_and_adam()
    files = {
        "train": {
            "epoch": 3,
            "model": model.state_dict(),
            "optimizer": opt.state_dict(),
            "loss": torch.tensor(0.5),
        },
        "fairseq": {
            "args": argparse.Namespace(lr=0.1, arch="toy"),
            "model": model.state_dict(),
            "optimizer_history": [{"optimizer_name": "Adam", "num_updates": 10}],
            "last_optimizer_state": opt.state_dict(),
            "extra_state": {"epoch": 2},
        },
        "optimizer": opt.state_dict(),
    }
    paths = {}
    for name, obj in files.items():
        paths[name] = folder / f"{name}.pt"
        torch.save(obj, paths[name])
    paths["expected"] = folder / "expected.json"
    paths["expected"].write_text(
        json.dumps({k: list(v) for k, v in _signature(model.state_dict()).items()})
    )
    return paths


def _expected(saved: dict[str, Path]) -> dict[str, tuple[tuple[int, ...], str]]:
    raw = json.loads(saved["expected"].read_text())
    return {k: (tuple(shape), dtype) for k, (shape, dtype) in raw.items()}


@pytest.mark.parametrize("name", ["train", "fairseq"])
def test_training_dicts_list_exactly_the_model_state_dict(saved, name):
    c = inspector.open(saved[name])
    assert c.root == ("model",)
    assert _listed(c) == _expected(saved)
    assert not any("optimizer or training state" in n for n in c.notes)


def test_a_scalar_loss_beside_the_model_does_not_stop_detection_but_real_tensors_do():
    import numpy as np

    w = {"a.weight": np.ones((2, 2), np.float32)}
    assert inspector.open({"model": w, "loss": np.array(0.5, np.float32)}).root == ("model",)
    assert inspector.open({"model": w, "proj": np.ones((3, 3), np.float32)}).root == ()


def test_listing_optimizer_state_says_so_and_names_the_weights(saved):
    c = inspector.open(f"{saved['train']}::optimizer")
    assert c.root == ("optimizer",)
    (note,) = [n for n in c.notes if "optimizer or training state" in n]
    assert "(18 of 18 tensors): 'optimizer' (18)" in note
    assert "under 'model'" in note
    alone = inspector.open(saved["optimizer"])  # torch.save(opt.state_dict())
    assert alone.root == ()
    assert any("optimizer or training state" in n for n in alone.notes)
    top = inspector.open(saved["train"], root="")
    assert any("(18 of 28 tensors)" in n for n in top.notes)


def test_path_root_and_root_argument_agree_and_conflicts_are_errors(saved):
    a = inspector.open(f"{saved['train']}::model")
    b = inspector.open(saved["train"], root="model")
    assert _listed(a) == _listed(b) == _expected(saved)
    assert a.path == saved["train"]
    assert inspector.open(f"{saved['train']}::model", root="model").root == ("model",)
    with pytest.raises(CheckpointError, match="two roots"):
        inspector.open(f"{saved['train']}::model", root="optimizer")
    with pytest.raises(CheckpointError, match="'nope'"):
        inspector.open(f"{saved['train']}::nope")


def test_a_file_whose_name_holds_the_separator_is_opened_as_named(tmp_path, saved):
    odd = tmp_path / "run::model"
    odd.write_bytes(saved["train"].read_bytes())
    assert split_root(str(odd)) == (str(odd), None)
    assert inspector.open(odd).root == ("model",)
    assert inspector.open(f"{odd}::optimizer").root == ("optimizer",)
    assert split_root("a.pt::") == ("a.pt", "")
    assert split_root({"x": 1}, "r") == ({"x": 1}, "r")


def test_every_command_takes_per_input_roots(saved, tmp_path):
    train, fairseq = saved["train"], saved["fairseq"]
    out = ckpt("ls", f"{train}::optimizer", "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["root"] == ["optimizer"]
    assert any("optimizer or training state" in n for n in doc["notes"])
    out = ckpt("ls", f"{train}::")
    assert out.returncode == 0, out.stderr
    assert "optimizer or training state listed" in out.stdout
    hashed = ckpt("hash", f"{train}::model")
    assert hashed.returncode == 0, hashed.stderr
    assert hashed.stdout == ckpt("hash", train, "--root", "model").stdout
    assert "(checkpoint: 9 tensors)" in hashed.stdout
    same = ckpt("diff", f"{train}::model", f"{fairseq}::model")
    assert same.returncode == 0, same.stdout + same.stderr
    assert same.stdout.startswith(f"A: {train}::model\nB: {fairseq}::model\n")
    other = ckpt("diff", f"{train}::optimizer.state", fairseq)
    assert other.returncode == 1, other.stderr
    soft = ckpt("diff", "--root", "model", train, fairseq)
    assert soft.returncode == 0, soft.stderr
    plan = tmp_path / "plan.yaml"
    mapped = ckpt("map", f"{train}::model", f"{fairseq}::model", "-o", plan)
    assert mapped.returncode == 0, mapped.stderr
    assert "root: model" in plan.read_text()
    checked = ckpt("check", f"{train}::model", "--against", f"{fairseq}::model")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    scanned = ckpt("scan", f"{train}::model")
    assert scanned.returncode == 0, scanned.stdout + scanned.stderr


def test_map_root_applies_to_the_inputs_that_have_it(saved, tmp_path):
    nemo = tmp_path / "plain.pt"
    model, _ = _model_and_adam()
    torch.save(model.state_dict(), nemo)  # no 'model' key: keeps its own (top) root
    plan = tmp_path / "plan.yaml"
    out = ckpt("map", "--root", "model", saved["train"], nemo, "-o", plan)
    assert out.returncode == 0, out.stderr
    from inspector.mapping import Plan

    p = Plan.load(plan)
    assert p.sources[0].root == "model"
    assert p.target.root in ("", None)
    assert all(e.decision == "copy" for e in p.entries.values())
    bad = ckpt("map", "--root", "nope", saved["train"], nemo)
    assert bad.returncode == 2
    assert "no input has this sub-tree" in bad.stderr


# Containers that point back into themselves -------------------------------------------------------


def _cyclic_file(tmp_path: Path) -> Path:
    cfg: dict[str, object] = {"name": "toy", "layers": [1, 2]}
    cfg["self"] = cfg  # a dict holding itself
    cfg["layers"].append(cfg)  # type: ignore[attr-defined]
    path = tmp_path / "cyclic.pt"
    torch.save({"state_dict": {"w": torch.ones(2, 3)}, "hyper_parameters": cfg}, path)
    return path


def test_a_cyclic_container_opens_lists_and_prints_references(tmp_path):
    path = _cyclic_file(tmp_path)
    c = inspector.open(path)
    assert c.root == ("state_dict",)
    assert _listed(c) == {"w": ((2, 3), "float32")}
    plain = to_plain(c.tree)
    assert plain["hyper_parameters"]["self"] == "<ref to hyper_parameters>"
    assert plain["hyper_parameters"]["layers"] == [1, 2, "<ref to hyper_parameters>"]
    json.dumps(plain)  # finite
    for args in (["ls"], ["ls", "--json"], ["ls", "--flat"], ["hash"]):
        out = ckpt(*args, path)
        assert out.returncode == 0, out.stderr
    doc = json.loads(ckpt("ls", "--json", path).stdout)
    assert doc["container"]["hyper_parameters"]["self"] == "<ref to hyper_parameters>"
    assert doc["container"]["state_dict"].startswith("<weights: 1 tensors")


def test_a_cyclic_target_is_written_back_with_its_cycle(tmp_path):
    from inspector.writers.build import build_output
    from inspector.writers.torch_zip import write

    path = _cyclic_file(tmp_path)
    out = tmp_path / "out.pt"
    write(build_output(inspector.open(path), {}), out)
    back = torch.load(out, weights_only=False)
    assert back["hyper_parameters"]["self"] is back["hyper_parameters"]
    assert back["hyper_parameters"]["layers"][2] is back["hyper_parameters"]
    assert torch.equal(back["state_dict"]["w"], torch.ones(2, 3))


def test_plain_tree_shows_shared_containers_once_and_empty_ones_always():
    shared = {"k": 1}
    assert to_plain({"a": shared, "b": shared, "c": (), "d": ()}) == {
        "a": {"k": 1},
        "b": "<ref to a>",
        "c": [],
        "d": [],
    }
