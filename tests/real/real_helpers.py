"""Helpers the real-library tests share (a module, not conftest.py: tests/ has several
conftest.py files, and `from conftest import` would pick whichever was imported last)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


def state_arrays(module: Any) -> dict[str, np.ndarray]:
    """A live module's state dict as numpy arrays (name -> array)."""
    return {k: v.detach().cpu().numpy() for k, v in module.state_dict().items()}


@dataclass
class NemoModels:
    char: Any  # EncDecRNNTModel, eval mode
    bpe: Any  # EncDecRNNTBPEModel
    ctc: Any  # EncDecCTCModelBPE
    char_path: Path
    bpe_path: Path
    ctc_path: Path


def assert_applied_like_reference(converted: dict[str, Any], rules: str, model_class: Any,
                                  outputs: Any) -> None:
    """`ckpt apply` of the fairseq source into the HF target with `rules`, then the library's
    own `from_pretrained` of the output: nothing missing or left at init, every tensor equal to
    the reference model's, the same outputs (and the untouched target's differ, so the
    comparison can tell). `outputs(model, wave)` lists the tensors the model computes."""
    import json

    import torch
    from subproc import ckpt

    import inspector

    reference, out = converted["reference"], converted["out"]
    r = ckpt("apply", "--source", converted["source"], "--target", converted["target"],
             "--rules", rules, "-o", out, "--accept-proposed", "--json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    n_target = len(inspector.open(converted["target"]).keys())
    assert report["kept"] == []  # nothing left at its random init
    assert report["skipped"] == []
    assert len(report["loaded"]) == n_target
    assert report["params_loaded"] == report["params_total"]
    assert report["verification"]["ok"]

    model, info = model_class.from_pretrained(out, output_loading_info=True)
    model.eval()
    assert not info["missing_keys"], info
    assert not info["unexpected_keys"], info
    assert not info["mismatched_keys"], info
    got = model.state_dict()
    want = reference.state_dict()
    assert set(got) == set(want)
    differ = [k for k in want if not torch.equal(got[k], want[k])]
    assert differ == []

    torch.manual_seed(2)
    wave = torch.randn(2, 1600)
    for a, b in zip(outputs(model, wave), outputs(reference, wave), strict=True):
        assert torch.allclose(a, b, atol=1e-6), (a - b).abs().max()
    untouched = model_class.from_pretrained(converted["target"]).eval()
    assert not torch.allclose(outputs(untouched, wave)[0], outputs(reference, wave)[0])
