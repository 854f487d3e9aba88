"""Several sources and submodules with real NeMo 3.0 checkpoints: `ckpt check --plan` binds each
source of a two-source plan (encoder from one .nemo, decoder and joint from another) to its own
file, and `load_into(model.joint, ..., prefix="joint.")` loads a whole model's joint into a live
NeMo joint."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from real_helpers import NemoModels, state_arrays
from subproc import ckpt

import inspector
from inspector.live import load_into
from inspector.mapping import propose

pytest.importorskip("nemo.collections.asr", reason="the real-library tier needs nemo_toolkit[asr]")


@pytest.fixture(scope="module")
def two_source_plan(
    nemo_models_built: NemoModels, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """enc.nemo (the char RNNT: its encoder) + dec.nemo (the BPE RNNT: everything else) ->
    target.nemo (a copy of the BPE RNNT), every row chosen by source and approved."""
    m, folder = nemo_models_built, tmp_path_factory.mktemp("two_sources")
    for src, name in ((m.char_path, "enc.nemo"), (m.bpe_path, "dec.nemo"),
                      (m.bpe_path, "target.nemo")):
        shutil.copy(src, folder / name)
    plan = propose([str(folder / "enc.nemo"), str(folder / "dec.nemo")],
                   str(folder / "target.nemo"))
    assert [s.label for s in plan.sources] == ["enc.nemo", "dec.nemo"]
    for name in plan.entries:
        plan.set_source(name, "enc.nemo" if name.startswith("encoder.") else "dec.nemo", name)
    plan.approve(list(plan.entries))
    plan.save(folder / "plan.yaml")
    return folder


def test_check_plan_binds_each_source_to_its_file(two_source_plan: Path) -> None:
    folder = two_source_plan
    ok = ckpt("check", "--plan", "plan.yaml", "enc.nemo", "dec.nemo", "--against", "target.nemo",
              cwd=folder)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ckpt("check", "--plan", "plan.yaml", cwd=folder).returncode == 0  # the plan's paths
    # swapped: the encoders have the same shapes, the files are told apart by their headers
    swapped = ckpt("check", "--plan", "plan.yaml", "dec.nemo", "enc.nemo", cwd=folder)
    assert swapped.returncode == 1, swapped.stdout + swapped.stderr
    assert "dec.nemo: error: given for the plan's source 'enc.nemo': header fingerprint" in (
        swapped.stdout)
    assert "enc.nemo: error: given for the plan's source 'dec.nemo': header fingerprint" in (
        swapped.stdout)
    one = ckpt("check", "--plan", "plan.yaml", "enc.nemo", cwd=folder)
    assert one.returncode == 2
    assert "the plan has 2 source(s) (enc.nemo, dec.nemo); 1 given" in one.stderr


def _reinit(module: Any) -> None:
    with torch.no_grad():
        for p in module.parameters():
            p.normal_()


def test_load_into_the_joint_of_a_live_model(nemo_models_built: NemoModels,
                                             tmp_path: Path) -> None:
    """A live BPE RNNT whose joint is re-initialised: the .nemo's `joint.*` (or a whole-model
    plan's joint rows) loaded into `model.joint`; nothing else of the model changes."""
    from nemo.collections.asr.models import EncDecRNNTBPEModel

    m = nemo_models_built
    model = EncDecRNNTBPEModel.restore_from(str(m.bpe_path), map_location="cpu").eval()
    saved = inspector.open(m.bpe_path)
    want = {n[len("joint."):]: saved.array(n) for n in saved if n.startswith("joint.")}
    assert want
    whole = propose(str(m.bpe_path), str(m.bpe_path))  # a whole-model plan
    whole.approve(list(whole.entries))
    for source in (m.bpe_path, whole):
        _reinit(model.joint)
        others = {k: v for k, v in state_arrays(model).items() if not k.startswith("joint.")}
        report = load_into(model.joint, source, prefix="joint.")
        got = state_arrays(model.joint)
        assert sorted(got) == sorted(want)
        for name, value in want.items():
            np.testing.assert_array_equal(got[name], value, err_msg=name)
        assert report.outside_prefix == len(saved) - len(want)
        assert report.verification is not None
        assert report.verification.ok
        after = {k: v for k, v in state_arrays(model).items() if not k.startswith("joint.")}
        assert all(np.array_equal(after[k], v) for k, v in others.items())
    # char -> BPE: the vocabulary changed, the whole joint keeps its init as for the whole model
    _reinit(model.joint)
    before = state_arrays(model.joint)
    report = load_into(model.joint, propose(str(m.char_path), str(m.bpe_path)), prefix="joint.")
    assert report.loaded == []
    assert {r.target for r in report.skipped} == set(want)
    assert all(np.array_equal(v, before[k]) for k, v in state_arrays(model.joint).items())
