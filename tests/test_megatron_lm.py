"""Megatron-LM save folders (`latest_checkpointed_iteration.txt`, `iter_NNNNNNN/mp_rank_TT[_PPP]/
model_optim_rng.pt`), written here the way Megatron-LM's checkpointing writes them: each rank's
file a `torch.save` of {'args' (an argparse.Namespace), 'checkpoint_version', 'iteration',
'model' (that rank's shard, split as Megatron's tensor parallelism splits it), 'optimizer',
'rng_state'}. The merged checkpoint must list, hash and diff as the full model saved whole."""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed.checkpoint as dcp
from subproc import ckpt
from test_tensor_parallel import full_state, pipeline_stages, shard, two_layer_state

import inspector

pytestmark = pytest.mark.filterwarnings("ignore:torch.distributed is disabled:UserWarning")


def megatron_names(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Megatron-LM's own names: no NeMo `model.` prefix."""
    return {n.removeprefix("model."): t for n, t in state.items()}


def rank_file(model: dict[str, torch.Tensor], iteration: int, *, tp: int, pp: int,
              swiglu: bool) -> dict[str, Any]:
    args = argparse.Namespace(tensor_model_parallel_size=tp, pipeline_model_parallel_size=pp,
                              swiglu=swiglu, hidden_size=8, num_layers=2, iteration=iteration)
    return {
        "args": args,
        "checkpoint_version": 3.0,
        "iteration": iteration,
        "model": model,
        "optimizer": {"optimizer": {"state": {0: {"exp_avg": torch.zeros(2)}}},
                      "param_groups": [{"lr": 1e-4, "params": [0]}]},
        "opt_param_scheduler": {"num_steps": iteration},
        "rng_state": [{"random_rng_state": random.Random(0).getstate(),
                       "torch_rng_state": torch.get_rng_state()}],
    }


def write_iteration(save: Path, name: str, ranks: dict[str, dict[str, torch.Tensor]],
                    iteration: int, *, tp: int, pp: int = 1, swiglu: bool = False) -> Path:
    folder = save / name
    for rank, model in ranks.items():
        (folder / rank).mkdir(parents=True)
        torch.save(rank_file(model, iteration, tp=tp, pp=pp, swiglu=swiglu),
                   folder / rank / "model_optim_rng.pt")
    return folder


def tp_ranks(state: dict[str, torch.Tensor], tp: int, gated: bool) -> dict[str, Any]:
    return {f"mp_rank_{i:02d}": sd for i, sd in enumerate(shard(state, tp, gated))}


@pytest.mark.parametrize("gated", [False, True])
def test_tensor_parallel_ranks_list_and_hash_as_the_full_model(tmp_path: Path,
                                                               gated: bool) -> None:
    state = megatron_names(full_state(gated))
    save = tmp_path / "checkpoints"
    write_iteration(save, "iter_0000100", tp_ranks(state, 2, gated), 100, tp=2, swiglu=gated)
    (save / "latest_checkpointed_iteration.txt").write_text("100")
    full = tmp_path / "full.pt"
    torch.save(state, full)

    listed = ckpt("ls", "--json", save)
    assert listed.returncode == 0, listed.stderr
    got = {t["name"]: t["shape"] for t in json.loads(listed.stdout)["tensors"]}
    assert got == {n: list(t.shape) for n, t in state.items()}
    hashes = [json.loads(ckpt("hash", "--json", p).stdout) for p in (save, full)]
    assert hashes[0]["tensors"] == hashes[1]["tensors"]
    same = ckpt("diff", save, full)
    assert same.returncode == 0, same.stdout
    with inspector.open(save) as c:
        assert c.format == "megatron"
        assert any("Megatron-LM checkpoint: 2 tensor-parallel x 1 pipeline" in n for n in c.notes)
        assert any("optimizer and RNG states are not listed" in n for n in c.notes)


def test_pipeline_stages_join_with_global_layer_numbers(tmp_path: Path) -> None:
    state = megatron_names(two_layer_state())
    ranks = {f"mp_rank_{tp:02d}_{pp:03d}": sd
             for pp, stage in enumerate(pipeline_stages(state))
             for tp, sd in enumerate(shard(stage, 2, False))}
    folder = write_iteration(tmp_path, "iter_0000007", ranks, 7, tp=2, pp=2)
    with inspector.open(folder) as c:  # the iteration folder itself
        assert sorted(c) == sorted(state)
        w = "decoder.layers.1.self_attention.linear_proj.weight"
        assert (c.array(w) == state[w].numpy()).all()
        assert any("2 tensor-parallel x 2 pipeline-parallel" in n for n in c.notes)


def test_the_latest_iteration_is_read_and_release_too(tmp_path: Path) -> None:
    old, new = megatron_names(full_state(False)), megatron_names(full_state(False))
    new = {n: t + 1 if t.is_floating_point() else t for n, t in new.items()}
    save = tmp_path / "save"
    write_iteration(save, "iter_0000100", tp_ranks(old, 2, False), 100, tp=2)
    write_iteration(save, "iter_0000200", tp_ranks(new, 2, False), 200, tp=2)
    write_iteration(save, "release", tp_ranks(old, 2, False), 0, tp=2)
    name = "embedding.word_embeddings.weight"
    for latest, want in (("200", new), ("100", old), ("release", old)):
        (save / "latest_checkpointed_iteration.txt").write_text(latest + "\n")
        with inspector.open(save) as c:
            assert (c.array(name) == want[name].numpy()).all(), latest
            assert c.metadata["megatron"]["iteration"] in (f"iter_{int(latest):07d}"
                                                           if latest.isdigit() else latest,)


def test_ranks_option_lists_each_rank(tmp_path: Path) -> None:
    state = megatron_names(full_state(False))
    folder = write_iteration(tmp_path, "iter_0000001", tp_ranks(state, 2, False), 1, tp=2)
    r = ckpt("ls", "--ranks", "--flat", folder)
    assert r.returncode == 0, r.stderr
    assert "mp_rank_00.embedding.word_embeddings.weight" in r.stdout
    assert "mp_rank_01.embedding.word_embeddings.weight" in r.stdout


def test_a_torch_dist_iteration_is_read_as_dcp(tmp_path: Path) -> None:
    state = megatron_names(full_state(False))
    save = tmp_path / "save"
    dcp.save(state, checkpoint_id=str(save / "iter_0000050"), no_dist=True)
    (save / "latest_checkpointed_iteration.txt").write_text("50")
    with inspector.open(save) as c:
        assert sorted(c) == sorted(state)
        assert any("saved as torch_dist" in n for n in c.notes)


@pytest.mark.parametrize("case", ["missing-iteration", "not-a-number", "no-model", "no-ranks"])
def test_bad_folders_exit_2_naming_the_file(tmp_path: Path, case: str) -> None:
    save = tmp_path / "save"
    state = megatron_names(full_state(False))
    if case == "no-model":
        (save / "iter_0000001" / "mp_rank_00").mkdir(parents=True)
        torch.save({"args": argparse.Namespace(), "iteration": 1},
                   save / "iter_0000001" / "mp_rank_00" / "model_optim_rng.pt")
    elif case == "no-ranks":
        (save / "iter_0000001").mkdir(parents=True)
    else:
        write_iteration(save, "iter_0000001", tp_ranks(state, 2, False), 1, tp=2)
    latest = {"missing-iteration": "5", "not-a-number": "five"}.get(case, "1")
    (save / "latest_checkpointed_iteration.txt").write_text(latest)
    r = ckpt("ls", save)
    assert r.returncode == 2, r.stdout
    assert "Traceback" not in r.stderr
    assert str(save) in r.stderr
    expected = {"missing-iteration": "no iter_0000005/ folder", "not-a-number": "'five'",
                "no-model": "no 'model' state dict", "no-ranks": "no mp_rank_TT"}[case]
    assert expected in r.stderr


def test_a_rank_linked_out_of_the_folder_is_refused(tmp_path: Path) -> None:
    state = megatron_names(full_state(False))
    outside = write_iteration(tmp_path / "elsewhere", "iter_0000001", tp_ranks(state, 2, False),
                              1, tp=2)
    folder = tmp_path / "save" / "iter_0000001"
    folder.mkdir(parents=True)
    (folder / "mp_rank_00").symlink_to(outside / "mp_rank_00")
    (folder / "mp_rank_01").symlink_to(outside / "mp_rank_01")
    r = ckpt("ls", folder)
    assert r.returncode == 2, r.stdout
    assert "symbolic link" in r.stderr
