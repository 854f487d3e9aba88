"""Plan: YAML round-trip, validation pointing at the entry, undoable edits, invert, fingerprints."""

from __future__ import annotations

import dataclasses
import functools
import importlib
from collections import Counter
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mapping_fixtures import _t, nemo_rnnt

import inspector
from inspector.errors import PlanError
from inspector.mapping import Plan, bind, propose
from inspector.mapping.entries import FLAGS, Entry, is_problem, row_state


@functools.cache
def small_checkpoints() -> tuple[inspector.Checkpoint, inspector.Checkpoint]:
    """Built once per module: plans are edited, the checkpoints never are."""
    src = inspector.open({f"module.{k}": v for k, v in nemo_rnnt(28, n_layers=2).items()})
    return src, inspector.open(nemo_rnnt(1024, n_layers=2))


def small_plan() -> tuple[Plan, inspector.Checkpoint, inspector.Checkpoint]:
    src, tgt = small_checkpoints()
    return propose(src, tgt, "ddp"), src, tgt


def test_yaml_round_trip_is_exact(tmp_path) -> None:  # type: ignore[no-untyped-def]
    plan, _, _ = small_plan()
    text = plan.to_yaml()
    again = Plan.from_yaml(text)
    assert again == plan
    assert again.to_yaml() == text
    plan.save(tmp_path / "plan.yaml")
    assert Plan.load(tmp_path / "plan.yaml") == plan
    assert [p.name for p in tmp_path.iterdir()] == ["plan.yaml"]  # no temp file left behind


@settings(max_examples=30, deadline=None)
@given(
    names=st.lists(
        st.from_regex(r"[a-z]{1,5}(\.[0-9]{1,2}|\.[a-z_]{1,6}){0,3}", fullmatch=True),
        min_size=1,
        max_size=6,
        unique=True,
    ),
    confidence=st.floats(0, 1),
    reason=st.text(max_size=20),
)
def test_yaml_round_trip_property(names, confidence, reason) -> None:  # type: ignore[no-untyped-def]
    src = inspector.open({n: _t(2) for n in names})
    plan = propose(src, inspector.open({n: _t(2) for n in names}))
    first = names[0]
    plan.entries[first] = dataclasses.replace(
        plan.entries[first], confidence=confidence, reason=reason
    )
    assert Plan.from_yaml(plan.to_yaml()) == plan


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            ("decision", "cpy"),
            "entries['joint.enc.weight'].decision: must be one of copy, keep, drop",
        ),
        (("status", "maybe"), "entries['joint.enc.weight'].status: must be one of"),
        (("flags", ["odd"]), "entries['joint.enc.weight'].flags"),
        (("confidence", 2), "entries['joint.enc.weight'].confidence"),
        (
            ("transform", [{"op": "twist"}]),
            "entries['joint.enc.weight'].transform[0]: unknown transform op",
        ),
    ],
)
def test_bad_entries_are_reported_at_the_entry(edit, message) -> None:  # type: ignore[no-untyped-def]
    plan, _, _ = small_plan()
    data = plan.to_dict()
    data["entries"]["joint.enc.weight"][edit[0]] = edit[1]
    with pytest.raises(PlanError, match=message.replace("[", r"\[").replace("]", r"\]")):
        Plan.from_dict(data, "plan.yaml")


def test_unknown_source_label_and_bad_rule_are_reported() -> None:
    plan, _, _ = small_plan()
    data = plan.to_dict()
    data["entries"]["encoder.pre_encode.out.bias"]["sources"][0][0] = "nope"
    with pytest.raises(PlanError, match="unknown source label 'nope'"):
        Plan.from_dict(data)
    data = plan.to_dict()
    data["rules"] = [{"template": {"from": "a.*", "to": "b.{x}"}}]
    with pytest.raises(PlanError, match=r"rules\[0\]\.template"):
        Plan.from_dict(data)


def test_approve_reject_and_undo() -> None:
    plan, _, _ = small_plan()
    before = dict(plan.entries)
    edit = plan.approve(plan.under("encoder.layers.0"))
    assert edit.changes
    assert all(plan.entries[t].status == "approved" for t, _, _ in edit.changes)
    rej = plan.reject(["encoder.pre_encode.out.weight"])
    assert plan.entries["encoder.pre_encode.out.weight"].effective == "keep"
    plan.undo(rej)
    plan.undo(edit)
    assert plan.entries == before
    with pytest.raises(PlanError, match="no target tensor 'nope'"):
        plan.approve(["nope"])


def test_set_source_checks_shapes_and_is_undoable() -> None:
    plan, _, _ = small_plan()
    with pytest.raises(PlanError, match=r"gives shape \[29, 16\], the target needs \[1025, 16\]"):
        plan.set_source(
            "decoder.prediction.embed.weight", "source", "module.decoder.prediction.embed.weight"
        )
    edit = plan.set_source("joint.enc.weight", "source", "module.joint.enc.weight")
    e = plan.entries["joint.enc.weight"]
    assert (e.decision, e.status, e.flags) == ("copy", "approved", frozenset({"user"}))
    assert ("source", "module.joint.enc.weight") not in {(u.label, u.name) for u in plan.unused}
    plan.undo(edit)
    assert plan.entries["joint.enc.weight"].decision == "keep"
    assert ("source", "module.joint.enc.weight") in {(u.label, u.name) for u in plan.unused}


def test_preview_and_add_rule() -> None:
    plan, _, _ = small_plan()
    rule = {"keep": "encoder.pre_encode.*"}
    preview = plan.preview_rule(rule)
    assert sorted(t for t, _, _ in preview) == sorted(plan.under("encoder.pre_encode"))
    assert all(new.flags == {"kept-by-rule"} for _, _, new in preview)
    assert (
        plan.entries["encoder.pre_encode.out.weight"].decision == "copy"
    )  # preview did not mutate
    edit = plan.add_rule(rule)
    assert len(edit.changes) == len(preview)
    assert plan.entries["encoder.pre_encode.out.weight"].decision == "keep"
    plan.undo(edit)
    assert len(plan.rules) == 1
    assert plan.entries["encoder.pre_encode.out.weight"].decision == "copy"


def test_set_rules_removes_and_edits_rules_with_undo() -> None:
    plan, _, _ = small_plan()
    ddp = plan.rules[0].to_dict()
    keep_pre, keep_joint = {"keep": "encoder.pre_encode.*"}, {"keep": "joint.*"}
    plan.add_rule(keep_pre)
    approved = "encoder.pre_encode.conv.0.bias"
    plan.approve([approved])  # a decided row: rule changes leave it alone
    # replace the keep rule by another: preview first, nothing changes
    preview = plan.preview_rules([ddp, keep_joint])
    changed = {t for t, _, _ in preview}
    assert changed == (set(plan.under("encoder.pre_encode")) - {approved}) | set(
        plan.under("joint")
    )
    assert [r.to_dict() for r in plan.rules] == [ddp, keep_pre]
    edit = plan.set_rules([ddp, keep_joint], "edit_rule")
    assert edit.action == "edit_rule"
    assert {t for t, _, _ in edit.changes} == changed
    assert [r.to_dict() for r in plan.rules] == [ddp, keep_joint]
    assert plan.entries["encoder.pre_encode.out.weight"].decision == "copy"
    assert plan.entries[approved].decision == "keep"  # approved under the old rule: kept
    assert plan.entries["joint.enc.weight"].flags == {"kept-by-rule"}
    # remove every rule: the proposer still finds that every name lost its module. prefix (a
    # prefix change, not a similarity the user has to weigh)
    before = (list(plan.rules), dict(plan.entries), list(plan.unused))
    removed = plan.set_rules([])
    assert removed.action == "set_rules"
    assert plan.rules == []
    row = plan.entries["encoder.pre_encode.out.weight"]
    assert (row.decision, row.sources) == (
        "copy",
        (("source", "module.encoder.pre_encode.out.weight"),),
    )
    assert "heuristic" not in row.flags
    assert [ev.kind for ev in row.evidence][:1] == ["prefix"]
    assert "prefix 'module.' taken off" in row.reason
    assert plan.entries[approved].status == "approved"
    assert plan.unused != before[2]  # joint's sources are no longer kept out by a rule
    # undo restores rules, rows and the unused list exactly; redo applies it again
    redo = plan.undo(removed)
    assert (plan.rules, plan.entries, plan.unused) == before
    plan.undo(redo)
    assert plan.rules == []
    assert plan.entries["encoder.pre_encode.out.weight"].evidence[0].kind == "prefix"


def test_loaded_plan_needs_binding_and_checks_fingerprints() -> None:
    plan, src, tgt = small_plan()
    loaded = Plan.from_yaml(plan.to_yaml())
    with pytest.raises(PlanError, match=r"call bind\(plan, sources, target\)"):
        loaded.preview_rule({"keep": "x"})
    bind(loaded, src, tgt)
    preview = loaded.preview_rule({"keep": "joint.*"})
    assert sorted(t for t, _, _ in preview) == sorted(loaded.under("joint"))
    assert all(
        old.flags == {"vocab-change"} and new.flags == {"kept-by-rule"} for _, old, new in preview
    )
    other = inspector.open(nemo_rnnt(28, n_layers=3))
    with pytest.raises(PlanError, match="header fingerprint"):
        loaded.check_fingerprints([other], tgt)
    assert len(loaded.check_fingerprints([other], tgt, force=True)) == 1


def test_invert_gives_back_the_source_names() -> None:
    src = inspector.open({f"module.{k}": v for k, v in nemo_rnnt(28, n_layers=2).items()})
    tgt = inspector.open(nemo_rnnt(28, n_layers=2))
    plan = propose(src, tgt, "ddp")
    inv = plan.invert()
    assert inv.rules[0].to_dict()["add_prefix"] == "module."
    assert {n: e.sources for n, e in inv.entries.items()} == {
        f"module.{n}": (("target", n),) for n in tgt
    }
    again = inv.invert()
    assert {n: e.sources for n, e in again.entries.items()} == {
        n: e.sources for n, e in plan.entries.items()
    }


def test_invert_split_and_concat() -> None:
    src = inspector.open({"qkv.weight": _t(12, 4)})
    tgt = inspector.open({"q.weight": _t(4, 4), "k.weight": _t(4, 4), "v.weight": _t(4, 4)})
    rules = [{"rename": {"from": "qkv.weight", "to": "q.weight"}}]
    plan = propose(src, tgt, rules)
    plan._context = None
    data = plan.to_dict()
    for i, part in enumerate(("q", "k", "v")):
        data["entries"][f"{part}.weight"] = {
            "decision": "copy",
            "status": "approved",
            "reason": "fused qkv",
            "confidence": 1.0,
            "shape": [4, 4],
            "dtype": "float32",
            "sources": [["source", "qkv.weight", [12, 4], "float32"]],
            "transform": [{"op": "split", "axis": 0, "sizes": [4, 4, 4], "index": i}],
        }
    plan = Plan.from_dict(data)
    inv = plan.invert()
    e = inv.entries["qkv.weight"]
    assert e.sources == (("target", "q.weight"), ("target", "k.weight"), ("target", "v.weight"))
    assert [t.to_dict() for t in e.transform] == [{"op": "concat", "axis": 0, "sizes": [4, 4, 4]}]
    back = inv.invert()
    assert [t.to_dict() for t in back.entries["k.weight"].transform] == [
        {"op": "split", "axis": 0, "sizes": [4, 4, 4], "index": 1}
    ]


def test_plan_with_two_sources_cannot_be_inverted() -> None:
    a, b = inspector.open({"x": _t(2)}), inspector.open({"y": _t(2)})
    plan = propose([("p.", a), ("q.", b)], inspector.open({"p.x": _t(2), "q.y": _t(2)}))
    with pytest.raises(PlanError, match="2 sources cannot be inverted"):
        plan.invert()


@pytest.mark.parametrize(
    ("copied", "total", "text"),
    [
        (0, 1000, "0%"),
        (1, 1000, "0.1%"),
        (6, 1000, "0.6%"),
        (500, 1000, "50%"),
        (990, 1000, "99%"),
        (996, 1000, "99.6%"),
        (9999, 10000, "99.9%"),
        (9989, 10000, "99.8%"),  # floored: 99.89% of a partial is not 99.9%, never 100%
        (99999, 100000, "99.9%"),
        (1, 100000, "<0.1%"),
        (1000, 1000, "100%"),
    ],
)
def test_summary_percent_is_exact_at_the_ends(copied: int, total: int, text: str) -> None:
    from inspector.mapping.plan import ModuleSummary

    s = ModuleSummary("m", tensors=4, copied=3, params=total, params_copied=copied)
    assert s.percent_text() == text
    assert s.line() == f"m {text} (3/4 tensors)"
    s.layers, s.layers_copied = 4, 0
    assert s.line() == f"m {text} (3/4 tensors, 0/4 layers complete)"


def test_save_refuses_the_plans_own_checkpoints_and_given_inputs(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Plan.save never replaces a checkpoint it reads (by path, symlink or hard link) nor a
    file named in `inputs`; the refusal is a PlanError naming the file and nothing changes."""
    import numpy as np

    src_file, tgt_file = tmp_path / "src.npy", tmp_path / "tgt.npy"
    np.save(src_file, np.zeros(3))
    tgt_file.write_bytes(b"target bytes")
    plan, _, _ = small_plan()
    plan.sources[0] = plan.sources[0].__class__(plan.sources[0].label, str(src_file))
    plan.target = plan.target.__class__(plan.target.label, str(tgt_file))
    (tmp_path / "link").symlink_to(src_file)
    other = tmp_path / "rules.yaml"
    other.write_text("rules: []\n")
    for dest, inputs in ((src_file, ()), (tgt_file, ()), (tmp_path / "link", ()),
                         (other, (other,))):
        before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
        with pytest.raises(PlanError, match=f"{dest}: refusing to overwrite an input"):
            plan.save(dest, inputs)
        assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


@given(total=st.integers(1, 10**12), data=st.data())
def test_floor_percent_never_rounds_a_partial_up(total: int, data: st.DataObject) -> None:
    from inspector.humanize import floor_percent

    done = data.draw(st.integers(0, total))
    text = floor_percent(done, total, 1)
    assert (text == "100%") == (done == total)
    assert (text == "0%") == (done == 0)
    from inspector.humanize import floor_share

    share = floor_share(done, total, 2)
    assert (share == 100.0) == (done == total)
    assert round(share * 100) * total <= done * 10000  # floored, in hundredths of a percent
    if text.startswith("<"):
        assert 0 < done * 1000 < total
    elif 0 < done < total:
        tenths = round(float(text[:-1]) * 10)  # the shown value, in tenths of a percent
        assert tenths * total <= done * 1000 < (tenths + 1) * total


def test_with_status_is_replace_without_its_cost() -> None:
    import dataclasses

    from inspector.mapping.entries import with_status

    plan = propose(inspector.open(nemo_rnnt(28)), inspector.open(nemo_rnnt(1024)))
    rows = list(plan.entries.values())
    for status in ("approved", "rejected", "proposed"):
        made = with_status(rows, status)
        assert made == [dataclasses.replace(e, status=status) for e in rows]
        assert all(new is not e for new, e in zip(made, rows, strict=True))
        assert all(e.status == "proposed" for e in rows)  # the originals are untouched
        every = [f.name for f in dataclasses.fields(rows[0])]  # an unset slot raises
        assert [[getattr(new, f) for f in every] for new in made] == [
            [getattr(dataclasses.replace(e, status=status), f) for f in every] for e in rows]
    with pytest.raises(TypeError):
        with_status([*rows[:2], "not an entry"], "approved")  # type: ignore[list-item]


def test_the_summary_follows_edits_while_its_layout_is_kept() -> None:
    plan = propose(inspector.open(nemo_rnnt(28)), inspector.open(nemo_rnnt(1024)))
    before = plan.summary()["encoder"]
    layout = plan._layout
    plan.reject(plan.under("encoder.layers.1"))
    after = plan.summary()["encoder"]
    assert plan._layout is layout
    assert after.copied < before.copied
    assert after.layers_copied == before.layers_copied - 1


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 200), st.sampled_from(["approve", "reject"])),
                max_size=6))
def test_the_summary_is_the_rows_counted_one_by_one(edits: list[tuple[int, str]]) -> None:
    """Plan.summary (which spells `effective` and `numel` out) against the rows counted one by
    one with the Entry's own properties, after any approve and reject edits."""
    plan = propose(inspector.open(nemo_rnnt(28)), inspector.open(nemo_rnnt(1024)))
    names = list(plan.entries)
    for at, action in edits:
        getattr(plan, action)(names[at % len(names):][:40])
    _assert_summary_is_rows_counted(plan)


@pytest.mark.parametrize("action", ["approve", "reject"])
def test_the_summary_of_every_row_approved_or_rejected(action: str) -> None:
    """Every row in one state (a bulk edit of the whole plan): the summary reads no column."""
    plan = propose(inspector.open(nemo_rnnt(28)), inspector.open(nemo_rnnt(28)))
    getattr(plan, action)(list(plan.entries))
    _assert_summary_is_rows_counted(plan)
    assert all(s.copied == (s.tensors if action == "approve" else 0)
               for s in plan.summary().values())


def test_the_summary_of_rows_whose_modules_interleave() -> None:
    """Rows of two modules in turn (the tally groups them by module first), one layer of each
    stack with a row that keeps its init."""
    import numpy as np

    names = [f"{m}.layers.{i}.{w}" for i in range(4) for m in ("enc", "dec") for w in "vw"]
    src = inspector.open({n: np.zeros(3 if n.endswith("2.w") else 2, np.float32)
                          for n in names})
    tgt = inspector.open({n: np.zeros(2, np.float32) for n in names})
    plan = propose(src, tgt)
    _assert_summary_is_rows_counted(plan)
    assert [(m, s.layers, s.layers_copied) for m, s in plan.summary().items()] == [
        ("enc", 4, 3), ("dec", 4, 3)]


def _assert_summary_is_rows_counted(plan: Plan) -> None:
    from math import prod

    from inspector.mapping import names as nm

    names = list(plan.entries)
    modules = nm.modules_of(names, nm.common_root(names))
    stacks = plan._tally_layout().stacks
    assert list(plan.summary()) == list(dict.fromkeys(modules))
    assert plan.state_counts() == Counter(map(row_state, plan.entries.values()))
    for mod, s in plan.summary().items():
        rows = [e for e, m in zip(plan.entries.values(), modules, strict=True) if m == mod]
        assert s.tensors == len(rows)
        assert s.params == sum(e.numel for e in rows) == sum(prod(e.shape) for e in rows)
        assert s.copied == sum(e.effective == "copy" for e in rows)
        assert s.params_copied == sum(e.numel for e in rows if e.effective == "copy")
        assert s.kept == sum(e.effective == "keep" for e in rows)
        assert s.dropped == sum(e.effective == "drop" for e in rows)
        assert s.problems == sum(map(is_problem, rows))
        layers = stacks.get(mod, {})
        assert s.layers == len(layers)
        assert s.layers_copied == sum(
            all(plan.entries[n].effective == "copy" for n in members) for members in
            layers.values())


@settings(max_examples=200, deadline=None)
@given(
    status=st.sampled_from(["proposed", "approved", "rejected"]),
    decision=st.sampled_from(["copy", "keep", "drop"]),
    flags=st.frozensets(st.sampled_from(sorted(FLAGS))),
    reason=st.sampled_from(["", "follows encoder.norm.weight", "set by user", "vocab"]),
    sourced=st.booleans(),
    confidence=st.floats(0, 1),
)
def test_a_rows_state_answers_for_it(  # type: ignore[no-untyped-def]
    status, decision, flags, reason, sourced, confidence
) -> None:
    """Bulk counts ask each row state once (`in_state`): every row predicate must read nothing
    but status, decision and flags, whatever the row's other fields are."""
    from inspector.mapping.entries import (
        in_state,
        is_ambiguous,
        is_partial,
        is_proposed_copy,
        row_state,
    )
    from inspector.mapping.plan import Candidate, Evidence, is_pending, is_problem

    row = Entry("enc.w", decision, (("a.pt", "enc.w"),) if sourced else (), status=status,
                flags=flags, reason=reason, confidence=confidence, shape=(2, 2), dtype="float32",
                evidence=(Evidence("similar", "x", 0.5),),
                candidates=(Candidate("a.pt", "enc.v", 0.5, "why"),))
    stand_in = in_state(row_state(row))
    for predicate in (is_partial, is_pending, is_problem, is_ambiguous, is_proposed_copy):
        assert predicate(row) == predicate(stand_in), predicate.__name__
    assert row.effective == stand_in.effective
    # copied_sources spells `effective == "copy"` out (a hot path): the same answer
    from inspector.mapping.entries import copied_sources
    assert copied_sources([row]) == ([row.sources] if row.effective == "copy" else [])


def test_an_edit_lists_the_rows_made_once_for_each_unused_source() -> None:
    """Every source tensor's Unused row (frozen: its reason is the proposal's) is made once per
    proposal; an edit lists those again, in the source's order: a bulk reject of 100k rows
    made them all anew (40 ms)."""
    src = inspector.open(nemo_rnnt(28))
    plan = propose(src, inspector.open(nemo_rnnt(1024)))
    before = list(plan.unused)
    edit = plan.reject(list(plan.entries))
    rejected = list(plan.unused)
    assert [u.name for u in rejected] == list(src.tensors)
    kept = {u.name: u for u in before}
    assert all(kept[u.name] is u for u in rejected if u.name in kept)
    assert {u.reason for u in rejected if u.name not in kept} == {"no target tensor of that name"}
    plan.undo(edit)
    plan.reject(list(plan.entries))
    assert all(a is b for a, b in zip(plan.unused, rejected, strict=True))


def test_a_proposal_makes_unused_rows_only_for_the_sources_it_leaves_unread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`ckpt map` never edits: a row per source tensor it reads was ~100 B a tensor of its
    peak. The first edit makes the rest, keeping the ones already made."""
    proposing = importlib.import_module("inspector.mapping.propose")  # the package's
    made: list[str] = []
    real = proposing.Unused

    def counted(label: str, name: str, reason: str) -> Any:
        made.append(name)
        return real(label, name, reason)

    monkeypatch.setattr(proposing, "Unused", counted)
    src = inspector.open(nemo_rnnt(28))
    for _ in range(2):  # a public function, called twice
        made.clear()
        plan = propose(src, inspector.open(nemo_rnnt(1024)))
        assert sorted(made) == sorted(u.name for u in plan.unused)
        assert len(made) < len(src.tensors)
    first = {u.name: u for u in plan.unused}
    plan.reject(list(plan.entries))
    assert len(made) == len(src.tensors)
    assert all(first[u.name] is u for u in plan.unused if u.name in first)
    # a UI's worker prepares the plan: the key then makes none
    plan = propose(src, inspector.open(nemo_rnnt(1024)))
    plan.prepare()
    made.clear()
    plan.reject(list(plan.entries))
    assert made == []
    assert [u.name for u in plan.unused] == list(src.tensors)


def test_rejected_rows_leave_their_sources_unused_until_undone() -> None:
    """`unused` (written in the plan) follows status edits: a rejected row reads nothing, so
    its source is listed unused; undo and approve put the list back as it was."""
    plan = propose(inspector.open(nemo_rnnt(28)), inspector.open(nemo_rnnt(1024)))
    layer = plan.under("encoder.layers.0")
    read = {s for n in layer for s in plan.entries[n].sources}
    before = list(plan.unused)
    assert read
    assert not read & {(u.label, u.name) for u in before}
    edit = plan.reject(layer)
    assert read <= {(u.label, u.name) for u in plan.unused}
    plan.undo(edit)
    assert plan.unused == before
    plan.reject(layer)
    plan.approve(layer)
    assert plan.unused == before
    assert plan.approve(layer).changes == ()  # approving approved rows changes nothing
