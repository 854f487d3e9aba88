"""Layer selection on real NeMo 3.0 models (issue 15 part 3): a 2-layer Conformer RNNT student
initialised from a 4-layer teacher with `--layers every:2`, written as a .nemo NeMo restores."""

from __future__ import annotations

from pathlib import Path

import nemo_models
import pytest
import torch
from subproc import ckpt

pytest.importorskip("nemo.collections.asr", reason="the real-library tier needs nemo_toolkit[asr]")


def _rnnt(n_layers: int, seed: int):  # type: ignore[no-untyped-def]
    from nemo.collections.asr.models import EncDecRNNTModel

    cfg = nemo_models.rnnt_char_config()
    cfg["encoder"] = {**cfg["encoder"], "n_layers": n_layers}
    return nemo_models.build(EncDecRNNTModel, cfg, seed)


def test_every_other_conformer_layer_into_a_shallower_student(tmp_path: Path) -> None:
    from nemo.collections.asr.models import EncDecRNNTModel

    teacher, student = tmp_path / "teacher.nemo", tmp_path / "student.nemo"
    _rnnt(4, 1).save_to(str(teacher))
    _rnnt(2, 2).save_to(str(student))
    r = ckpt("map", teacher, student, "--layers", "every:2", "-o", tmp_path / "plan.yaml")
    assert r.returncode == 0, r.stderr
    assert "encoder 100% (2/2 layers complete)" in r.stdout
    assert "a layer not selected by encoder.layers.{2*n} -> encoder.layers.{n}, n in 0..1" in (
        r.stdout)
    out = tmp_path / "out.nemo"
    r = ckpt("apply", "--source", teacher, "--target", student, "--layers", "every:2",
             "--accept-proposed", "--strict", "-o", out)
    assert r.returncode == 0, r.stderr
    got = EncDecRNNTModel.restore_from(str(out), map_location="cpu").state_dict()
    want = EncDecRNNTModel.restore_from(str(teacher), map_location="cpu").state_dict()
    assert any(n.startswith("encoder.layers.1.") for n in got)
    for name, value in got.items():
        if name.startswith("encoder.layers."):
            k, rest = name.split(".", 3)[2:]
            source = want[f"encoder.layers.{2 * int(k)}.{rest}"]
        else:
            source = want[name]
        assert torch.equal(value, source), name
        assert value.numpy().tobytes() == source.numpy().tobytes(), name
    r = ckpt("plan", "show", tmp_path / "plan.yaml")
    assert "(--layers every:2)" in r.stdout
