"""NeMo ASR checkpoints written by NeMo itself: reading them, and the char -> BPE RNNT
migration restored by NeMo and run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from real_helpers import NemoModels, state_arrays
from subproc import ckpt

import inspector
from inspector.hashing import digest_array

pytest.importorskip("nemo.collections.asr", reason="the real-library tier needs nemo_toolkit[asr]")

KINDS = ["char", "bpe", "ctc"]


def _model_and_path(models: NemoModels, kind: str) -> tuple[Any, Path]:
    return getattr(models, kind), getattr(models, f"{kind}_path")


def assert_matches_state(ck: inspector.Checkpoint, live: dict[str, np.ndarray]) -> None:
    """Same names, shapes, dtypes and bytes as the live state dict."""
    assert sorted(ck) == sorted(live)
    for name, want in live.items():
        t = ck[name]
        assert (t.shape, t.dtype) == (want.shape, str(want.dtype)), name
        got = ck.array(name)
        assert got.tobytes() == np.ascontiguousarray(want).tobytes(), name


@pytest.mark.parametrize("kind", KINDS)
def test_open_equals_state_dict(nemo_models_built: NemoModels, kind: str) -> None:
    model, path = _model_and_path(nemo_models_built, kind)
    assert_matches_state(inspector.open(path), state_arrays(model))


@pytest.mark.parametrize("kind", KINDS)
def test_cli_ls_hash_scan_check_pass(nemo_models_built: NemoModels, kind: str) -> None:
    _, path = _model_and_path(nemo_models_built, kind)
    commands = (["ls", path], ["hash", path], ["scan", "--strict", path],
                ["check", path, "--against", path])
    for args in commands:
        r = ckpt(*args)
        assert r.returncode == 0, (args, r.stdout, r.stderr)


@pytest.mark.parametrize("kind", KINDS)
def test_cli_hash_equals_live_tensor_digest(nemo_models_built: NemoModels, kind: str) -> None:
    model, path = _model_and_path(nemo_models_built, kind)
    r = ckpt("hash", "--json", path)
    assert r.returncode == 0, r.stderr
    printed = {t["name"]: t["digest"] for t in json.loads(r.stdout)["tensors"]}
    live = state_arrays(model)
    assert sorted(printed) == sorted(live)
    for name, arr in live.items():
        assert printed[name] == str(digest_array(arr)), name


def _features(seed: int) -> tuple[Any, Any]:
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(2, 80, 64, generator=g)
    return feats, torch.tensor([64, 48])


def _encode(model: Any, feats: Any, lengths: Any) -> Any:
    with torch.no_grad():
        out, out_len = model.encoder(audio_signal=feats, length=lengths)
    return out, out_len


def test_char_to_bpe_migration_restores_and_runs(
    nemo_models_built: NemoModels, tmp_path: Path
) -> None:
    from nemo.collections.asr.models import EncDecRNNTBPEModel

    m = nemo_models_built
    plan, out = tmp_path / "plan.yaml", tmp_path / "out.nemo"
    r = ckpt("map", m.char_path, m.bpe_path, "-o", plan)
    assert r.returncode == 0, r.stdout + r.stderr
    r = ckpt("apply", plan, "--accept-proposed", "-o", out)
    assert r.returncode == 0, r.stdout + r.stderr

    assert ckpt("check", out, "--against", m.bpe_path).returncode == 0
    r = ckpt("check", out, "--against", m.char_path)  # the vocabulary-facing layers differ
    assert r.returncode == 1
    assert "joint.joint_net.1.bias" in r.stdout

    restored = EncDecRNNTBPEModel.restore_from(str(out), map_location="cpu").eval()
    got, char, bpe = (state_arrays(x) for x in (restored, m.char, m.bpe))
    assert sorted(got) == sorted(bpe)
    assert any(k.startswith("encoder.") for k in got)
    for name, arr in got.items():
        want = char[name] if name.startswith(("encoder.", "preprocessor.")) else bpe[name]
        np.testing.assert_array_equal(arr, want, err_msg=name)
    assert restored.tokenizer.vocab_size == m.bpe.tokenizer.vocab_size

    feats, lengths = _features(0)
    (a, a_len), (b, b_len) = _encode(restored, feats, lengths), _encode(m.char, feats, lengths)
    assert torch.equal(a_len, b_len)
    assert torch.equal(a, b)
    audio = torch.randn(2, 8000, generator=torch.Generator().manual_seed(1))
    lengths = torch.tensor([8000, 6000])
    with torch.no_grad():
        enc, enc_len = restored.forward(input_signal=audio, input_signal_length=lengths)
        ref, ref_len = m.char.forward(input_signal=audio, input_signal_length=lengths)
    assert torch.equal(enc_len, ref_len)
    assert torch.equal(enc, ref)


def _lightning_ckpt(model: Any, path: Path) -> None:
    import lightning.pytorch as pl

    trainer = pl.Trainer(
        accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False,
    )
    trainer.strategy.connect(model)
    trainer.save_checkpoint(str(path))


@pytest.fixture(scope="module")
def char_lightning_ckpt(
    nemo_models_built: NemoModels, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    path = tmp_path_factory.mktemp("lightning") / "char.ckpt"
    _lightning_ckpt(nemo_models_built.char, path)
    return path


def test_lightning_ckpt_lists_state_dict(char_lightning_ckpt: Path) -> None:
    want = torch.load(char_lightning_ckpt, map_location="cpu", weights_only=False)["state_dict"]
    live = {k: v.numpy() for k, v in want.items()}
    assert_matches_state(inspector.open(char_lightning_ckpt), live)


def test_lightning_ckpt_as_apply_source(
    nemo_models_built: NemoModels, char_lightning_ckpt: Path, tmp_path: Path
) -> None:
    from nemo.collections.asr.models import EncDecRNNTBPEModel

    m, out = nemo_models_built, tmp_path / "out.nemo"
    r = ckpt("apply", "--source", char_lightning_ckpt, "--target", m.bpe_path,
             "--accept-proposed", "-o", out)
    assert r.returncode == 0, r.stdout + r.stderr
    restored = EncDecRNNTBPEModel.restore_from(str(out), map_location="cpu")
    got, char = state_arrays(restored), state_arrays(m.char)
    for name in (k for k in got if k.startswith("encoder.")):
        np.testing.assert_array_equal(got[name], char[name], err_msg=name)
