"""Hugging Face folders written by transformers' own save_pretrained: safetensors, .bin and
sharded; read back equal to the model, and a migration loaded by from_pretrained."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from real_helpers import state_arrays
from subproc import ckpt

import inspector

transformers = pytest.importorskip("transformers", reason="the real tier needs transformers")

LAYOUTS = {
    "safetensors": {"safe_serialization": True},
    "bin": {"safe_serialization": False},
    "sharded": {"safe_serialization": True, "max_shard_size": "100KB"},
}
ARCHS = ["wav2vec2", "hubert", "whisper"]


def _tiny(arch: str, seed: int) -> Any:
    torch.manual_seed(seed)
    audio = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
             "intermediate_size": 64, "conv_dim": (16, 16), "conv_stride": (5, 4),
             "conv_kernel": (10, 8), "num_conv_pos_embeddings": 16,
             "num_conv_pos_embedding_groups": 2}
    if arch == "wav2vec2":
        return transformers.Wav2Vec2ForCTC(transformers.Wav2Vec2Config(vocab_size=40, **audio))
    if arch == "hubert":
        return transformers.HubertModel(transformers.HubertConfig(**audio))
    cfg = transformers.WhisperConfig(
        vocab_size=96, num_mel_bins=16, d_model=32, encoder_layers=1, decoder_layers=1,
        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64,
        decoder_ffn_dim=64, max_source_positions=32, max_target_positions=32,
        decoder_start_token_id=1, pad_token_id=0, bos_token_id=1, eos_token_id=2,
    )
    return transformers.WhisperForConditionalGeneration(cfg)


def _inputs(arch: str) -> dict[str, Any]:
    g = torch.Generator().manual_seed(0)
    if arch == "whisper":
        return {"input_features": torch.randn(1, 16, 64, generator=g),
                "decoder_input_ids": torch.tensor([[1, 5, 7]])}
    return {"input_values": torch.randn(1, 4000, generator=g)}


def _output(model: Any, arch: str) -> Any:
    with torch.no_grad():
        out = model.eval()(**_inputs(arch))
    return out.last_hidden_state if arch == "hubert" else out.logits


@pytest.fixture(scope="session")
def hf_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """arch -> (model A, model B, {layout: folder of A}, folder of B as safetensors)."""
    root = tmp_path_factory.mktemp("hf")
    out: dict[str, Any] = {}
    for arch in ARCHS:
        a, b = _tiny(arch, 1).eval(), _tiny(arch, 2).eval()
        folders = {}
        for layout, kwargs in LAYOUTS.items():
            folders[layout] = root / f"{arch}-a-{layout}"
            a.save_pretrained(folders[layout], **kwargs)
        b.save_pretrained(root / f"{arch}-b")
        out[arch] = (a, b, folders, root / f"{arch}-b")
    return out


def _tied_aliases(model: Any) -> dict[str, set[str]]:
    """name -> the other state-dict names that share its storage and offset (tied weights)."""
    by_ptr: dict[tuple[int, tuple[int, ...]], list[str]] = {}
    for name, t in model.state_dict().items():
        by_ptr.setdefault((t.data_ptr(), tuple(t.shape)), []).append(name)
    return {n: set(g) - {n} for g in by_ptr.values() for n in g}


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("arch", ARCHS)
def test_open_folder_equals_state_dict(hf_models: dict[str, Any], arch: str, layout: str) -> None:
    model, _, folders, _ = hf_models[arch]
    if layout == "sharded":
        assert (folders[layout] / "model.safetensors.index.json").exists()
    ck = inspector.open(folders[layout])
    live = state_arrays(model)
    aliases = _tied_aliases(model)
    assert set(ck) <= set(live)
    for name in set(live) - set(ck):  # a tied weight transformers stores once
        assert aliases[name] & set(ck), f"{name} missing and not tied to a stored tensor"
    for name in ck:
        t = ck[name]
        assert (t.shape, t.dtype) == (live[name].shape, str(live[name].dtype)), name
        assert ck.array(name).tobytes() == live[name].tobytes(), name


@pytest.mark.parametrize("arch", ARCHS)
def test_digests_agree_across_layouts(hf_models: dict[str, Any], arch: str) -> None:
    _, _, folders, _ = hf_models[arch]
    digests = {}
    for layout, folder in folders.items():
        r = ckpt("hash", "--json", folder)
        assert r.returncode == 0, r.stderr
        digests[layout] = {t["name"]: t["digest"] for t in json.loads(r.stdout)["tensors"]}
    assert digests["safetensors"] == digests["sharded"]
    common = set(digests["safetensors"]) & set(digests["bin"])
    assert common == set(digests["safetensors"])
    assert all(digests["bin"][k] == digests["safetensors"][k] for k in common)
    for folder in folders.values():
        for args in (["ls", folder], ["scan", "--strict", folder]):
            r = ckpt(*args)
            assert r.returncode == 0, (args, r.stdout, r.stderr)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("out_name", ["out-folder", "out.safetensors"])
def test_apply_round_trip_loads_in_transformers(
    hf_models: dict[str, Any], arch: str, out_name: str, tmp_path: Path
) -> None:
    a, b, folders, b_folder = hf_models[arch]
    out = tmp_path / out_name
    r = ckpt("apply", "--source", folders["sharded"], "--target", b_folder,
             "--accept-proposed", "-o", out)
    assert r.returncode == 0, r.stdout + r.stderr
    if out.suffix == ".safetensors":  # a bare weights file: put it in a folder with B's config
        folder = tmp_path / "loaded"
        folder.mkdir()
        (folder / "config.json").write_bytes((b_folder / "config.json").read_bytes())
        out.rename(folder / "model.safetensors")
        out = folder
    loaded, info = type(b).from_pretrained(out, output_loading_info=True)
    problems = {k: info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys")}
    assert not any(problems.values()), problems
    got, want = state_arrays(loaded), state_arrays(a)
    assert sorted(got) == sorted(want)
    for name in got:
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)
    assert torch.equal(_output(loaded, arch), _output(a, arch))
    assert not torch.equal(_output(b, arch), _output(a, arch))
