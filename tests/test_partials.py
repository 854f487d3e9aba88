"""No silent partials: target tensors that keep their init without a declared reason are warned
about by `ckpt map`, `ckpt apply` (text and JSON) and refused by --strict / strict=True."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from subproc import ckpt

import inspector
from inspector.demo import build_demo
from inspector.errors import PartialTransferError
from inspector.live import load_into
from inspector.mapping import propose

# a changed conv kernel: the weights mismatch, their biases follow them (FOLLOWS_LEAD)
CONVS = ("encoder.layers.{0..3}.conv.depthwise_conv.weight, "
         "encoder.layers.{0..3}.conv.depthwise_conv.bias")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("demo")
    build_demo(folder)
    return folder


def test_map_warns_of_partials_and_counts_them_to_review(demo: Path, tmp_path: Path) -> None:
    r = ckpt("map", demo / "rnnt_char.pt", demo / "rnnt_bpe.nemo", "-o", tmp_path / "plan.yaml")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert (
        f"WARNING: 8 target tensor(s) keep their init with no declared reason (shape mismatch, "
        f"no source, ambiguous): {CONVS}; ckpt apply --strict refuses such a plan"
    ) in lines
    assert lines[-2].startswith("WARNING: module encoder is copied in part: 160 of 168 tensors "
                                "copy, 8 keep their init; review its copies: ")
    # the vocabulary change is declared: decoder and joint have nothing to review
    assert any(x.startswith("encoder 99.7% ") and x.endswith(", 8 to review]") for x in lines)
    assert not any("to review" in x for x in lines if x.startswith(("decoder", "joint")))
    assert "see the rows flagged shape-mismatch" not in r.stdout
    data = json.loads(ckpt("map", demo / "rnnt_char.pt", demo / "rnnt_bpe.nemo", "--json").stdout)
    assert data["partial"] == {"count": 8, "names": CONVS.split(", ")}
    [module] = data["partial_modules"]
    assert module["module"].startswith("module encoder is copied in part: 160 of 168")


def test_apply_reports_partials_and_strict_refuses_before_writing(
    demo: Path, tmp_path: Path
) -> None:
    plan = tmp_path / "plan.yaml"
    assert ckpt("map", demo / "rnnt_char.pt", demo / "rnnt_bpe.nemo", "-o", plan).returncode == 0
    out = tmp_path / "out.nemo"
    r = ckpt("apply", plan, "--accept-proposed", "-o", out)
    assert r.returncode == 0, r.stderr
    assert (
        "WARNING: 8 target tensor(s) keep their init with no declared reason (shape mismatch, "
        f"no source, ambiguous); the output is a partial transfer: {CONVS}"
    ) in r.stdout.splitlines()
    assert "params (87.7%)" in r.stdout.splitlines()[0]
    r = ckpt("apply", plan, "--accept-proposed", "-o", tmp_path / "j.nemo", "--json")
    assert json.loads(r.stdout)["partial"] == {"count": 8, "names": CONVS.split(", ")}
    strict = tmp_path / "strict.nemo"
    r = ckpt("apply", plan, "--accept-proposed", "--strict", "-o", strict)
    assert r.returncode == 1
    assert f"strict: 8 target tensor(s) would keep their init with no declared reason: {CONVS}" in (
        r.stderr
    )
    assert "Nothing was written" in r.stderr
    assert "Traceback" not in r.stderr
    assert not strict.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["j.nemo", "out.nemo", "plan.yaml"]


def test_strict_passes_once_the_keeps_are_declared(demo: Path, tmp_path: Path) -> None:
    plan = propose(demo / "rnnt_char.pt", demo / "rnnt_bpe.nemo")
    plan.reject(plan.partials())  # the user's reject declares "keep my init"
    plan.save(tmp_path / "plan.yaml")
    r = ckpt("apply", tmp_path / "plan.yaml", "--accept-proposed", "--strict",
             "-o", tmp_path / "out.nemo")
    assert r.returncode == 0, r.stderr
    assert "WARNING" not in r.stdout


def _model(kernel: int) -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Conv1d(4, 4, kernel))


def test_load_into_strict_leaves_the_module_untouched(tmp_path: Path) -> None:
    torch.manual_seed(0)
    torch.save(_model(3).state_dict(), tmp_path / "src.pt")
    model = _model(5)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(PartialTransferError, match=r"1\.weight"):
        load_into(model, tmp_path / "src.pt", strict=True)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    report = load_into(model, tmp_path / "src.pt")
    assert report.partial == ["1.weight", "1.bias"]  # the bias follows its weight
    assert "WARNING: 2 target tensor(s)" in report.to_text()


def test_apply_strict_in_scripts(tmp_path: Path) -> None:
    torch.save(_model(3).state_dict(), tmp_path / "src.pt")
    torch.save(_model(5).state_dict(), tmp_path / "tgt.pt")
    plan = propose(tmp_path / "src.pt", tmp_path / "tgt.pt")
    with pytest.raises(PartialTransferError, match="Nothing was written"):
        inspector.apply(plan, tmp_path / "out.pt", accept_proposed=True, strict=True)
    assert not (tmp_path / "out.pt").exists()
