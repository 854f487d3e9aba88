"""Module-level decisions on real NeMo 3.0 models, whatever the container (issue 17, items 1-2):
per-module state dicts, a whole-model .nemo loaded into a live submodule, and an encoder swapped
for another class (a Conformer for an LSTM) that shares `pre_encode` names with it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nemo_models
import pytest
import torch
from real_helpers import NemoModels
from subproc import ckpt

import inspector
from inspector.errors import PartialTransferError

pytest.importorskip("nemo.collections.asr", reason="the real-library tier needs nemo_toolkit[asr]")

MODULES = ("decoder", "joint")


@pytest.fixture(scope="module")
def per_module(nemo_models_built: NemoModels, tmp_path_factory: pytest.TempPathFactory
               ) -> Path:
    """`model.decoder.state_dict()` and `model.joint.state_dict()` of the char and BPE RNNTs,
    saved with torch.save as NeMo's per-module tutorials do."""
    folder = tmp_path_factory.mktemp("modules")
    for kind in ("char", "bpe"):
        model = getattr(nemo_models_built, kind)
        for module in MODULES:
            torch.save(getattr(model, module).state_dict(), folder / f"{module}_{kind}.pt")
    return folder


def _decisions(plan: inspector.Plan, prefix: str = "") -> dict[str, str]:
    return {n.removeprefix(prefix): e.effective for n, e in plan.entries.items()
            if n.startswith(prefix)}


@pytest.mark.parametrize("module", MODULES)
def test_per_module_files_decide_like_the_whole_model(
    nemo_models_built: NemoModels, per_module: Path, module: str
) -> None:
    whole = inspector.propose(nemo_models_built.char_path, nemo_models_built.bpe_path)
    alone = inspector.propose(per_module / f"{module}_char.pt", per_module / f"{module}_bpe.pt")
    assert _decisions(alone) == _decisions(whole, module + ".")
    assert set(_decisions(alone).values()) == {"keep"}  # the whole module keeps its init
    assert all("vocab-change" in e.flags for e in alone.entries.values())
    r = ckpt("map", per_module / f"{module}_char.pt", per_module / f"{module}_bpe.pt")
    assert r.returncode == 0, r.stderr
    assert "vocabulary changed 29 -> 65 (kept at target init)" in r.stdout
    counts = [line.split("[", 1)[1] for line in r.stdout.splitlines() if " copy, " in line]
    assert counts, r.stdout
    assert all(c.startswith("0 copy, ") for c in counts), r.stdout


@pytest.mark.parametrize("module", MODULES)
def test_whole_model_into_a_live_submodule_keeps_it_at_init(
    nemo_models_built: NemoModels, module: str
) -> None:
    bpe = _restore(nemo_models_built.bpe_path)
    part = getattr(bpe, module)
    before = {k: v.clone() for k, v in part.state_dict().items()}
    report = inspector.load_into(part, nemo_models_built.char_path, strict=True)
    assert report.loaded == []
    assert report.partial == []
    assert report.partial_modules == {}
    assert {r.reason for r in report.skipped} == {"vocabulary changed 29 -> 65"}
    assert all(torch.equal(v, part.state_dict()[k]) for k, v in before.items())


@pytest.fixture(scope="module")
def lstm_model(nemo_models_built: NemoModels, tmp_path_factory: pytest.TempPathFactory
               ) -> tuple[Any, Path]:
    from nemo.collections.asr.models import EncDecRNNTBPEModel

    folder = tmp_path_factory.mktemp("lstm")
    tok = nemo_models.train_tokenizer(folder / "tokenizer", 64)
    model = nemo_models.build(EncDecRNNTBPEModel, nemo_models.rnnt_lstm_bpe_config(tok), 4)
    model.save_to(str(folder / "lstm.nemo"))
    return model, folder / "lstm.nemo"


def test_encoder_swap_warns_of_the_encoder_copied_in_part(
    nemo_models_built: NemoModels, lstm_model: tuple[Any, Path], tmp_path: Path
) -> None:
    model, path = lstm_model
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(PartialTransferError,
                       match=r"module encoder is copied in part: .*ConformerEncoder -> RNNEncoder"):
        inspector.load_into(model, nemo_models_built.bpe_path, freeze=True, strict=True)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    report = inspector.load_into(model, nemo_models_built.bpe_path, freeze=True)
    [(detail, rows)] = report.partial_modules.items()
    assert detail.startswith("module encoder is copied in part: ")
    assert "its class changed (ConformerEncoder -> RNNEncoder)" in detail
    assert rows
    assert all(r.startswith("encoder.pre_encode.") for r in rows)
    assert f"WARNING: {detail}" in report.to_text()
    # the CLI says the same, and --strict exits 1 with nothing written
    r = ckpt("map", nemo_models_built.bpe_path, path)
    assert r.returncode == 0, r.stderr
    assert "WARNING: module encoder is copied in part" in r.stdout
    assert "ConformerEncoder -> RNNEncoder" in r.stdout
    out = tmp_path / "out.nemo"
    r = ckpt("apply", "--source", nemo_models_built.bpe_path, "--target", path,
             "--accept-proposed", "--strict", "-o", out)
    assert r.returncode == 1
    assert "module encoder is copied in part" in r.stderr
    assert "Traceback" not in r.stderr
    assert not out.exists()


def test_declaring_the_encoder_kept_passes_strict(
    nemo_models_built: NemoModels, lstm_model: tuple[Any, Path], tmp_path: Path
) -> None:
    """Keep the whole encoder (a rule): decoder and joint transfer, nothing is partial, and NeMo
    restores the output with them equal to the source's."""
    _, path = lstm_model
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules:\n  - keep: encoder.*\n")
    out = tmp_path / "out.nemo"
    r = ckpt("apply", "--source", nemo_models_built.bpe_path, "--target", path, "--rules", rules,
             "--accept-proposed", "--strict", "-o", out)
    assert r.returncode == 0, r.stderr
    restored, src = _restore(out), nemo_models_built.bpe
    for module in MODULES:
        got, want = getattr(restored, module).state_dict(), getattr(src, module).state_dict()
        assert all(torch.equal(got[k], want[k]) for k in want), module


def _restore(path: Path) -> Any:
    from nemo.collections.asr.models import ASRModel

    return ASRModel.restore_from(str(path), map_location="cpu").eval()
