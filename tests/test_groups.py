"""Stateful modules move as a unit: norm buffers and weight-norm pairs follow their module's
weights (mapping.plan.STATEFUL_GROUPS), in proposals and in approve/reject."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from hypothesis import given
from hypothesis import strategies as st
from mapping_fixtures import _t, conformer_layer
from subproc import ckpt

import inspector
from inspector.mapping import propose
from inspector.mapping.groups import group_index
from inspector.mapping.plan import Entry, follow_groups, group_members, is_partial

BN = "encoder.layers.0.conv.batch_norm"


def _conformer(d: int) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for i in range(2):
        out.update(conformer_layer(f"encoder.layers.{i}", d, 2 * d, 4, 9))
    return out


def test_batch_norm_keeps_its_buffers_when_d_model_differs() -> None:
    """num_batches_tracked is a scalar, so its shape always matches: alone it would be copied
    into a BatchNorm whose weights and running statistics keep the target's values."""
    plan = propose(inspector.open(_conformer(32)), inspector.open(_conformer(48)))
    rows = {s: plan.entries[f"{BN}.{s}"] for s in
            ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")}
    assert {e.effective for e in rows.values()} == {"keep"}
    tracked = rows["num_batches_tracked"]
    assert tracked.reason.startswith(f"follows {BN}.weight (")
    assert is_partial(tracked)  # it follows a shape mismatch: not a declared keep
    assert tracked.candidates[0].name == f"{BN}.num_batches_tracked"
    unused = {u.name: u.reason for u in plan.unused}
    assert unused[f"{BN}.num_batches_tracked"].startswith(
        f"its target keeps its init: follows {BN}.weight")


def test_batch_norm_copies_as_a_whole_when_it_fits() -> None:
    plan = propose(inspector.open(_conformer(32)), inspector.open(_conformer(32)))
    assert all(plan.entries[n].effective == "copy" for n in plan.under(BN))


def test_ckpt_map_shows_the_norm_moving_as_a_unit(tmp_path: Path) -> None:
    for name, d in (("a.pt", 32), ("b.pt", 48)):
        torch.save({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in _conformer(d).items()},
                   tmp_path / name)
    r = ckpt("map", tmp_path / "a.pt", tmp_path / "b.pt", "--all")
    assert r.returncode == 0, r.stderr
    line = next(x for x in r.stdout.splitlines() if "batch_norm.num_batches_tracked" in x)
    assert "keeps init" in line
    assert "follows encoder.layers" in line


def test_reject_and_approve_carry_the_group() -> None:
    plan = propose(inspector.open(_conformer(32)), inspector.open(_conformer(32)))
    edit = plan.reject([f"{BN}.weight"])
    assert {plan.entries[n].status for n in plan.under(BN)} == {"rejected"}
    assert len(edit.changes) == 5
    plan.undo(edit)
    plan.approve([f"{BN}.running_var"])
    assert {plan.entries[n].status for n in plan.under(BN)} == {"approved"}
    # a Linear's weight and bias are no group: approving one leaves the other
    lin = "encoder.layers.0.conv.pointwise_conv1"
    plan.approve([f"{lin}.weight"])
    assert plan.entries[f"{lin}.bias"].status == "proposed"


def test_weight_norm_pairs_move_together() -> None:
    src = {"conv.weight_g": _t(8, 1, 1), "conv.weight_v": _t(8, 4, 3), "conv.bias": _t(8)}
    tgt = {"conv.weight_g": _t(8, 1, 1), "conv.weight_v": _t(8, 4, 5), "conv.bias": _t(8)}
    plan = propose(inspector.open(src), inspector.open(tgt))
    assert plan.entries["conv.weight_g"].effective == "keep"
    assert plan.entries["conv.weight_g"].reason.startswith("follows conv.weight_v")
    assert plan.entries["conv.bias"].effective == "copy"
    p = "m.parametrizations.weight.original"
    src = {f"{p}0": _t(8, 1, 1), f"{p}1": _t(8, 4, 3)}
    tgt = {f"{p}0": _t(8, 1, 1), f"{p}1": _t(8, 4, 5)}
    plan = propose(inspector.open(src), inspector.open(tgt))
    assert plan.entries[f"{p}0"].effective == "keep"


SUFFIXES = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def _row(name: str, copy: bool) -> Entry:
    if copy:
        return Entry(name, "copy", (("s", name),), source_shapes=((4,),), source_dtypes=("f4",))
    return Entry(name, "keep", flags=frozenset({"shape-mismatch"}), reason="shape differs")


@given(st.lists(st.tuples(st.integers(0, 2), st.sampled_from(
    (*SUFFIXES, "weight_g", "weight_v", "parametrizations.weight.original0",
     "parametrizations.weight.original1", "other"))), max_size=20))
def test_the_group_index_is_group_members_of_every_name(rows: list[tuple[int, str]]) -> None:
    """`group_index` (one pass, what bulk approve uses) says what `group_members` says."""
    names = {f"m{i}.{s}": None for i, s in rows}
    index = group_index(names)
    for name in names:
        assert sorted(index.get(name, [])) == sorted(group_members(name, names)), name


@given(st.lists(st.tuples(st.integers(0, 2), st.sampled_from(SUFFIXES), st.booleans()),
                max_size=15))
def test_no_group_is_split_after_follow_groups(rows: list[tuple[int, str, bool]]) -> None:
    """For any set of decisions: when any anchor of a norm keeps its init, no member copies."""
    entries = {f"m{i}.{s}": _row(f"m{i}.{s}", c) for i, s, c in rows}
    out = follow_groups(entries)
    assert set(out) == set(entries)
    for name, e in out.items():
        members = [name, *group_members(name, out)]
        anchors = [m for m in members if m.endswith((".weight", ".bias"))] or members
        if any(out[a].effective == "keep" for a in anchors):
            assert all(out[m].effective == "keep" for m in members)
        if entries[name].effective == "keep":
            assert e == entries[name]  # nothing is ever turned into a copy


def follow_groups_name_by_name(entries: dict[str, Entry]) -> dict[str, Entry]:
    """`follow_groups` as it was written before: every name split and its group looked up."""
    from inspector.mapping import groups as g

    out = dict(entries)
    seen: set[tuple[str, int]] = set()
    for name in entries:
        found = g._split_group_name(name)
        if found is None or found[:2] in seen:
            continue
        seen.add(found[:2])
        members = g._members(found[0], found[1], entries)
        leads = [m for m in members if g._split_group_name(m)[2]] or members  # type: ignore[index]
        lead = next((m for m in leads if entries[m].effective == "keep"), None)
        if lead is not None:
            for m in members:
                if entries[m].effective == "copy" and entries[m].status == "proposed":
                    out[m] = g._follower(entries[m], entries[lead])
    led = dict(out)
    for follower, lead_part in g.FOLLOWS_LEAD:
        for name, e in out.items():
            if not name.endswith("." + follower) or e.effective != "copy" or e.status != "proposed":
                continue
            lead_row = out.get(name[: -len(follower)] + lead_part)
            if lead_row is not None and lead_row.effective == "keep":
                why = f"follows its {lead_part}, which keeps its init"
                led[name] = g._follower(e, lead_row, why)
    return led


@given(st.lists(st.tuples(st.integers(0, 2), st.sampled_from(
    (*SUFFIXES, "weight_g", "weight_v", "parametrizations.weight.original0",
     "parametrizations.weight.original1", "other")), st.booleans()), max_size=20))
def test_follow_groups_is_the_name_by_name_pass(rows: list[tuple[int, str, bool]]) -> None:
    """Only the names that can make a group are looked at one by one: the rows come out as
    when every name was, in the same order."""
    entries = {f"m{i}.{s}": _row(f"m{i}.{s}", c) for i, s, c in rows}
    assert list(follow_groups(entries).items()) == list(
        follow_groups_name_by_name(entries).items())


def test_plan_yaml_round_trips_followers() -> None:
    plan = propose(inspector.open(_conformer(32)), inspector.open(_conformer(48)))
    again = type(plan).from_yaml(plan.to_yaml())
    assert again.entries == plan.entries


def _bn_model(width: int) -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.BatchNorm1d(width))


def test_load_into_a_real_batch_norm_keeps_its_state_whole(tmp_path: Path) -> None:
    from inspector.live import load_into

    torch.manual_seed(0)
    src = _bn_model(6)
    src[1].num_batches_tracked.fill_(11)
    torch.save(src.state_dict(), tmp_path / "src.pt")
    model = _bn_model(4)
    report = load_into(model, tmp_path / "src.pt")
    assert model[1].num_batches_tracked.item() == 0  # not copied into a BatchNorm kept whole
    assert torch.equal(model[0].weight, src[0].weight)
    assert sorted(report.partial) == sorted(f"1.{s}" for s in SUFFIXES)


@given(st.sets(st.sampled_from(SUFFIXES)), st.booleans())
def test_approve_or_reject_any_rows_never_splits_a_norm(names: set[str], reject: bool) -> None:
    plan = propose(inspector.open(_conformer(32)), inspector.open(_conformer(32)))
    chosen = [f"{BN}.{s}" for s in sorted(names)]
    (plan.reject if reject else plan.approve)(chosen)
    statuses = {plan.entries[f"{BN}.{s}"].status for s in SUFFIXES}
    assert len(statuses) == 1
    assert statuses == ({"proposed"} if not names else {"rejected" if reject else "approved"})
