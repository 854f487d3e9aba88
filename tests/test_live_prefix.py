"""load_into(submodule, whole-model plan or checkpoint, prefix=...): the prefix is stripped, rows
outside it are ignored and counted, and a prefix that matches nothing is an error naming it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import inspector
from inspector.demo import build_demo
from inspector.errors import PlanError
from inspector.live import load_into
from inspector.mapping import propose


def _joint(vocab: int) -> torch.nn.Module:
    """A module with the demo's joint names (`pred`, `enc`, `joint_net.2`)."""
    joint = torch.nn.Module()
    joint.pred = torch.nn.Linear(160, 160)
    joint.enc = torch.nn.Linear(144, 160)
    joint.joint_net = torch.nn.Sequential(
        torch.nn.ReLU(), torch.nn.Dropout(0.0), torch.nn.Linear(160, vocab)
    )
    return joint


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> inspector.demo.DemoFiles:
    return build_demo(tmp_path_factory.mktemp("demo"))


def _source(path: Path, prefix: str) -> dict[str, torch.Tensor]:
    ckpt = inspector.open(path)
    return {n[len(prefix):]: torch.from_numpy(ckpt.array(n).copy()) for n in ckpt
            if n.startswith(prefix)}


def test_checkpoint_into_submodule(demo: inspector.demo.DemoFiles) -> None:
    joint = _joint(vocab=257)
    report = load_into(joint, demo.target, prefix="joint.")
    expected = _source(demo.target, "joint.")
    state = joint.state_dict()
    assert sorted(state) == sorted(expected)
    for name, value in expected.items():
        assert torch.equal(state[name], value), name
    assert len(report.loaded) == 6
    total = len(inspector.open(demo.target))
    assert report.outside_prefix == total - 6
    assert report.prefix == "joint."
    assert f"outside prefix 'joint.': {total - 6} ignored" in report.to_text()
    assert report.to_dict()["outside_prefix"] == total - 6
    assert report.verification is not None
    assert report.verification.ok


def test_whole_model_plan_into_submodule(demo: inspector.demo.DemoFiles, tmp_path: Path) -> None:
    """A whole-model plan file, only its `joint.` rows loaded; the prefix without its dot is
    taken as meant."""
    plan = propose(demo.target, demo.target)
    plan.approve(list(plan.entries))
    plan.save(tmp_path / "plan.yaml")
    joint = _joint(vocab=257)
    report = load_into(joint, tmp_path / "plan.yaml", prefix="joint")
    state = joint.state_dict()
    for name, value in _source(demo.target, "joint.").items():
        assert torch.equal(state[name], value), name
    assert report.outside_prefix == len(plan.entries) - 6
    assert report.accepted_without_review == []


def test_vocabulary_change_keeps_the_joint(demo: inspector.demo.DemoFiles) -> None:
    """char -> BPE: the whole-model decision (the joint faces the vocabulary: it keeps its init)
    holds when the plan is loaded into the joint alone."""
    plan = propose(demo.source, demo.target)
    joint = _joint(vocab=257)
    before = {k: v.clone() for k, v in joint.state_dict().items()}
    report = load_into(joint, plan, prefix="joint.")
    assert report.loaded == []
    assert {r.target for r in report.skipped} == set(before)
    assert {name for _, name, _ in report.unused} == {f"joint.{n}" for n in before}
    assert all(torch.equal(v, before[k]) for k, v in joint.state_dict().items())


def test_prefix_matching_nothing_is_an_error(demo: inspector.demo.DemoFiles) -> None:
    joint = _joint(vocab=257)
    before = {k: v.clone() for k, v in joint.state_dict().items()}
    with pytest.raises(PlanError, match=r"prefix 'jiont\.'"):
        load_into(joint, demo.target, prefix="jiont.")
    with pytest.raises(PlanError, match=r"prefix 'jiont.' \(its targets start with decoder\."):
        load_into(joint, propose(demo.source, demo.target), prefix="jiont.")
    assert all(torch.equal(v, before[k]) for k, v in joint.state_dict().items())


def test_plan_row_missing_from_submodule_names_the_plan_name(
    demo: inspector.demo.DemoFiles,
) -> None:
    joint = torch.nn.Module()
    joint.pred = torch.nn.Linear(160, 160)
    plan = propose(demo.target, demo.target)
    with pytest.raises(
        PlanError, match=r"buffer enc.weight, enc.bias, .* \(the plan's joint.enc.weight, "
    ):
        load_into(joint, plan, prefix="joint.")


def test_ambiguous_rows_are_refused_unless_skipped(tmp_path: Path) -> None:
    """Two sources that fit equally: load_into decides nothing silently (issue 17, item 3)."""
    from inspector.errors import AmbiguousRowsError

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Linear(3, 2))
    torch.save(model.state_dict(), tmp_path / "a.pt")
    torch.save(model.state_dict(), tmp_path / "b.pt")
    target = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Linear(3, 2))
    plan = propose([tmp_path / "a.pt", tmp_path / "b.pt"], inspector.open(target))
    assert plan.ambiguous()
    before = {k: v.clone() for k, v in target.state_dict().items()}
    for _ in range(2):  # called twice, the same refusal
        with pytest.raises(AmbiguousRowsError, match=r"4 ambiguous row\(s\)"):
            load_into(target, plan)
        assert all(torch.equal(v, before[k]) for k, v in target.state_dict().items())
    report = load_into(target, plan, skip_ambiguous=True)
    assert sorted(report.ambiguous_skipped) == sorted(before)
    assert report.loaded == []


def test_a_plan_cut_to_a_prefix_answers_for_its_own_names(
    demo: inspector.demo.DemoFiles,
) -> None:
    """The cut plan is not bound to the whole model's checkpoints any more: asking it about its
    (renamed) rows does not look them up among the whole model's names."""
    from inspector.live import _under

    plan, outside = _under(propose(demo.source, demo.target), "joint.")
    assert outside > 0
    assert plan._context is None
    assert all(not n.startswith("joint.") for n in plan.entries)
    assert plan.partial_modules() == {}
    assert set(plan.summary()) == {"enc", "pred", "joint_net"}
