"""The plan: one decision per target tensor, with evidence, stored as reviewable YAML.

A `Plan` is plain data plus pure edit methods. Entries are frozen: an edit replaces entries and
returns an `Edit` that `Plan.undo` reverts, so a UI keeps its undo stack as a list of edits.
Methods that need tensor headers (`set_source`, `preview_rule(s)`, `add_rule`, `set_rules`) work
on a plan bound to its checkpoints (a `PlanContext`): `propose()` returns a bound plan, a loaded
one is bound by `propose.bind(plan, sources, target)`.

The plan's parts live next door: its data types in `entries`, stateful groups in `groups`, the
YAML schema and file I/O in `planfile`, inversion in `invert`. Their public names are importable
from here too.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from itertools import chain
from typing import TYPE_CHECKING, Any, Protocol

from ..bulk import paused_gc, rare_gc
from ..errors import PlanError
from . import names as nm
from . import planfile, tally
from .entries import (
    DECISIONS,
    DECLARED_KEEP_FLAGS,
    FLAGS,
    STATUSES,
    Candidate,
    Edit,
    Entry,
    Evidence,
    ModuleSummary,
    RowState,
    Shape,
    SourceRef,
    Unused,
    copied_sources,
    fingerprint,
    is_ambiguous,
    is_partial,
    is_pending,
    is_problem,
    names_where,
    uses_differ,
    with_status,
)
from .groups import STATEFUL_GROUPS, follow_groups, group_index, group_members
from .invert import invert_parts
from .modules import partial_modules_in
from .planfile import PLAN_VERSION
from .rules import Rule, rules_from_list
from .transforms import Transform

if TYPE_CHECKING:
    from ..model import Checkpoint

__all__ = [
    "DECISIONS",
    "DECLARED_KEEP_FLAGS",
    "FLAGS",
    "PLAN_VERSION",
    "STATEFUL_GROUPS",
    "STATUSES",
    "Candidate",
    "Edit",
    "Entry",
    "Evidence",
    "ModuleSummary",
    "Plan",
    "Shape",
    "SourceRef",
    "Unused",
    "fingerprint",
    "follow_groups",
    "group_members",
    "is_ambiguous",
    "is_partial",
    "is_pending",
    "is_problem",
]


class PlanContext(Protocol):
    """What a bound plan asks of its checkpoints: `propose.Context` is one, `propose.bind`
    attaches it. The plan never opens a checkpoint itself."""

    def propose(self, rules: list[Rule]) -> Plan: ...

    def unused_for(self, entries: Mapping[str, Entry], rules: list[Rule]) -> list[Unused]: ...

    def user_entry(
        self, e: Entry, label: str, name: str, transform: tuple[Transform, ...]
    ) -> Entry: ...

    def partial_modules(self, entries: Mapping[str, Entry]) -> dict[str, list[str]]: ...

    def prepare(self) -> None: ...


@dataclass
class Plan:
    """Rules plus one `Entry` per target tensor. See docs/mapping.md for the YAML layout."""

    sources: list[SourceRef]
    target: SourceRef
    rules: list[Rule] = field(default_factory=list)
    entries: dict[str, Entry] = field(default_factory=dict)
    unused: list[Unused] = field(default_factory=list)
    _context: PlanContext | None = field(default=None, repr=False, compare=False)
    _layout: Any = field(default=None, repr=False, compare=False)  # see _tally_layout
    _groups: Any = field(default=None, repr=False, compare=False)  # see _group_index

    # -- queries ---------------------------------------------------------------------------------
    def source(self, label: str) -> SourceRef:
        for s in self.sources:
            if s.label == label:
                return s
        raise PlanError(
            f"plan has no source labelled {label!r} (sources: {[s.label for s in self.sources]})"
        )

    def partials(self) -> list[str]:
        """Target rows that keep their init without a declared reason (see `is_partial`)."""
        return names_where(self.entries, is_partial)

    def partial_modules(self) -> dict[str, list[str]]:
        """{description: proposed copies} of the modules copied in part (see
        modules.partial_modules); without its checkpoints (an unbound plan) the modules come
        from the names alone and a changed class is not seen."""
        if self._context is not None:
            return self._context.partial_modules(self.entries)
        return partial_modules_in(self.entries, {}, {})

    def pending(self) -> list[str]:
        """Target rows `is_pending` flags: apply refuses them without accept_proposed."""
        return names_where(self.entries, is_pending)

    def ambiguous(self) -> list[str]:
        """Target rows `is_ambiguous` flags: scripted apply refuses them unless skipped."""
        return names_where(self.entries, is_ambiguous)

    def problems(self) -> list[str]:
        """Target rows `is_problem` flags: the rows to review."""
        return names_where(self.entries, is_problem)

    def group_of(self, names: Iterable[str]) -> list[str]:
        """`names` plus the members of their stateful groups (see STATEFUL_GROUPS) in the plan,
        in plan order: what approve/reject carry along."""
        listed = names if isinstance(names, list) else list(names)
        entries = self.entries
        if len(listed) == len(entries):
            every = list(entries)
            if listed == every:
                return every  # every row, in plan order (a bulk edit of the top module)
        wanted = set(listed)
        index = self._group_index()
        # set operations, not a lookup per name: a bulk edit names 100k rows, few have a group
        for n in wanted.intersection(index):
            wanted.update(index[n])
        missing = wanted.difference(entries)
        if not missing and len(wanted) == len(entries):
            return list(entries)
        return [n for n in entries if n in wanted] + sorted(missing)

    def prepare(self) -> None:
        """Work out now what edits and summaries look up by name (stateful groups, modules,
        layer stacks; names never change with edits): a UI calls this in its worker, so that
        the first key does not pay for it."""
        self._group_index()
        self._tally_layout()
        if self._context is not None:
            self._context.prepare()

    def _group_index(self) -> dict[str, list[str]]:
        """`groups.group_index` of the rows: names never change with edits, so it is built once
        per set of rows (bulk approve of 100k rows looked up each row's group)."""
        names = tuple(self.entries)
        if self._groups is None or self._groups[0] != names:
            self._groups = (names, group_index(self.entries))
        return self._groups[1]

    def flagged(self, flag: str) -> list[Entry]:
        return [e for e in self.entries.values() if flag in e.flags]

    def under(self, prefix: str) -> list[str]:
        """Target names in the subtree `prefix` (a dotted module path), for subtree approval."""
        dotted = prefix.rstrip(".") + "."
        return [n for n in self.entries if n == prefix or n.startswith(dotted)]

    def used_sources(self) -> set[tuple[str, str]]:
        return set(chain.from_iterable(copied_sources(self.entries.values())))

    def summary(self) -> dict[str, ModuleSummary]:
        """Per-module counts; `ModuleSummary.line()` gives `encoder 100% (16/16 layers)`."""
        return self.tallied().summary()

    def state_counts(self) -> dict[RowState, int]:
        """How many rows are in each state (what the counts and the partials are read from)."""
        return self.tallied().state_counts()

    def tallied(self) -> tally.Tally:
        """The rows as they are now, counted as columns: the summary and the counts by state
        from one pass over the rows (a UI draws both after every edit)."""
        return tally.Tally(self.entries, self._tally_layout())

    def _tally_layout(self) -> tally.Layout:
        """The summary's columns: each row's module and layer (from the names alone, which
        edits never change) and element count (the target's shape, which rows keep through
        every edit), worked out once per set of names (a TUI redraws the summary on every
        edit)."""
        names = tuple(self.entries)
        if self._layout is None or self._layout[0] != names:
            root = nm.common_root(names)
            self._layout = (names, tally.layout(self.entries, nm.modules_of(names, root),
                                                _largest_stacks(names, root)))
        made: tally.Layout = self._layout[1]
        return made

    # -- edits (each returns an Edit that undo() reverts) ------------------------------------------
    def _replace(self, action: str, new: Iterable[Entry]) -> Edit:
        targets, before, after = [], [], []
        for e in new:
            old = self.entries.get(e.target)
            if old is None:
                raise PlanError(f"plan has no target tensor {e.target!r}")
            if old != e:
                targets.append(e.target)
                before.append(old)
                after.append(e)
                self.entries[e.target] = e
        return self._made(action, targets, before, after)

    def _set_status(self, action: str, names: Iterable[str], status: str) -> Edit:
        """`_replace` for a status change of `names` and their groups' members: rows already in
        that status are left (no new entry, no comparison of every field: 100k rows at once)."""
        with paused_gc():  # a new entry per row: no cycles, and 100k of them at once
            targets = self.group_of(names)
            rows = self._entries(targets)
            old = [e for e in rows if e.status != status]
            if len(old) != len(rows):
                targets = [e.target for e in old]
            new = with_status(old, status)
            self.entries.update(zip(targets, new, strict=True))
            return dataclasses.replace(self._made(action, targets, old, new), status_only=True)

    def _made(
        self, action: str, targets: list[str], before: list[Entry], after: list[Entry]
    ) -> Edit:
        """The Edit of rows just changed from `before` to `after`; `unused` follows them when
        they change which source tensors are read (the Edit keeps both lists for undo)."""
        uses = uses_differ(before, after)
        unused = None
        if uses and self._context is not None:
            was = tuple(self.unused)
            self._refresh_unused(self._context)
            unused = (was, tuple(self.unused))
        return Edit(action, tuple(targets), tuple(before), tuple(after), unused=unused,
                    uses_changed=uses)

    def _entries(self, names: Iterable[str]) -> list[Entry]:
        try:
            return list(map(self.entries.__getitem__, names))
        except KeyError as e:
            raise PlanError(f"plan has no target tensor {e.args[0]!r}") from None

    def approve(self, names: Iterable[str]) -> Edit:
        """Mark rows approved (apply writes approved and proposed rows; see docs). The members
        of a row's stateful group (a norm's buffers, a weight-norm pair) are approved with it."""
        return self._set_status("approve", names, "approved")

    def reject(self, names: Iterable[str]) -> Edit:
        """Mark rows rejected: apply keeps the target's own tensor for them. The members of a
        row's stateful group are rejected with it, so a module never half moves."""
        return self._set_status("reject", names, "rejected")

    def set_decision(self, target: str, decision: str, reason: str = "set by user") -> Edit:
        """Make a row keep its init or be dropped (a copy needs set_source)."""
        if decision not in ("keep", "drop"):
            raise PlanError(
                "set_decision: use set_source for a copy; "
                f"decision must be keep or drop, got {decision!r}"
            )
        (e,) = self._entries([target])
        new = dataclasses.replace(
            e,
            decision=decision,
            sources=(),
            transform=(),
            source_shapes=(),
            source_dtypes=(),
            status="approved",
            reason=reason,
            flags=frozenset({"user"}),
        )
        return self._replace("set_decision", [new])

    def set_source(
        self, target: str, label: str, name: str, transform: Iterable[Transform] = ()
    ) -> Edit:
        """Copy `target` from source tensor `name` of source `label` (approved, flagged "user").

        Needs a bound plan: the shapes are checked and a mismatch raises PlanError naming both.
        """
        ctx = self._need_context("set_source")
        (e,) = self._entries([target])
        return self._replace("set_source", [ctx.user_entry(e, label, name, tuple(transform))])

    def set_sources(self, choices: Iterable[tuple[str, str, str]]) -> Edit:
        """`set_source` for several (target, label, name) at once: one edit, one undo."""
        ctx = self._need_context("set_sources")
        picked = list(choices)
        entries = self._entries([t for t, _, _ in picked])
        new = [ctx.user_entry(e, label, name, ()) for e, (_, label, name) in zip(
            entries, picked, strict=True)]
        return self._replace("set_source", new)

    def preview_rules(
        self, rules: Iterable[Rule | Mapping[str, Any]]
    ) -> list[tuple[str, Entry, Entry]]:
        """Rows that replacing the whole rule list with `rules` would change, as (target, old
        entry, new entry): proposed rows whose decision, sources, transform, flags or reason
        differ. Rows the user approved or rejected are never listed. No mutation."""
        ctx = self._need_context("preview_rules")
        fresh = ctx.propose(rules_from_list(list(rules), "rules"))
        return [
            (n, old, fresh.entries[n])
            for n, old in self.entries.items()
            if old.status == "proposed" and _differs(old, fresh.entries[n])
        ]

    def preview_rule(self, rule: Rule | Mapping[str, Any]) -> list[tuple[str, Entry, Entry]]:
        """Rows that adding `rule` would change (see preview_rules); no mutation."""
        return self.preview_rules([*self.rules, rule])

    def set_rules(
        self, rules: Iterable[Rule | Mapping[str, Any]], action: str = "set_rules"
    ) -> Edit:
        """Replace the whole rule list and re-propose (to remove, reorder or edit rules): the
        rows `preview_rules` lists change, rows the user approved or rejected stay as they are.
        Returns an Edit that `undo` reverts, rules and unused list included."""
        ctx = self._need_context(action)
        new_rules = rules_from_list(list(rules), "rules")
        before_rules, before_unused = tuple(self.rules), tuple(self.unused)
        changes = self.preview_rules(new_rules)
        self.rules = list(new_rules)
        edit = self._replace(action, (new for _, _, new in changes))
        self._refresh_unused(ctx)
        return dataclasses.replace(
            edit,
            rules=(before_rules, tuple(self.rules)),
            unused=(before_unused, tuple(self.unused)),
        )

    def add_rule(self, rule: Rule | Mapping[str, Any]) -> Edit:
        """Append a rule and re-propose; rows the user approved or rejected stay as they are."""
        return self.set_rules([*self.rules, rule], "add_rule")

    def undo(self, edit: Edit) -> Edit:
        """Revert an edit; returns the edit that redoes it."""
        with paused_gc():
            return self._undo(edit)

    def _undo(self, edit: Edit) -> Edit:
        self.entries.update(zip(edit.targets, edit.before, strict=True))
        if edit.rules is not None:
            self.rules = list(edit.rules[0])
        if edit.unused is not None:
            self.unused = list(edit.unused[0])
        elif edit.uses_changed and self._context is not None:
            self._refresh_unused(self._context)
        return edit.reversed(f"undo {edit.action}")

    def _need_context(self, what: str) -> PlanContext:
        if self._context is None:
            raise PlanError(
                f"{what} needs the checkpoints: call bind(plan, sources, target) first "
                "(inspector.mapping.bind)"
            )
        return self._context

    def _refresh_unused(self, ctx: PlanContext) -> None:
        self.unused = ctx.unused_for(self.entries, self.rules)

    # -- checkpoints -------------------------------------------------------------------------------
    def check_fingerprints(
        self, sources: list[Checkpoint], target: Checkpoint, *, force: bool = False
    ) -> list[str]:
        """Compare the checkpoints' header digests with the plan's. PlanError unless `force`;
        returns the differences (empty when everything matches)."""
        if len(sources) != len(self.sources):
            raise PlanError(f"the plan has {len(self.sources)} source(s), {len(sources)} given")
        problems = []
        for ref, ckpt in [*zip(self.sources, sources, strict=True), (self.target, target)]:
            got = fingerprint(ckpt)
            if ref.fingerprint and got != ref.fingerprint:
                problems.append(
                    f"{ckpt.label}: header fingerprint {got} differs from the plan's "
                    f"{ref.fingerprint} (for {ref.label})"
                )
        if problems and not force:
            raise PlanError("; ".join(problems) + " (use force to apply anyway)")
        return problems

    # -- inversion ---------------------------------------------------------------------------------
    def invert(self) -> Plan:
        """The plan that maps the target back onto the source (one source, invertible transforms).

        Rules are inverted too when every rule can be; otherwise the inverse has no rules and says
        so in its entries' reasons, which still carry every decision.
        """
        return Plan(*invert_parts(self))

    # -- YAML --------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return planfile.to_dict(self)

    def to_yaml(self, compact: bool | None = None) -> str:
        """The plan file's text: with `compact`, rows that differ only in their name's indices
        are written once, as a template (docs/mapping.md); None: compact from
        planfile.COMPACT_FROM rows up."""
        return planfile.dump_plan(self, compact)

    @classmethod
    def from_dict(cls, data: Any, where: str = "plan") -> Plan:
        return cls(*planfile.from_dict(data, where))

    @classmethod
    def from_yaml(cls, text: str, where: str = "plan") -> Plan:
        with rare_gc():  # one block: the collector's pass between parse and check cost 0.4 s
            return cls.from_dict(planfile.parse(text, where), where)

    def save(
        self, path: str | os.PathLike[str], inputs: Iterable[str | os.PathLike[str]] = (),
        compact: bool | None = None,
    ) -> None:
        """Write atomically (a temp file in the same folder, fsync, rename over `path`). Refused
        when `path` is one of `inputs` or of the plan's own checkpoints (a link to one too).
        Failures raise PlanError, the error callers of plan I/O handle (the TUI's save).
        `compact`: as in `to_yaml`."""
        own = [ref.path for ref in (*self.sources, self.target) if ref.path]
        text = self._rebased(os.curdir, os.path.dirname(path) or os.curdir).to_yaml(compact)
        planfile.write(path, text, [*inputs, *own])

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Plan:
        text = planfile.read(path)
        folder = os.path.dirname(path) or os.curdir
        return cls.from_yaml(text, str(path))._rebased(folder, os.curdir)

    def _rebased(self, old: str | os.PathLike[str], new: str | os.PathLike[str]) -> Plan:
        """This plan with relative checkpoint paths meant from folder `old` rewritten to be meant
        from folder `new` (absolute paths stay). In memory a relative path is meant from the
        current folder; in a plan file from the file's own folder (`load`, `save`)."""
        if os.path.realpath(old) == os.path.realpath(new):
            return self
        refs = [planfile.rebase_ref(r, old, new) for r in (*self.sources, self.target)]
        return dataclasses.replace(self, sources=refs[:-1], target=refs[-1])


# -- helpers: summary ------------------------------------------------------------------------------
def _largest_stacks(names: Iterable[str], root: tuple[str, ...]) -> dict[str, dict[int, list[str]]]:
    """Module -> its layer stack (index -> member names): the largest one named like a layer list
    (`encoder.layers`), else the largest other stack; the first one on a tie."""
    out: dict[str, tuple[bool, dict[int, list[str]]]] = {}
    for path, layers in nm.layer_stacks(names).items():
        comps = path.split(".")
        if len(comps) <= len(root):
            continue  # each layer is a module of its own: no module holds the stack
        mod = ".".join(comps[: len(root) + 1])
        named = nm.is_layer_list_name(path)
        if mod not in out or (named, len(layers)) > (out[mod][0], len(out[mod][1])):
            out[mod] = (named, layers)
    return {mod: layers for mod, (_, layers) in out.items()}


def _differs(a: Entry, b: Entry) -> bool:
    return (a.decision, a.sources, a.transform, a.flags, a.reason) != (
        b.decision,
        b.sources,
        b.transform,
        b.flags,
        b.reason,
    )

