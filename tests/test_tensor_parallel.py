"""Model-parallel .nemo files: tensor-parallel ranks merged into the model's logical tensors.

The files follow NeMo's Megatron layout (`mp_rank_XX/model_weights.ckpt` in the tar, each a
`torch.save` of that rank's shard): a small GPT's full state dict is split the way Megatron's
tensor parallelism splits it (column-parallel on dim 0, row-parallel on dim 1, vocabulary-
parallel embedding, replicated norms and row-parallel biases, a gated fc1 as [gate; up] halves
per rank), and the merged checkpoint must hash, diff and read as the full one.
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest
import torch
from subproc import ckpt

import inspector
from inspector.formats.tensor_parallel import is_gated, split_of

H, F, V = 8, 12, 10  # hidden, ffn, vocab


def full_state(gated: bool) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(4)
    layer = "model.decoder.layers.0."
    fc1_rows = 2 * F if gated else F
    return {
        "model.embedding.word_embeddings.weight": torch.randn(V, H, generator=g),
        layer + "self_attention.linear_qkv.layer_norm_weight": torch.randn(H, generator=g),
        layer + "self_attention.linear_qkv.weight": torch.randn(3 * H, H, generator=g),
        layer + "self_attention.linear_qkv.bias": torch.randn(3 * H, generator=g),
        layer + "self_attention.linear_proj.weight": torch.randn(H, H, generator=g),
        layer + "self_attention.linear_proj.bias": torch.randn(H, generator=g),
        layer + "mlp.linear_fc1.weight": torch.randn(fc1_rows, H, generator=g),
        layer + "mlp.linear_fc2.weight": torch.randn(H, F, generator=g).to(torch.bfloat16),
        "model.decoder.final_layernorm.weight": torch.randn(H, generator=g),
        "model.output_layer.weight": torch.randn(V, H, generator=g),
    }


def shard(state: dict[str, torch.Tensor], tp: int, gated: bool) -> list[dict[str, torch.Tensor]]:
    """What each tensor-parallel rank of Megatron holds."""
    ranks: list[dict[str, torch.Tensor]] = [{} for _ in range(tp)]
    for name, t in state.items():
        split = split_of(name, gated)
        if split == "replicated":
            parts = [t] * tp
        elif split == "gated":
            gate, up = t.chunk(2, dim=0)
            parts = [torch.cat([a, b]) for a, b in zip(gate.chunk(tp), up.chunk(tp), strict=True)]
        else:
            parts = list(t.chunk(tp, dim=1 if split == "dim1" else 0))
        for rank, part in zip(ranks, parts, strict=True):
            rank[name] = part.clone()
    return ranks


def write_nemo(path: Path, ranks: list[dict[str, torch.Tensor]], config: str,
               folder: str = "mp_rank_{:02d}") -> Path:
    with tarfile.open(path, "w") as tar:
        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

        add("./model_config.yaml", config.encode())
        for i, sd in enumerate(ranks):
            add(f"./{folder.format(i)}/model_weights.ckpt", _saved(sd))
    return path


CONFIG = "tensor_model_parallel_size: 2\nhidden_size: 8\nactivation: {}\n"


@pytest.mark.parametrize("gated", [False, True])
def test_ranks_merge_into_the_full_model(tmp_path, gated):
    state = full_state(gated)
    activation = "swiglu" if gated else "gelu"
    nemo = write_nemo(tmp_path / "tp.nemo", shard(state, 2, gated), CONFIG.format(activation))
    full = tmp_path / "full.pt"
    torch.save(state, full)

    listed = ckpt("ls", "--json", nemo)
    assert listed.returncode == 0, listed.stderr
    shapes = {t["name"]: t["shape"] for t in json.loads(listed.stdout)["tensors"]}
    assert shapes == {n: list(t.shape) for n, t in state.items()}
    same = ckpt("diff", nemo, full)
    assert same.returncode == 0, same.stdout + same.stderr
    hashes = [json.loads(ckpt("hash", "--json", p).stdout)["digest"] for p in (nemo, full)]
    assert hashes[0] == hashes[1]
    with inspector.open(nemo) as c:
        assert any("2 tensor-parallel x 1 pipeline-parallel ranks merged" in n for n in c.notes)
        w = c.array("model.decoder.layers.0.mlp.linear_fc1.weight")
        assert (w == state["model.decoder.layers.0.mlp.linear_fc1.weight"].numpy()).all()


def test_ranks_option_lists_each_rank(tmp_path):
    nemo = write_nemo(tmp_path / "tp.nemo", shard(full_state(False), 2, False),
                      CONFIG.format("gelu"))
    done = ckpt("ls", "--json", "--ranks", nemo)
    names = {t["name"] for t in json.loads(done.stdout)["tensors"]}
    assert "mp_rank_01.model.output_layer.weight" in names
    assert len(names) == 2 * len(full_state(False))


def test_a_tensor_no_rule_covers_is_not_guessed(tmp_path):
    ranks = shard(full_state(False), 2, False)
    for i, sd in enumerate(ranks):
        sd["model.adapter.mystery"] = torch.full((2, 2), float(i))
    nemo = write_nemo(tmp_path / "tp.nemo", ranks, CONFIG.format("gelu"))
    with inspector.open(nemo) as c:
        assert "mp_rank_00.model.adapter.mystery" in c
        note = next(n for n in c.notes if n.startswith("model-parallel .nemo"))
        assert "no tensor-parallel split rule covers model.adapter.mystery" in note


def two_layer_state() -> dict[str, torch.Tensor]:
    """full_state with a second decoder layer (a copy of the first's shapes)."""
    state = full_state(False)
    g = torch.Generator().manual_seed(9)
    for name, t in list(state.items()):
        if ".layers.0." in name:
            state[name.replace(".layers.0.", ".layers.1.")] = torch.randn(
                t.shape, generator=g).to(t.dtype)
    return state


def pipeline_stages(state: dict[str, torch.Tensor]) -> list[dict[str, torch.Tensor]]:
    """Megatron's two pipeline stages: the embedding and layer 0; layer 1 (numbered 0 in its
    stage), the final norm and the output layer."""
    first = {n: t for n, t in state.items() if "embedding" in n or ".layers.0." in n}
    last = {n.replace(".layers.1.", ".layers.0."): t for n, t in state.items()
            if n not in first and ".layers.0." not in n}
    return [first, last]


def test_pipeline_stages_join_with_global_layer_numbers(tmp_path):
    state = two_layer_state()
    ranks = [rank for stage in pipeline_stages(state) for rank in shard(stage, 2, False)]
    names = [f"tp_rank_{tp:02d}_pp_rank_{pp:03d}" for pp in range(2) for tp in range(2)]
    nemo = tmp_path / "pp.nemo"
    with tarfile.open(nemo, "w") as tar:
        for name, data in [("./model_config.yaml", CONFIG.format("gelu").encode()),
                           *((f"./{n}/model_weights.ckpt", _saved(sd)) for n, sd in zip(
                               names, ranks, strict=True))]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    full = tmp_path / "full.pt"
    torch.save(state, full)
    with inspector.open(nemo) as c:
        assert sorted(c) == sorted(state)
        assert any("2 tensor-parallel x 2 pipeline-parallel" in n for n in c.notes)
        w = "model.decoder.layers.1.self_attention.linear_proj.weight"
        assert (c.array(w) == state[w].numpy()).all()
    same = ckpt("diff", nemo, full)
    assert same.returncode == 0, same.stdout + same.stderr
    ranks_listed = ckpt("ls", "--json", "--ranks", nemo)
    listed = {t["name"] for t in json.loads(ranks_listed.stdout)["tensors"]}
    assert "tp_rank_01_pp_rank_001.model.output_layer.weight" in listed


def _saved(sd: dict[str, torch.Tensor]) -> bytes:
    buf = io.BytesIO()
    torch.save(sd, buf)
    return buf.getvalue()


def test_gated_is_read_from_the_config():
    assert is_gated({"activation": "SwiGLU"})
    assert is_gated({"gated_linear_unit": True})
    assert not is_gated({"activation": "gelu"})
    assert not is_gated(None)


def test_merged_ranks_convert_to_one_file_and_a_nemo_output_is_refused_by_name(tmp_path):
    state = full_state(True)
    nemo = write_nemo(tmp_path / "tp.nemo", shard(state, 2, True), CONFIG.format("swiglu"))
    done = ckpt("convert", nemo, "-o", tmp_path / "whole.pt")
    assert done.returncode == 0, done.stderr
    back = torch.load(tmp_path / "whole.pt", weights_only=True)
    assert all(torch.equal(back[n], t) for n, t in state.items())
    refused = ckpt("convert", nemo, "-o", tmp_path / "again.nemo")
    assert refused.returncode == 2
    assert f"{tmp_path / 'again.nemo'}: a .nemo output needs" in refused.stderr
    assert ".tmp-" not in refused.stderr  # the user's path, not the temp file's
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tp.nemo", "whole.pt"]
