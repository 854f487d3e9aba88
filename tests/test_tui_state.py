"""ReviewState and TreeModel: the pure logic behind ckpt-tui, on real proposals."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import inspector
from inspector.demo import RNNTConfig, random_state, rnnt_shapes
from inspector.errors import PlanError
from inspector.mapping.plan import Plan
from inspector.mapping.propose import propose
from inspector.tui.state import ReviewState, name_matches, parse_rule, rule_text
from inspector.tui.treemodel import Row, TreeModel


def test_marks_and_evidence_follow_the_plan(state: ReviewState) -> None:
    marks = state.target_marks()
    assert marks["encoder.layers.0.conv.depthwise_conv.weight"] == "proposed"
    assert state.evidence("encoder.layers.0.conv.depthwise_conv.weight") == "exact name"
    assert marks["decoder.prediction.embed.weight"] == "keep"
    assert state.evidence("decoder.prediction.embed.weight") == (
        "vocabulary changed 29 -> 257: own init"
    )
    used = state.source_marks()
    assert used["encoder.pre_encode.out.weight"] == "used"
    assert used["joint.joint_net.2.weight"] == "unused"


def _marks_anew(state: ReviewState) -> tuple[dict[str, str], dict[str, str], dict[str, int]]:
    """The marks and counts computed from the plan as it is now, row by row (what the state
    keeps edit by edit, and counts by row state)."""
    from inspector.mapping.entries import is_pending, is_problem
    from inspector.tui.state import entry_mark

    entries = state.plan.entries
    used = {s for e in entries.values() if e.effective == "copy" for s in e.sources}
    sources = {shown: "used" if (k.label, k.name) in used else "unused"
               for shown, k in ((n, state.source_key(n)) for n in state.source_tensors)}
    counts = {"approved": 0, "pending": 0, "rejected": 0, "problems": 0}
    for e in entries.values():
        if e.status != "proposed":
            counts[e.status] += 1
        counts["pending"] += is_pending(e)
        counts["problems"] += is_problem(e)
    return {n: entry_mark(e) for n, e in entries.items()}, sources, counts


def test_marks_and_counts_follow_every_edit(state: ReviewState) -> None:
    """Marks are kept edit by edit and counts made by row state: after each kind of edit, and
    its undo and redo, they equal what the plan gives row by row."""
    def check() -> None:
        assert (state.target_marks(), state.source_marks(), state.counts()) == _marks_anew(state)

    check()
    layer = state.plan.under("encoder.layers.0")
    source = next(iter(state.sources))
    edits = [
        lambda: state.approve(layer),
        lambda: state.reject(layer[:3]),
        lambda: state.reject(state.plan.under("decoder")),  # their sources become unused
        lambda: state.set_source(layer[0], source, "encoder.layers.1.norm_out.weight"),
        lambda: state.approve(list(state.plan.entries)),
    ]
    before = state.source_marks()
    for edit in edits:
        edit()
        check()
        if edit is edits[0]:  # approving uses no other source: the source tree is not redrawn
            assert state.source_marks() is before
    for _ in edits:
        state.undo()
        check()
    for _ in edits:
        state.redo()
        check()


def test_a_prefix_renamed_row_says_so() -> None:
    """A source saved with a `model.` prefix: each target row's evidence is the prefix change."""
    tensors = random_state(rnnt_shapes(RNNTConfig(vocab_size=28)), 1)
    src = inspector.open({"model." + n: a for n, a in tensors.items()})
    tgt = inspector.open(tensors)
    plan = propose(src, tgt)
    state = ReviewState(plan, {plan.sources[0].label: src}, tgt)
    assert {state.evidence(n) for n in tensors} == {"renamed by prefix"}
    assert set(state.target_marks().values()) == {"proposed"}


def test_approve_reject_undo_redo_and_dirty(state: ReviewState) -> None:
    names = state.plan.under("encoder.layers.0")
    assert not state.dirty
    state.approve(names)
    assert {state.plan.entries[n].status for n in names} == {"approved"}
    assert state.dirty
    assert state.counts()["approved"] == len(names)
    state.reject(names[:1])
    assert state.plan.entries[names[0]].status == "rejected"
    state.undo()
    assert state.plan.entries[names[0]].status == "approved"
    state.undo()
    assert {state.plan.entries[n].status for n in names} == {"proposed"}
    assert not state.dirty
    state.redo()
    assert state.plan.entries[names[1]].status == "approved"
    state.mark_saved()
    assert not state.dirty
    state.approve(names)  # nothing changes: no edit is recorded
    assert not state.dirty
    assert state.unsaved_edits == 0


def test_saved_state_unreachable_after_new_edit(state: ReviewState) -> None:
    a, b = state.plan.under("encoder.layers.0")[:2]
    state.approve([a])
    state.mark_saved()
    state.undo()
    state.reject([b])  # the saved state was in the redo stack, now gone
    assert state.dirty
    state.undo()
    assert state.dirty


def test_filters_problems_pending_module_search(state: ReviewState) -> None:
    state.set_filter(problems=True)
    assert state.visible_targets() == []  # the vocabulary change is a declared reason
    state.reject(["encoder.layers.0.norm_out.weight"])
    state.plan.set_decision("encoder.layers.1.norm_out.bias", "keep")
    assert state.visible_targets() == []  # the user's reject and keep are declared too
    state.undo()
    state.clear_filter()
    state.approve(state.plan.under("encoder"))
    state.set_filter(pending=True)
    assert not any(n.startswith("encoder.") for n in state.visible_targets())
    state.set_filter(pending=False, module="encoder.layers.1")
    assert {n.split(".")[2] for n in state.visible_targets()} == {"1"}
    state.set_filter(module="", search="linear_q.w*")
    found = state.visible_targets()
    assert found == [f"encoder.layers.{i}.self_attn.linear_q.weight" for i in range(4)]
    assert state.visible_sources(found) == found  # the partners of what is shown


def test_set_source_from_candidates(state: ReviewState) -> None:
    target = "encoder.layers.0.norm_out.weight"
    state.set_source(target, state.plan.sources[0].label, "encoder.layers.1.norm_out.weight")
    e = state.plan.entries[target]
    assert e.sources[0][1] == "encoder.layers.1.norm_out.weight"
    assert e.status == "approved"
    with pytest.raises(PlanError, match="shape"):
        state.set_source(target, state.plan.sources[0].label, "encoder.pre_encode.out.weight")
    state.undo()
    assert state.plan.entries[target].sources[0][1] == target


def test_rule_preview_add_edit_remove(state: ReviewState) -> None:
    rule = parse_rule("keep encoder.layers.3.*")
    changes = state.preview_rule(rule)
    assert sorted(t for t, _, _ in changes) == sorted(state.plan.under("encoder.layers.3"))
    assert state.plan.rules == []  # preview changes nothing
    state.add_rule(rule)
    assert state.plan.entries["encoder.layers.3.norm_out.bias"].decision == "keep"
    edited = parse_rule("keep encoder.layers.2.*")
    preview = state.preview_rules([edited])
    assert {t.split(".")[2] for t, _, _ in preview} == {"2", "3"}
    state.replace_rule(0, edited)
    assert state.plan.entries["encoder.layers.3.norm_out.bias"].decision == "copy"
    assert state.plan.entries["encoder.layers.2.norm_out.bias"].decision == "keep"
    state.remove_rule(0)
    assert state.plan.rules == []
    assert state.plan.entries["encoder.layers.2.norm_out.bias"].decision == "copy"
    state.undo()
    assert len(state.plan.rules) == 1
    assert rule_text(state.plan.rules[0]) == "{keep: encoder.layers.2.*}"


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("a.*.b -> c.*.d", {"template": {"from": "a.*.b", "to": "c.*.d"}}),
        ("fc.weight -> proj.weight", {"rename": {"from": "fc.weight", "to": "proj.weight"}}),
        (r"re:x\.(\d+) -> y.\1", {"regex": {"pattern": r"x\.(\d+)", "to": r"y.\1"}}),
        ("drop optimizer.*", {"drop": "optimizer.*"}),
        ("{strip_prefix: module.}", {"strip_prefix": "module."}),
    ],
)
def test_parse_rule_forms(text: str, rule: dict[str, object]) -> None:
    assert parse_rule(text) == rule


@pytest.mark.parametrize("text", ["", "nonsense", "{not: [closed", "[1, 2]"])
def test_parse_rule_errors(text: str) -> None:
    with pytest.raises(PlanError):
        parse_rule(text)


def test_name_matches() -> None:
    assert name_matches("LINEAR_Q", "enc.linear_q.weight")
    assert name_matches("layers.?.conv", "enc.layers.3.conv.w")
    assert not name_matches("layers.?.conv", "enc.layers.13.conv.w")


def test_tree_folds_layers_and_splits_on_a_different_decision(state: ReviewState) -> None:
    model = TreeModel(state.target_tensors, marks=state.target_marks())
    encoder = next(r for r in model.roots() if r.label == "encoder")
    labels = [r.label for r in model.children(encoder)]
    assert labels == ["pre_encode", "layers.{0..3}"]
    state.reject(["encoder.layers.2.norm_out.bias"])
    model = TreeModel(state.target_tensors, marks=state.target_marks())
    encoder = next(r for r in model.roots() if r.label == "encoder")
    layers = next(r for r in model.children(encoder) if r.label == "layers")
    assert [r.label for r in model.children(layers)] == ["{0..1}", "2", "3"]
    path = model.path_to("encoder.layers.2.norm_out.bias")
    assert path is not None
    assert path[-1].leaf
    assert path[-1].names == ("encoder.layers.2.norm_out.bias",)


def test_tree_totals_and_filtered_names() -> None:
    tensors = {f"m.layers.{i}.w": np.zeros((2, 3), np.float32) for i in range(3)}
    tensors["m.head"] = np.zeros(4, np.int64)
    ckpt = inspector.open(tensors)
    model = TreeModel(ckpt.tensors)
    (m,) = model.roots()
    totals = model.totals(m)
    assert (totals.tensors, totals.params, totals.nbytes) == (4, 22, 3 * 24 + 32)
    assert totals.dtypes == {"float32": 3, "int64": 1}
    only = TreeModel(ckpt.tensors, ["m.layers.1.w"])
    (chain,) = only.roots()  # single-child chains join, the tensor stays its own row
    assert chain.label == "m.layers.1"
    assert [(r.label, r.leaf) for r in only.children(chain)] == [("w", True)]


def test_large_tree_is_lazy(monkeypatch: pytest.MonkeyPatch) -> None:
    one = np.zeros(1, np.float32)
    names = {f"model.blocks.{i}.sub.{j}.w": one for i in range(400) for j in range(50)}
    ckpt = inspector.open(names)
    grouped: list[str] = []  # rows whose children were built

    def group(self: TreeModel, row: Row) -> list[Row]:
        grouped.append(row.label)
        return real_group(self, row)

    real_group = TreeModel._group
    monkeypatch.setattr(TreeModel, "_group", group)
    model = TreeModel(ckpt.tensors)
    roots = model.roots()
    assert [r.label for r in roots] == ["model.blocks.{0..399}"]
    # the visible rows only: the root, then the single-child chain model -> blocks folded into
    # one row; none of the 400 blocks (nor their 20000 tensors) got rows of their own
    assert grouped == ["", "model", "model.blocks"]
    grouped.clear()
    (block,) = model.children(roots[0])  # opening the folded row builds one level below it
    assert block.label == "sub"
    assert len(grouped) <= 2


def test_plan_round_trip_after_review(state: ReviewState, tmp_path) -> None:
    state.approve(state.plan.under("encoder"))
    state.add_rule(parse_rule("keep preprocessor.*"))
    path = tmp_path / "plan.yaml"
    state.plan.save(path)
    loaded = Plan.load(path)
    assert loaded.to_yaml() == state.plan.to_yaml()


def test_problems_are_the_plans_partials_shared_with_ckpt_map() -> None:
    """One definition: the TUI's problem count and filter are Plan.problems(), the rows ckpt map
    counts "to review"; a kept row's details give its real reason."""
    src = inspector.open(random_state(rnnt_shapes(RNNTConfig(vocab_size=28)), 1))
    tgt = inspector.open(random_state(rnnt_shapes(RNNTConfig(vocab_size=256, conv_kernel=9)), 2))
    plan = propose(src, tgt)
    state = ReviewState(plan, {plan.sources[0].label: src}, tgt)
    convs = [f"encoder.layers.{i}.conv.depthwise_conv.{leaf}"
             for i in range(4) for leaf in ("weight", "bias")]  # biases follow their weights
    assert plan.problems() == convs == state.partials()
    assert state.counts()["problems"] == 8
    assert sum(s.problems for s in plan.summary().values()) == 8
    state.set_filter(problems=True)
    assert state.visible_targets() == convs
    state.reject(convs[:1])  # the user's reject declares the keep
    assert state.counts()["problems"] == 7


def test_pending_rows_are_what_apply_refuses(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A proposed keep changes nothing: neither apply nor the TUI counts it as pending."""
    from inspector.tui.screens.write import write_summary

    src = inspector.open(random_state(rnnt_shapes(RNNTConfig(vocab_size=28)), 1))
    tgt = inspector.open(random_state(rnnt_shapes(RNNTConfig(vocab_size=256)), 2))
    plan = propose(src, tgt)
    state = ReviewState(plan, {plan.sources[0].label: src}, tgt)
    keeps = sum(e.effective == "keep" for e in plan.entries.values())
    assert keeps == 11
    pending = state.counts()["pending"]
    assert pending == len(plan.entries) - keeps == len(plan.pending())
    assert write_summary(state, tmp_path / "out.pt").pending == pending
    with pytest.raises(PlanError, match=f"^{pending} row\\(s\\) are still proposed"):
        inspector.apply(plan, tmp_path / "out.pt")
    state.set_filter(pending=True)
    assert len(state.visible_targets()) == pending


def test_a_folded_row_takes_the_chosen_source_in_every_layer(state: ReviewState) -> None:
    """`c` on a folded row (or a module): every row takes the same source moved to its own
    layer (or its own path under the chosen source module); one edit, one undo."""
    rows = [f"encoder.layers.{i}.norm_out.weight" for i in range(4)]
    edit, missed = state.set_analogous_sources(rows, state.plan.sources[0].label,
                                               "encoder.layers.0.norm_feed_forward1.weight")
    assert missed == []
    assert len(edit.changes) == 4
    for i, row in enumerate(rows):
        e = state.plan.entries[row]
        assert e.sources[0][1] == f"encoder.layers.{i}.norm_feed_forward1.weight"
        assert e.status == "approved"
    state.undo()
    assert all(state.plan.entries[r].sources[0][1] == r for r in rows)
    module = state.plan.under("encoder.layers.1")
    label = state.plan.sources[0].label
    edit, missed = state.set_analogous_sources(module, label, module[0].replace(".1.", ".2.", 1))
    assert missed == []
    taken = {e.sources[0][1] for _, _, e in edit.changes}
    assert taken == set(state.plan.under("encoder.layers.2"))


@given(st.lists(st.sampled_from(["enc", "layers", "fc", "w", "attn", "blocks"]), min_size=2,
                max_size=5),
       st.integers(0, 4), st.integers(0, 12), st.integers(0, 12))
def test_analogous_moves_the_layer_index(words: list[str], at: int, i: int, j: int) -> None:
    from inspector.mapping.names import analogous

    at = min(at, len(words) - 1)  # the index never ends the name (a leaf follows it)

    def named(index: int) -> str:
        return ".".join([*words[:at], str(index), *words[at:]])

    assert analogous("src." + named(i), named(i), named(j)) == "src." + named(j)


def test_the_header_folds_a_top_level_layer_stack() -> None:
    """A model whose top level is its layer stack: one folded item, not one per layer."""
    from inspector.tui.widgets.summary import Names, summary_text

    sd = {f"layers.{i}.{leaf}": np.zeros(4, np.float32) for i in range(60) for leaf in ("w", "b")}
    src = inspector.open(sd)
    tgt = inspector.open({**sd, "layers.7.w": np.zeros(5, np.float32)})
    plan = propose(src, tgt)
    state = ReviewState(plan, {plan.sources[0].label: src}, tgt)
    text = summary_text(state, Names("a", "b", "out"), []).plain
    transfer = next(x for x in text.splitlines() if x.startswith("transfer: "))
    assert transfer == "transfer: layers.{0..6,8..59} 100% · layers.7 44.4% (1/2 tensors)"


def test_rule_preview_names_the_source_of_each_row_when_there_are_several() -> None:
    from inspector.tui.screens.rules import preview_text

    sd = {"enc.w": np.zeros(4, np.float32), "dec.w": np.ones(4, np.float32)}
    src_b = inspector.open({"encoder.w": np.full(4, 2, np.float32)})
    plan = propose([inspector.open(sd), src_b], inspector.open(sd))
    a, b = (s.label for s in plan.sources)
    changes = plan.preview_rule({"rename": {"from": "encoder.w", "to": "enc.w"}, "source": b})
    text = preview_text(changes, labelled=True).plain
    assert f"\n  copy ← {a}:enc.w → keep (2 sources map here" in text
    assert "\n  copy ← enc.w → keep" in preview_text(changes).plain


@given(st.lists(st.tuples(st.sampled_from(["proposed", "approved", "rejected"]),
                          st.sampled_from(["copy", "keep", "drop"]),
                          st.frozensets(st.sampled_from(["ambiguous", "shape-mismatch", "user",
                                                         "heuristic", "no-source"]))),
                max_size=20))
def test_marks_by_status_decision_and_flags_are_the_tables(
        rows: list[tuple[str, str, frozenset[str]]]) -> None:
    """target_marks looks a mark up by (status, decision, flags): the table's own answer."""
    from inspector.mapping.entries import Entry
    from inspector.tui.state import _marks_of, entry_mark

    entries = {f"t{i}": Entry(f"t{i}", decision, (("s", "x"),) if decision == "copy" else (),
                              status=status, flags=flags)
               for i, (status, decision, flags) in enumerate(rows)}
    assert list(_marks_of(entries.values())) == [entry_mark(e) for e in entries.values()]


def _path_by_covers(model: TreeModel, name: str) -> list[Row] | None:
    """TreeModel.path_to as it was written: each child asked `covers` prefix by prefix."""
    path: list[Row] = []
    row = model.root
    while not row.leaf:
        nxt = next((c for c in model.children(row) if c.covers(name) and name in c.names), None)
        if nxt is None:
            return None
        path.append(nxt)
        row = nxt
    return path


_SEGMENT = st.sampled_from(["a", "b", "layers", "0", "1", "2", "10", "w", ""])


@given(st.lists(st.lists(_SEGMENT, min_size=1, max_size=4).map(".".join), min_size=1,
                max_size=12, unique=True))
def test_path_to_finds_the_rows_covers_finds(names: list[str]) -> None:
    from types import SimpleNamespace

    tensors: dict[str, Any] = {n: SimpleNamespace(dtype="float32", shape=(2,)) for n in names}
    model = TreeModel(tensors, marks={n: "proposed" for n in names})
    for n in names:
        full = _path_by_covers(model, n)
        assert model.path_to(n) == full
        keys = [r.key for r in full or []]
        for key in keys:  # stopped at a row's key: the path down to its first row of that key
            assert model.path_to(n, stop_at=key) == (full or [])[: keys.index(key) + 1]
        assert model.path_to(n, stop_at="no.such.key") is None
    assert model.path_to("not.there") == _path_by_covers(model, "not.there")


def _every_row(model: TreeModel, rows_first: bool = False) -> list[tuple[Any, ...]]:
    """Every row of the model (all expanded), with its totals, in tree order; `rows_first`:
    each row's rows worked out before its totals (a row shown expanded)."""
    out: list[tuple[Any, ...]] = []

    def walk(row: Row) -> None:
        for child in model.children(row):
            if rows_first and not child.leaf:
                model.children(child)
            t = model.totals(child)
            out.append((child.label, child.prefixes, child.names, child.leaf, t.tensors, t.params,
                        t.nbytes, t.dtypes, t.marks))
            if not child.leaf:
                walk(child)

    walk(model.root)
    return out


class _Info:
    def __init__(self, dtype: str, shape: tuple[int, ...]):
        self.dtype, self.shape = dtype, shape
        self.numel = int(np.prod(shape))
        self.nbytes = self.numel * {"float16": 2, "int8": 1}.get(dtype, 4)


@given(st.lists(st.tuples(st.sampled_from(["enc.layers", "dec", "layers"]), st.integers(0, 5),
                          st.sampled_from(["w", "b", "ff.w", "ff"]),
                          st.sampled_from(["float16", "float32", "int8"])),
                min_size=1, max_size=30, unique_by=lambda r: r[:3]),
       st.lists(st.sampled_from(["approved", "rejected", "proposed"]), min_size=30, max_size=30),
       st.lists(st.sampled_from(["approved", "rejected", "proposed"]), min_size=30, max_size=30),
       st.booleans(), st.sampled_from([1, 16]))
def test_a_redrawn_tree_is_the_tree_made_anew(
        rows: list[tuple[str, int, str, str]], before: list[str], after: list[str],
        unmarked: bool, sum_from: int) -> None:
    """A model made after an edit from the one shown before (its layout: the groups, the folded
    runs, the getters of marks reused) has the rows and the totals of a model made from
    nothing, whether a row is totalled from its children (`SUM_FROM`) or from its names; a
    folded row's totals (its member's, times its repeats) are its tensors counted. Names that
    are also a module's (`ff` and `ff.w`) and mixed dtypes included."""
    from inspector.tui import treemodel

    kept, treemodel.SUM_FROM = treemodel.SUM_FROM, sum_from
    try:
        _check_redrawn(rows, before, after, unmarked)
    finally:
        treemodel.SUM_FROM = kept


def _check_redrawn(rows: list[tuple[str, int, str, str]], before: list[str], after: list[str],
                   unmarked: bool) -> None:
    tensors: dict[str, Any] = {
        f"{mod}.{i}.{leaf}": _Info(dtype, (2, 3) if dtype == "float16" else (4,))
        for mod, i, leaf, dtype in rows}
    names = list(tensors)
    marks_before = dict(zip(names, before, strict=False))
    marks_after = dict(zip(names[1:] if unmarked else names, after, strict=False))  # one unmarked
    shown = TreeModel(tensors, marks=marks_before)
    _every_row(shown)
    redrawn = TreeModel(tensors, marks=marks_after, reuse=shown)
    assert _every_row(redrawn, rows_first=True) == _every_row(TreeModel(tensors,
                                                                        marks=marks_after))
    for row in _every_row(redrawn):
        _, _, below, _, count, params, nbytes, dtypes, marks = row
        assert (count, params, nbytes) == (len(below), sum(tensors[n].numel for n in below),
                                           sum(tensors[n].nbytes for n in below))
        counted = Counter(tensors[n].dtype for n in below)
        assert list(dtypes.items()) == sorted(counted.items(), key=lambda kv: (-kv[1], kv[0]))
        assert marks == dict(Counter(marks_after.get(n, "") for n in below))


def test_the_pairs_version_follows_every_edit_that_may_move_a_source() -> None:
    """A rule that sends a source to another row leaves the set of used sources as it was
    (`Edit.uses_changed` is False) but moves a pair: what is kept per version of the pairs (a
    module's chart) must see it. Approving changes no pair; rejecting and undoing do."""
    z = np.zeros(2, np.float32)
    src = inspector.open({"m.a.w": z, "m.c.w": z})
    tgt = inspector.open({"m.a.w": z, "m.b.w": z, "m.c.w": z})
    plan = propose(src, tgt)
    review = ReviewState(plan, {plan.sources[0].label: src}, tgt)
    seen = review.pairs_version
    edit = review.add_rule({"rename": {"from": "m.a.w", "to": "m.b.w"}})
    assert not edit.uses_changed
    assert review.pairs_version > seen
    assert review.plan.entries["m.b.w"].sources == (("source", "m.a.w"),)
    seen = review.pairs_version
    review.approve(list(review.plan.entries))
    assert review.pairs_version == seen
    review.reject(["m.c.w"])
    assert review.pairs_version > seen
    seen = review.pairs_version
    review.undo()
    assert review.pairs_version > seen

