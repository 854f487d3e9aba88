"""The review state behind ckpt-tui: the plan, undo/redo, filters and search.

Pure Python over `inspector.mapping.Plan` and `Checkpoint`s (no Textual, no file I/O), so every
action of the app can be tested without a terminal. The app calls these methods and redraws.
Only the UI thread changes `ReviewState.plan`: workers get a `snapshot()` and hand back a new
value or an Edit, which `apply_edit` applies on the UI thread.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any

from ..bulk import paused_gc
from ..errors import PlanError
from ..mapping.entries import (
    ByState,
    ModuleSummary,
    RowState,
    in_state,
    is_partial,
    is_proposed_copy,
    row_state,
)
from ..mapping.plan import Candidate, Edit, Entry, Plan, is_pending, is_problem
from ..mapping.tally import Tally
from ..model import Checkpoint, TensorInfo

# A "problem" row is mapping.plan.is_problem (one definition for ckpt map, apply and the TUI).

# Row mark from (status, decision, flags). First matching line wins: a data table, not if/elif.
_MARK_TABLE: tuple[tuple[Callable[[Entry], bool], str], ...] = (
    (lambda e: e.status == "rejected", "rejected"),
    (lambda e: e.status == "approved" and e.decision == "copy", "approved"),
    (lambda e: "ambiguous" in e.flags, "ambiguous"),
    (lambda e: "shape-mismatch" in e.flags, "mismatch"),
    (lambda e: e.decision != "copy", "keep"),
    (lambda e: True, "proposed"),
)


def entry_mark(e: Entry) -> str:
    return next(mark for test, mark in _MARK_TABLE if test(e))


# entry_mark by row state: every row is marked anew after an edit (a dict lookup a row, in C,
# instead of walking the table: 100k rows 0.2 -> 0.01 s)
_MARK_OF = ByState(entry_mark)
_USED = {True: "used", False: "unused"}


def _marks_of(rows: Iterable[Entry]) -> Iterator[str]:
    """entry_mark of each of `rows`, in order."""
    return map(_MARK_OF.__getitem__, map(row_state, rows))


class _Marks:
    """The trees' marks, kept up to date edit by edit: each target row's (`entry_mark`), and
    each source tensor's used/unused (a dict replaced, never changed in place, when an edit
    changes which are used). A redraw after a bulk edit of 100k rows marked every row again."""

    def __init__(self, plan: Plan, source_keys: Mapping[str, SourceKey]):
        self._shown = tuple(source_keys)
        self._pairs = [(k.label, k.name) for k in source_keys.values()]
        self._pair_set = frozenset(self._pairs)
        self.target = dict(zip(plan.entries, _marks_of(plan.entries.values()), strict=True))
        self.source = self._source_marks(plan)

    def _source_marks(self, plan: Plan) -> dict[str, str]:
        used = plan.used_sources()
        if not used:  # a bulk reject of every row
            return dict.fromkeys(self._shown, _USED[False])
        if len(used) == len(self._pairs) and used.issubset(self._pair_set):  # every one
            return dict.fromkeys(self._shown, _USED[True])
        return dict(zip(self._shown, map(_USED.__getitem__, map(used.__contains__, self._pairs)),
                        strict=True))

    def applied(self, plan: Plan, edit: Edit) -> None:
        """`edit` was just made to `plan`."""
        if not edit.targets:
            return
        with paused_gc():  # a key per row: the collector would walk the edit's new rows again
            self.target.update(zip(edit.targets, _marks_of(edit.after), strict=True))
            if edit.uses_changed:  # approving changes none
                self.source = self._source_marks(plan)


def _shape(s: tuple[int, ...]) -> str:
    return "[" + ",".join(map(str, s)) + "]"


# Short evidence for a target row, by the same first-match rule.
_EVIDENCE_TABLE: tuple[tuple[Callable[[Entry], bool], Callable[[Entry], str]], ...] = (
    (lambda e: e.status == "rejected", lambda e: "rejected: own init"),
    (lambda e: "ambiguous" in e.flags, lambda e: f"ambiguous: {len(e.candidates)} candidates"),
    (lambda e: "shape-mismatch" in e.flags, lambda e: "shape mismatch"),
    (lambda e: e.reason.startswith("follows "), lambda e: "moves with its module: own init"),
    (lambda e: "vocab-change" in e.flags, lambda e: f"{e.reason or 'vocabulary change'}: own init"),
    (lambda e: "kept-by-rule" in e.flags, lambda e: "keep rule: own init"),
    (lambda e: e.decision == "drop", lambda e: "dropped"),
    (lambda e: "user" in e.flags and e.decision != "copy", lambda e: "set by you: own init"),
    (lambda e: e.decision != "copy", lambda e: "no source: own init"),
    (lambda e: "user" in e.flags, lambda e: "chosen by you"),
    (lambda e: any(ev.kind == "exact-name" for ev in e.evidence), lambda e: "exact name"),
    (lambda e: any(ev.kind == "rule" for ev in e.evidence), lambda e: _rule_text(e)),
    (lambda e: any(ev.kind == "prefix" for ev in e.evidence), lambda e: "renamed by prefix"),
    (lambda e: True, lambda e: f"suggested {e.confidence:.2f}"),
)


def _rule_text(e: Entry) -> str:
    ev = next(ev for ev in e.evidence if ev.kind == "rule")
    return f"rule {ev.detail}" if len(ev.detail) <= 24 else "rule"


def entry_evidence(e: Entry) -> str:
    return next(text(e) for test, text in _EVIDENCE_TABLE if test(e))


@dataclass(frozen=True)
class Filter:
    """What the trees show. Empty filter: everything."""

    problems: bool = False
    pending: bool = False
    module: str = ""  # dotted module prefix of the target
    search: str = ""  # substring, or a wildcard pattern when it has * or ?

    @property
    def active(self) -> bool:
        return bool(self.problems or self.pending or self.module or self.search)

    def describe(self) -> str:
        parts = []
        if self.problems:
            parts.append("problems")
        if self.pending:
            parts.append("pending")
        if self.module:
            parts.append(f"module {self.module}")
        if self.search:
            parts.append(f"search '{self.search}'")
        return ", ".join(parts)


def name_matches(pattern: str, name: str) -> bool:
    """Case-insensitive: a wildcard pattern (`*`, `?`) matches anywhere; else a substring."""
    p, n = pattern.lower(), name.lower()
    if "*" in p or "?" in p:
        return fnmatch.fnmatchcase(n, p if p.startswith("*") else f"*{p}*")
    return p in n


def under_module(module: str, name: str) -> bool:
    return not module or name == module or name.startswith(module + ".")


@dataclass(frozen=True)
class SourceKey:
    """One source tensor: its source's label and its name there."""

    label: str
    name: str


def _counts(states: Mapping[RowState, int]) -> dict[str, int]:
    """`ReviewState.counts` of rows counted by state."""
    out = {"approved": 0, "pending": 0, "rejected": 0, "problems": 0}
    for state, n in states.items():
        e = in_state(state)
        if e.status != "proposed":
            out[e.status] += n
        out["pending"] += n * is_pending(e)
        out["problems"] += n * is_problem(e)
    return out


@dataclass(frozen=True)
class HeaderView:
    """What the header reads of a review (the plan as a snapshot, the filter, unsaved or not),
    frozen: the header of a large plan is drawn by a worker from it."""

    plan: Plan
    filter: Filter
    dirty: bool

    @cached_property
    def tally(self) -> Tally:
        """The rows counted as columns: one pass over them for the counts, the partials and
        the summary."""
        return self.plan.tallied()

    @cached_property
    def _states(self) -> dict[RowState, int]:
        return self.tally.state_counts()

    def summary(self) -> dict[str, ModuleSummary]:
        return self.tally.summary()

    def counts(self) -> dict[str, int]:
        return _counts(self._states)

    def partials(self) -> list[str]:
        if not any(is_partial(in_state(s)) for s in self._states):
            return []  # no row to list: no pass over the rows for their names
        return self.plan.partials()

    def partial_modules(self) -> dict[str, list[str]]:
        if not any(is_proposed_copy(in_state(s)) for s in self._states):
            return {}  # a module is listed for its proposed copies: none, no pass over the rows
        return self.plan.partial_modules()


class ReviewState:
    """A plan under review. `sources` maps each source label to its open checkpoint."""

    def __init__(self, plan: Plan, sources: Mapping[str, Checkpoint], target: Checkpoint):
        self.plan = plan
        self.sources = dict(sources)
        self.target = target
        self.filter = Filter()
        self._undo: list[Edit] = []
        self._redo: list[Edit] = []
        self._saved_at: int | None = 0  # len(_undo) when last saved; None: unreachable
        # Source tree names: plain when there is one source, "<key>.<name>" otherwise, where
        # <key> is the label without dots (one tree level); the tree shows the label itself
        # (`source_titles`: `b_nemo` -> `b.nemo`).
        self._multi = len(self.sources) > 1
        self._tree_keys = _tree_keys(list(self.sources))
        self.source_titles = {key: label for label, key in self._tree_keys.items()}
        self.source_tensors, self._source_keys = _source_index(self.sources, self._tree_keys)
        self._marks: _Marks | None = None  # made on first use
        # Counts the edits that may have changed which rows copy from which sources (all but a
        # status change that changed no source's use): what is worked out from those pairs (a
        # module's chart) holds while it stays the same
        self.pairs_version = 0

    # Queries -----------------------------------------------------------------------------------
    @property
    def target_tensors(self) -> dict[str, TensorInfo]:
        return self.target.tensors

    def entry(self, target: str) -> Entry | None:
        return self.plan.entries.get(target)

    def _kept_marks(self) -> _Marks:
        if self._marks is None:
            self._marks = _Marks(self.plan, self._source_keys)
        return self._marks

    def target_marks(self) -> dict[str, str]:
        """Each target row's mark (a copy: later edits leave it as it is)."""
        return dict(self._kept_marks().target)

    def target_mark(self, target: str) -> str:
        """`target_marks()[target]`, "" for a name not in the plan."""
        return self._kept_marks().target.get(target, "")

    def evidence(self, target: str) -> str:
        e = self.plan.entries.get(target)
        if e is None:
            return "not in plan"
        if "shape-mismatch" in e.flags and e.status != "rejected" and e.candidates:
            best = self.source_info(e.candidates[0].label, e.candidates[0].name)
            if best is not None:
                return f"{_shape(best.shape)} ≠ {_shape(e.shape)}"
        return entry_evidence(e)

    def source_info(self, label: str, name: str) -> TensorInfo | None:
        ckpt = self.sources.get(label)
        return None if ckpt is None else ckpt.tensors.get(name)

    def source_key(self, shown: str) -> SourceKey:
        return self._source_keys[shown]

    def shown_source(self, label: str, name: str) -> str:
        return f"{self._tree_keys[label]}.{name}" if self._multi else name

    def _as_typed(self, shown: str) -> str:
        """A source tree name as the user knows it: `b.nemo.encoder.w`, not `b_nemo.encoder.w`."""
        key = self._source_keys[shown]
        return f"{key.label}.{key.name}" if self._multi else key.name

    def partners(self, target: str) -> list[str]:
        """Source tree names a target row reads from (its chosen sources, or best candidate)."""
        e = self.plan.entries.get(target)
        if e is None:
            return []
        pairs = list(e.sources) or [(c.label, c.name) for c in e.candidates[:1]]
        return [self.shown_source(label, name) for label, name in pairs]

    def choices(self, target: str, limit: int = 12) -> list[Candidate]:
        """Sources to pick for `target`: the plan's ranked candidates, then every source tensor
        of the same shape ranked by name similarity (an exact-name row has no candidates)."""
        from ..mapping.names import token_similarity

        e = self.plan.entries.get(target)
        info = self.target.tensors.get(target)
        if e is None or info is None:
            return []
        out = list(e.candidates)
        seen = {(c.label, c.name) for c in out}
        same: list[Candidate] = []
        for label, ckpt in self.sources.items():
            for name, t in ckpt.tensors.items():
                if t.shape == info.shape and (label, name) not in seen:
                    score = token_similarity(name, target)
                    same.append(Candidate(label, name, score, "same shape, name similarity"))
        same.sort(key=lambda c: (-c.score, c.name != target, c.name))
        return (out + same)[:limit]

    def readers_of(self, shown_source: str) -> list[str]:
        """Target rows that copy from source tensor `shown_source`."""
        key = self._source_keys.get(shown_source)
        if key is None:
            return []
        pair = (key.label, key.name)
        entries = self.plan.entries.items()
        return [n for n, e in entries if e.effective == "copy" and pair in e.sources]

    def source_marks(self) -> dict[str, str]:
        """Each source tensor's used/unused: the same dict until an edit changes one (do not
        change it: a tree whose marks are this dict need not be redrawn)."""
        return self._kept_marks().source

    def partials(self) -> list[str]:
        """Rows that keep their init with no declared reason (the header's warning)."""
        return self.plan.partials()

    def summary(self) -> dict[str, ModuleSummary]:
        return self.plan.summary()

    def partial_modules(self) -> dict[str, list[str]]:
        return self.plan.partial_modules()

    def counts(self) -> dict[str, int]:
        """approved / pending (mapping.plan.is_pending: what ckpt apply refuses) / rejected /
        problems (mapping.plan.is_problem) over all rows; a proposed keep is none of the first
        three (it changes nothing)."""
        return _counts(self.plan.state_counts())

    def header_view(self) -> HeaderView:
        """What the header shows, frozen now (a snapshot of the plan): a worker may draw it."""
        return HeaderView(self.snapshot(), self.filter, self.dirty)

    # Filters -----------------------------------------------------------------------------------
    def set_filter(self, **changes: Any) -> Filter:
        self.filter = replace(self.filter, **changes)
        return self.filter

    def clear_filter(self) -> None:
        self.filter = Filter()

    def _target_ok(self, name: str, e: Entry | None) -> bool:
        f = self.filter
        if f.problems and not (e is not None and is_problem(e)):
            return False
        if f.pending and not (e is not None and is_pending(e)):
            return False
        return under_module(f.module, name) and (not f.search or name_matches(f.search, name))

    def visible_targets(self) -> list[str]:
        entries = self.plan.entries
        return [n for n in self.target.tensors if self._target_ok(n, entries.get(n))]

    def visible_sources(self, targets: Iterable[str] | None = None) -> list[str]:
        """Source names shown: all, or those matching the search / feeding the visible targets."""
        f = self.filter
        if not f.active:
            return list(self.source_tensors)
        wanted = {
            p
            for t in (targets if targets is not None else self.visible_targets())
            for p in self.partners(t)
        }
        if f.search and not (f.problems or f.pending or f.module):
            wanted.update(n for n in self.source_tensors
                          if name_matches(f.search, n) or name_matches(f.search, self._as_typed(n)))
        return [n for n in self.source_tensors if n in wanted]

    # Edits -------------------------------------------------------------------------------------
    @property
    def dirty(self) -> bool:
        """True when the plan differs from the last save (or from the proposal, never saved)."""
        return self._saved_at != len(self._undo)

    @property
    def unsaved_edits(self) -> int:
        """Edits since the last save (all of them when the saved state cannot be reached)."""
        if self._saved_at is None or self._saved_at > len(self._undo):
            return len(self._undo) + len(self._redo)
        return len(self._undo) - self._saved_at

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    def _applied(self, edit: Edit) -> Edit:
        """`edit` was just made to the plan: the marks follow it."""
        if self._marks is not None:
            self._marks.applied(self.plan, edit)
        if edit.uses_changed or not edit.status_only:
            self.pairs_version += 1
        return edit

    def _push(self, edit: Edit) -> Edit:
        self._applied(edit)
        if edit.targets or edit.rules is not None:
            if self._saved_at is not None and self._saved_at > len(self._undo):
                self._saved_at = None  # the saved state was in the redo stack we now drop
            self._undo.append(edit)
            self._redo.clear()
        return edit

    def approve(self, names: Iterable[str]) -> Edit:
        return self._push(self.plan.approve(list(names)))

    def reject(self, names: Iterable[str]) -> Edit:
        return self._push(self.plan.reject(list(names)))

    def set_source(self, target: str, label: str, name: str) -> Edit:
        return self._push(self.plan.set_source(target, label, name))

    def set_analogous_sources(self, targets: list[str], label: str, name: str
                              ) -> tuple[Edit, list[str]]:
        """Source `name` for `targets[0]`, and for every other target (a folded row) the same
        source moved to its layer indices (`names.analogous`) where that fits its shape; one
        edit. Returns it with the targets left as they were."""
        from ..mapping.names import analogous

        picked, missed = [(targets[0], label, name)], []
        for t in targets[1:]:
            other = analogous(name, targets[0], t)
            info = self.source_info(label, other) if other is not None else None
            tgt = self.target.tensors.get(t)
            if other is None or info is None or tgt is None or info.shape != tgt.shape:
                missed.append(t)
            else:
                picked.append((t, label, other))
        return self._push(self.plan.set_sources(picked)), missed

    def preview_rule(self, rule: Mapping[str, Any]) -> list[tuple[str, Entry, Entry]]:
        return self.plan.preview_rule(rule)

    def add_rule(self, rule: Mapping[str, Any]) -> Edit:
        return self._push(RuleResult("add", dict(rule)).edit(self.plan))

    def remove_rule(self, index: int) -> Edit:
        """Take rule `index` out and re-propose: rows the user decided stay as they are."""
        return self._push(RuleResult("remove", None, index).edit(self.plan))

    def replace_rule(self, index: int, rule: Mapping[str, Any]) -> Edit:
        return self._push(RuleResult("replace", dict(rule), index).edit(self.plan))

    def preview_rules(self, rules: Sequence[Mapping[str, Any]]) -> list[tuple[str, Entry, Entry]]:
        """Rows that replacing the whole rule list with `rules` would change (no mutation)."""
        return self.plan.preview_rules(rules)

    def undo(self) -> Edit | None:
        if not self._undo:
            return None
        edit = self._undo.pop()
        self._redo.append(self._applied(self.plan.undo(edit)))
        return edit

    def redo(self) -> Edit | None:
        if not self._redo:
            return None
        edit = self._redo.pop()
        self._undo.append(self._applied(self.plan.undo(edit)))
        return edit

    def mark_saved(self) -> None:
        self._saved_at = len(self._undo)

    # Work off the UI thread ----------------------------------------------------------------------
    def snapshot(self) -> Plan:
        """A copy of the plan that later edits leave alone (entries are frozen, so copying the
        containers is enough): what a worker reads, re-proposes on, saves or writes."""
        p = self.plan
        return replace(
            p, sources=list(p.sources), rules=list(p.rules), entries=dict(p.entries),
            unused=list(p.unused),
        )

    def apply_edit(self, edit: Edit) -> Edit:
        """Apply an edit a worker computed on a `snapshot` (a re-proposal with changed rules):
        refused with PlanError when the plan is no longer the state it was computed from.
        Undo reverts it like any other edit."""
        entries = self.plan.entries
        stale = any(entries.get(target) != old for target, old, _ in edit.changes)
        if stale or (edit.rules is not None and tuple(self.plan.rules) != edit.rules[0]):
            raise PlanError(f"{edit.action}: the plan changed while it was computed; not applied")
        self.plan.undo(edit.reversed())  # Plan.undo applies the reverse of the edit it is given
        return self._push(edit)


RULE_ACTIONS = {"add": "add_rule", "replace": "edit_rule", "remove": "remove_rule"}


@dataclass(frozen=True)
class RuleResult:
    """A change of the rule list the user kept in the rule editor: add a rule, replace rule
    `index`, or remove rule `index`. Pure data: a worker previews or applies it to a snapshot."""

    kind: str  # add | replace | remove
    rule: dict[str, Any] | None = None
    index: int = -1

    def rules(self, plan: Plan) -> list[Any]:
        """The plan's rule list after this change."""
        rules: list[Any] = list(plan.rules)
        if self.kind == "add":
            rules.append(self.rule)
        elif self.kind == "replace":
            rules[self.index] = self.rule
        else:
            del rules[self.index]
        return rules

    def preview(self, plan: Plan) -> list[tuple[str, Entry, Entry]]:
        """The rows this change would change (`Plan.preview_rules`); nothing is changed."""
        return plan.preview_rules(self.rules(plan))

    def edit(self, plan: Plan) -> Edit:
        """Make the change on `plan` (`Plan.set_rules`: re-propose) and return its Edit."""
        return plan.set_rules(self.rules(plan), RULE_ACTIONS[self.kind])


def source_tree_view(sources: Mapping[str, Checkpoint]
                     ) -> tuple[dict[str, TensorInfo], dict[str, str]]:
    """The source tree's tensors by shown name, and its titles (`ReviewState.source_tensors`,
    `.source_titles`), for sources by label: what the first paint shows before a plan exists."""
    keys = _tree_keys(list(sources))
    return _source_index(sources, keys)[0], {key: label for label, key in keys.items()}


def _source_index(sources: Mapping[str, Checkpoint], tree_keys: dict[str, str]
                  ) -> tuple[dict[str, TensorInfo], dict[str, SourceKey]]:
    """Each source tensor by its name in the source tree (`<key>.<name>` when there are
    several sources, else its own name), and what it is."""
    multi = len(sources) > 1
    tensors: dict[str, TensorInfo] = {}
    keys: dict[str, SourceKey] = {}
    for label, ckpt in sources.items():
        for name, info in ckpt.tensors.items():
            shown = f"{tree_keys[label]}.{name}" if multi else name
            tensors[shown] = info
            keys[shown] = SourceKey(label, name)
    return tensors, keys


def _tree_keys(labels: list[str]) -> dict[str, str]:
    """Each source label's key in the source tree: one dotless segment, unique (`b.nemo` ->
    `b_nemo`; a second `b_nemo` -> `b_nemo~2`)."""
    out: dict[str, str] = {}
    taken: set[str] = set()
    for label in labels:
        base = key = label.replace(".", "_")
        n = 2
        while key in taken:
            key, n = f"{base}~{n}", n + 1
        taken.add(key)
        out[label] = key
    return out


# Rule text as typed in the rule editor ----------------------------------------------------------
RULE_FORMS = (
    "a.*.b -> c.*.d  (wildcard template)",
    "old.name -> new.name  (rename)",
    "re:PATTERN -> REPLACEMENT  (regex, full match)",
    "keep GLOB / drop GLOB",
    "{any: rule}  (YAML, as in docs/mapping.md)",
)


def parse_rule(text: str) -> dict[str, Any]:
    """The rule a line of text stands for, as the dict `rules_from_list` validates."""
    import yaml

    from .. import yamlload

    text = text.strip()
    if not text:
        raise PlanError("empty rule")
    if text.startswith("{"):
        try:
            data = yamlload.load(text)
        except yaml.YAMLError as e:
            raise PlanError(f"rule is not valid YAML: {e}") from None
        if not isinstance(data, dict):
            raise PlanError("a YAML rule is a mapping like {keep: 'decoder.*'}")
        return data
    word, _, rest = text.partition(" ")
    if word in ("keep", "drop") and rest.strip():
        return {word: rest.strip()}
    lhs, arrow, rhs = text.partition("->")
    if not arrow or not lhs.strip():
        raise PlanError(f"cannot read rule {text!r}: expected one of: " + "; ".join(RULE_FORMS))
    lhs, rhs = lhs.strip(), rhs.strip()
    if lhs.startswith("re:"):
        return {"regex": {"pattern": lhs[3:], "to": rhs}}
    if any(ch in lhs for ch in "*{"):
        return {"template": {"from": lhs, "to": rhs}}
    return {"rename": {"from": lhs, "to": rhs}}


def rule_text(rule: Any) -> str:
    """A rule as one line of YAML flow text (what `parse_rule` reads back)."""
    import yaml

    return yaml.safe_dump(rule.to_dict(), default_flow_style=True, width=10_000).strip()


def entry_text(e: Entry, labelled: bool = False) -> str:
    """`copy ← enc.w` / `keep (vocabulary changed 29 -> 257)`: a row's decision in a few words;
    `labelled` names each source's label too (`copy ← b.nemo:enc.w`: several sources)."""
    if e.effective == "copy":
        return "copy ← " + ", ".join(f"{label}:{name}" if labelled else name
                                     for label, name in e.sources)
    return f"{e.effective} ({e.reason})" if e.reason else e.effective
