"""load_into: a plan or a checkpoint applied to a live nn.Module, with the same report."""

from __future__ import annotations

from pathlib import Path

import torch

from inspector.live import load_into
from inspector.mapping import propose


def _model(vocab: int = 5) -> torch.nn.Module:
    return torch.nn.ModuleDict({
        "encoder": torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Linear(16, 8)),
        "decoder": torch.nn.Linear(8, vocab),
    })


def test_load_from_checkpoint_skips_shape_mismatch_and_freezes(tmp_path: Path) -> None:
    torch.manual_seed(0)
    src = _model(vocab=7)
    torch.save(src.state_dict(), tmp_path / "src.pt")
    model = _model(vocab=5)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    report = load_into(model, tmp_path / "src.pt", freeze=True)
    assert report.mode == "live"
    for k, v in model.state_dict().items():
        if k.startswith("encoder"):
            assert torch.equal(v, src.state_dict()[k])
            assert not dict(model.named_parameters())[k].requires_grad
        else:
            assert torch.equal(v, before[k])
            assert dict(model.named_parameters())[k].requires_grad
    assert sorted(report.frozen) == sorted(k for k in before if k.startswith("encoder"))
    assert {r.target for r in report.skipped} >= {"decoder.weight"}
    assert report.verification is not None
    assert report.verification.ok


def test_load_approved_plan_only(tmp_path: Path) -> None:
    torch.manual_seed(1)
    src = _model()
    torch.save(src.state_dict(), tmp_path / "src.pt")
    model = _model()
    torch.save(model.state_dict(), tmp_path / "tgt.pt")
    plan = propose(tmp_path / "src.pt", tmp_path / "tgt.pt")
    plan.approve(["encoder.0.weight"])
    plan.reject([n for n in plan.entries if n != "encoder.0.weight"])
    plan.save(tmp_path / "plan.yaml")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    report = load_into(model, tmp_path / "plan.yaml")
    assert [r.target for r in report.loaded] == ["encoder.0.weight"]
    for k, v in model.state_dict().items():
        want = src.state_dict()[k] if k == "encoder.0.weight" else before[k]
        assert torch.equal(v, want), k
