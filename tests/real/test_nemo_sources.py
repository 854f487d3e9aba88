"""A NeMo RNNT BPE target assembled from several sources written by NeMo 3.0: the encoder from a
CTC model, the decoder and joint from another RNNT BPE model. `ckpt apply --accept-proposed`
never takes the rows both sources fit (ambiguous) in silence: exit 1 naming them; written with
--skip-ambiguous they keep the target's init; prefixed per-module sources or a rule restricted
to one source label remove the ambiguity. Every output is restored by NeMo's `restore_from` and
compared with the source each module was meant to come from."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from real_helpers import NemoModels, state_arrays
from subproc import ckpt

import inspector
from inspector.tree import fold_names

pytest.importorskip("nemo.collections.asr", reason="the real-library tier needs nemo_toolkit[asr]")

Arrays = dict[str, np.ndarray]


@pytest.fixture(scope="module")
def fresh_target(nemo_models_built: NemoModels, tmp_path_factory: pytest.TempPathFactory
                 ) -> tuple[Path, Arrays]:
    """Another RNNT BPE model with the session's tokenizer, at its own random init: the target."""
    import nemo_models
    from nemo.collections.asr.models import EncDecRNNTBPEModel

    tokenizer = nemo_models_built.bpe_path.parent / "tokenizer"
    model = nemo_models.build(EncDecRNNTBPEModel, nemo_models.rnnt_bpe_config(tokenizer), 7)
    path = tmp_path_factory.mktemp("target") / "fresh.nemo"
    model.save_to(str(path))
    return path, state_arrays(model)


def _restored(path: Path) -> Arrays:
    from nemo.collections.asr.models import EncDecRNNTBPEModel

    return state_arrays(EncDecRNNTBPEModel.restore_from(str(path), map_location="cpu"))


def _assert_from(got: Arrays, want: Callable[[str], Arrays]) -> None:
    """Every tensor of the restored model equals the one of the model `want(name)` names."""
    for name, arr in got.items():
        np.testing.assert_array_equal(arr, want(name)[name], err_msg=name)


def _module(name: str) -> str:
    return name.split(".", 1)[0]


def test_two_whole_models_ambiguous_rows_refused_then_skipped(
    nemo_models_built: NemoModels, fresh_target: tuple[Path, Arrays], tmp_path: Path
) -> None:
    m, (target, init) = nemo_models_built, fresh_target
    ambiguous = inspector.propose([str(m.ctc_path), str(m.bpe_path)], str(target)).ambiguous()
    assert {_module(n) for n in ambiguous} == {"encoder", "preprocessor"}  # both hold them
    out = tmp_path / "out.nemo"
    base = ["apply", "--source", m.ctc_path, "--source", m.bpe_path, "--target", target,
            "--accept-proposed", "-o", out]
    for extra in ((), ("--strict",)):
        r = ckpt(*base, *extra)
        assert r.returncode == 1, r.stdout + r.stderr
        assert f"{len(ambiguous)} ambiguous row(s)" in r.stderr
        assert all(name in r.stderr for name in fold_names(ambiguous)[:12])  # the error's list
        assert "Traceback" not in r.stderr
        assert not out.exists()

    r = ckpt(*base, "--skip-ambiguous")
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"skipped ambiguous: {len(ambiguous)} row(s)" in r.stdout
    ctc, bpe = state_arrays(m.ctc), state_arrays(m.bpe)
    # the ambiguous modules keep the target's init, the decoder and joint come from the RNNT
    _assert_from(_restored(out), lambda n: init if _module(n) in ("encoder", "preprocessor")
                 else bpe)
    assert not np.array_equal(ctc["encoder.pre_encode.out.weight"],
                              init["encoder.pre_encode.out.weight"])  # the comparison can fail


def test_sources_told_apart_write_each_module_from_its_source(
    nemo_models_built: NemoModels, fresh_target: tuple[Path, Arrays], tmp_path: Path
) -> None:
    m, (target, init) = nemo_models_built, fresh_target
    ctc, bpe = state_arrays(m.ctc), state_arrays(m.bpe)
    intended = {"encoder": ctc, "decoder": bpe, "joint": bpe, "preprocessor": init}

    # per-module state dicts, as NeMo's modules give them, each under its prefix
    parts = {"encoder": m.ctc.encoder, "decoder": m.bpe.decoder, "joint": m.bpe.joint}
    args: list[str | Path] = []
    for prefix, module in parts.items():
        torch.save(module.state_dict(), tmp_path / f"{prefix}.pt")
        args += ["--source", f"{prefix}.={tmp_path / f'{prefix}.pt'}"]
    out = tmp_path / "modules.nemo"
    r = ckpt("apply", *args, "--target", target, "--accept-proposed", "-o", out)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "skipped ambiguous" not in r.stdout
    assert "encoder.pre_encode.out.weight <- encoder.pt:pre_encode.out.weight" in r.stdout
    _assert_from(_restored(out), lambda n: intended[_module(n)])

    # two whole models, and an inline rule restricted to one of them by its label
    rules = ("{rules: [{drop: 'encoder.*', source: bpe.nemo}, "
             "{drop: 'preprocessor.*', source: bpe.nemo}]}")
    out = tmp_path / "ruled.nemo"
    r = ckpt("apply", "--source", m.ctc_path, "--source", m.bpe_path, "--target", target,
             "--rules", rules, "--accept-proposed", "-o", out)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "skipped ambiguous" not in r.stdout
    intended["preprocessor"] = ctc
    _assert_from(_restored(out), lambda n: intended[_module(n)])
