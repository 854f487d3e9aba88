"""The plan: one decision per target tensor, with evidence, stored as reviewable YAML.

A `Plan` is plain data plus pure edit methods. Entries are frozen: an edit replaces entries and
returns an `Edit` that `Plan.undo` reverts, so a UI keeps its undo stack as a list of edits.
Methods that need tensor headers (`set_source`, `preview_rule(s)`, `add_rule`, `set_rules`) work
on a plan bound to its checkpoints: `propose()` returns a bound plan, a loaded one is bound by
`bind()`.

Names in `Entry.sources` are names as they appear in that source checkpoint (no prefix added);
`SourceRef.prefix` is what `propose` put in front of them before applying the rules.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from math import prod
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from .. import yamlload
from ..errors import PlanError, WriteError
from ..humanize import floor_percent
from ..io.atomic import write_text_atomic
from . import names as nm
from .rules import Rule, invert_rules, rules_from_list
from .transforms import Concat, Split, Transform, chain_inverse, transform_from_dict

if TYPE_CHECKING:
    from ..model import Checkpoint
    from .propose import Context

PLAN_VERSION = 1
DECISIONS = ("copy", "keep", "drop")  # drop: the target tensor is left out of the written file
STATUSES = ("proposed", "approved", "rejected")  # rejected rows are written as "keep"
# Flags a row can carry; the UI filters on them.
FLAGS = {
    "ambiguous": "two or more sources fit equally well: none was chosen",
    "shape-mismatch": "the best source has another shape: the target keeps its init",
    "no-source": "no source tensor fits: the target keeps its init",
    "vocab-change": "the module's vocabulary-facing layer changed size: the module keeps its init",
    "dtype-change": "the source has another dtype: a cast is applied",
    "heuristic": "chosen by name/shape similarity, not by exact name or a rule",
    "kept-by-rule": "a keep rule says the target keeps its init",
    "user": "chosen or changed by the user",
}
# Flags that declare why a row keeps its init. A row that keeps its init (its effective decision
# is keep) without one of these, and without the user's reject, is a *partial*: the transfer
# silently misses it. `ckpt map`, `ckpt apply`'s report, the TUI and --strict all use
# `is_partial`/`is_problem` below, so they count the same rows.
DECLARED_KEEP_FLAGS = frozenset({"vocab-change", "kept-by-rule", "user"})

# Tensors of one module that move as a unit, by name suffix after the module path. Within one
# group, when any anchor keeps its init, every member (anchors and followers) keeps it: a
# BatchNorm whose weight keeps the target's values keeps its running statistics too. When no
# anchor is in the target (a BatchNorm without affine), the followers are the anchors.
# (anchors, followers)
STATEFUL_GROUPS: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = (
    # torch BatchNorm*/InstanceNorm*(track_running_stats) and SyncBatchNorm buffers
    (("weight", "bias"), ("running_mean", "running_var", "num_batches_tracked")),
    # torch.nn.utils.weight_norm: magnitude and direction are one weight (fairseq, wav2vec2)
    (("weight_g", "weight_v"), ()),
    # torch.nn.utils.parametrizations.weight_norm (transformers >= 4.40)
    (("parametrizations.weight.original0", "parametrizations.weight.original1"), ()),
)


def is_partial(e: Entry) -> bool:
    """The row keeps the target's init with no declared reason (a keep rule, a vocabulary
    change, the user's reject or choice): a transfer that silently misses it."""
    return e.effective == "keep" and e.status != "rejected" and not e.flags & DECLARED_KEEP_FLAGS


def is_pending(e: Entry) -> bool:
    """Still proposed and would change the output (a copy or a drop): what `apply` refuses
    without accept_proposed and the TUI counts "pending". A proposed keep changes nothing."""
    return e.status == "proposed" and e.effective in ("copy", "drop")


def is_problem(e: Entry) -> bool:
    """The one definition of a "problem row" (`ckpt map`'s "to review", the TUI's problems
    filter and count): a partial (shape mismatch, no source, ambiguous sources, ...)."""
    return is_partial(e)


Shape = tuple[int, ...]


@dataclass(frozen=True)
class SourceRef:
    """A checkpoint a plan reads from or writes to."""

    label: str  # short unique name used in entries
    path: str | None
    prefix: str = ""  # added to the source's names before the rules see them
    fingerprint: str = ""  # header digest, see fingerprint()
    root: str = ""  # weights sub-tree inside the container ("" = detected/top)
    content: str | None = None  # content digest of the whole checkpoint, when computed


@dataclass(frozen=True)
class Evidence:
    """One reason for (or against) a row's decision."""

    kind: str  # exact-name, rule, suffix, tokens, layer-index, shape, dtype, numel, digest, vocab
    detail: str
    score: float = 0.0


@dataclass(frozen=True)
class Candidate:
    """A source tensor ranked for a target row."""

    label: str
    name: str
    score: float
    why: str


@dataclass(frozen=True)
class Entry:
    """The decision for one target tensor."""

    target: str
    decision: str  # copy | keep | drop
    sources: tuple[tuple[str, str], ...] = ()  # (source label, name in that source)
    transform: tuple[Transform, ...] = ()
    status: str = "proposed"
    reason: str = ""
    evidence: tuple[Evidence, ...] = ()
    confidence: float = 0.0
    flags: frozenset[str] = frozenset()
    candidates: tuple[Candidate, ...] = ()
    shape: Shape = ()  # the target tensor's shape and dtype
    dtype: str = ""
    source_shapes: tuple[Shape, ...] = ()  # parallel to sources
    source_dtypes: tuple[str, ...] = ()

    @property
    def numel(self) -> int:
        return prod(self.shape)

    @property
    def effective(self) -> str:
        """What apply does: the decision, or "keep" for a rejected row."""
        return "keep" if self.status == "rejected" else self.decision


@dataclass(frozen=True)
class Unused:
    """A source tensor no entry reads, and why."""

    label: str
    name: str
    reason: str


@dataclass(frozen=True)
class Edit:
    """A reversible change: (target, entry before, entry after) per row; rules before/after."""

    action: str
    changes: tuple[tuple[str, Entry, Entry], ...]
    rules: tuple[tuple[Rule, ...], tuple[Rule, ...]] | None = None
    unused: tuple[tuple[Unused, ...], tuple[Unused, ...]] | None = None


@dataclass
class ModuleSummary:
    """Transfer counts for one module (the component after the names' common root)."""

    module: str
    tensors: int = 0
    copied: int = 0
    kept: int = 0
    dropped: int = 0
    problems: int = 0  # rows `is_problem` counts (keep their init without a declared reason)
    params: int = 0
    params_copied: int = 0
    layers: int = 0  # layers of the module's largest stack
    layers_copied: int = 0  # of those, layers whose every tensor is copied

    @property
    def percent(self) -> float:
        """Share of the module's parameters (elements) that are copied."""
        return 100.0 * self.params_copied / self.params if self.params else 0.0

    def percent_text(self) -> str:
        """`percent` for people, floored to one decimal: `100%` and `0%` only when exact
        (`99.9%`, `98.7%`, `0.1%` otherwise; below 0.1%: `<0.1%`)."""
        return floor_percent(self.params_copied, self.params, 1)

    def line(self) -> str:
        """`encoder 99.7% (164/168 tensors, 0/4 layers complete)`: the share of parameters
        copied; tensors copied when some but not all are; layers of the largest stack whose
        every tensor is copied."""
        details = []
        if 0 < self.copied < self.tensors:
            details.append(f"{self.copied}/{self.tensors} tensors")
        if self.layers:
            details.append(f"{self.layers_copied}/{self.layers} layers complete")
        text = f"{self.module} {self.percent_text()}"
        return f"{text} ({', '.join(details)})" if details else text


def fingerprint(ckpt: Checkpoint) -> str:
    """Digest of a checkpoint's header: sorted (name, dtype, shape); no tensor data is read."""
    tensors = ckpt.tensors
    lines = [
        f"{name}\0{tensors[name].dtype}\0{','.join(map(str, tensors[name].shape))}\n"
        for name in sorted(tensors)
    ]
    return "hdr1:" + hashlib.blake2b("".join(lines).encode(), digest_size=16).hexdigest()


@dataclass
class Plan:
    """Rules plus one `Entry` per target tensor. See docs/mapping.md for the YAML layout."""

    sources: list[SourceRef]
    target: SourceRef
    rules: list[Rule] = field(default_factory=list)
    entries: dict[str, Entry] = field(default_factory=dict)
    unused: list[Unused] = field(default_factory=list)
    _context: Context | None = field(default=None, repr=False, compare=False)

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
        return [n for n, e in self.entries.items() if is_partial(e)]

    def pending(self) -> list[str]:
        """Target rows `is_pending` flags: apply refuses them without accept_proposed."""
        return [n for n, e in self.entries.items() if is_pending(e)]

    def problems(self) -> list[str]:
        """Target rows `is_problem` flags: the rows to review."""
        return [n for n, e in self.entries.items() if is_problem(e)]

    def group_of(self, names: Iterable[str]) -> list[str]:
        """`names` plus the members of their stateful groups (see STATEFUL_GROUPS) in the plan,
        in plan order: what approve/reject carry along."""
        wanted = set(names)
        for n in list(wanted):
            wanted.update(group_members(n, self.entries))
        return [n for n in self.entries if n in wanted] + sorted(wanted - set(self.entries))

    def flagged(self, flag: str) -> list[Entry]:
        return [e for e in self.entries.values() if flag in e.flags]

    def under(self, prefix: str) -> list[str]:
        """Target names in the subtree `prefix` (a dotted module path), for subtree approval."""
        dotted = prefix.rstrip(".") + "."
        return [n for n in self.entries if n == prefix or n.startswith(dotted)]

    def used_sources(self) -> set[tuple[str, str]]:
        return {s for e in self.entries.values() if e.effective == "copy" for s in e.sources}

    def summary(self) -> dict[str, ModuleSummary]:
        """Per-module counts; `ModuleSummary.line()` gives `encoder 100% (16/16 layers)`."""
        root = nm.common_root(list(self.entries))
        out: dict[str, ModuleSummary] = {}
        for name, e in self.entries.items():
            mod = nm.module_of(name, root)
            s = out.setdefault(mod, ModuleSummary(mod))
            copied = e.effective == "copy"
            s.tensors += 1
            s.copied += copied
            s.kept += e.effective == "keep"
            s.dropped += e.effective == "drop"
            s.problems += is_problem(e)
            s.params += e.numel
            s.params_copied += e.numel if copied else 0
        for mod, layers in _largest_stacks(self.entries, root).items():
            out[mod].layers = len(layers)
            out[mod].layers_copied = sum(
                all(self.entries[n].effective == "copy" for n in members)
                for members in layers.values()
            )
        return out

    # -- edits (each returns an Edit that undo() reverts) ------------------------------------------
    def _replace(self, action: str, new: Iterable[Entry]) -> Edit:
        changes = []
        for e in new:
            old = self.entries.get(e.target)
            if old is None:
                raise PlanError(f"plan has no target tensor {e.target!r}")
            if old != e:
                changes.append((e.target, old, e))
                self.entries[e.target] = e
        return Edit(action, tuple(changes))

    def _entries(self, names: Iterable[str]) -> list[Entry]:
        out = []
        for n in names:
            if n not in self.entries:
                raise PlanError(f"plan has no target tensor {n!r}")
            out.append(self.entries[n])
        return out

    def _group_entries(self, names: Iterable[str]) -> list[Entry]:
        return self._entries(self.group_of(names))

    def approve(self, names: Iterable[str]) -> Edit:
        """Mark rows approved (apply writes approved and proposed rows; see docs). The members
        of a row's stateful group (a norm's buffers, a weight-norm pair) are approved with it."""
        return self._replace(
            "approve",
            (dataclasses.replace(e, status="approved") for e in self._group_entries(names)),
        )

    def reject(self, names: Iterable[str]) -> Edit:
        """Mark rows rejected: apply keeps the target's own tensor for them. The members of a
        row's stateful group are rejected with it, so a module never half moves."""
        return self._replace(
            "reject",
            (dataclasses.replace(e, status="rejected") for e in self._group_entries(names)),
        )

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
        new = ctx.user_entry(e, label, name, tuple(transform))
        edit = self._replace("set_source", [new])
        self._refresh_unused(ctx)
        return edit

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
        for target, old, _new in edit.changes:
            self.entries[target] = old
        if edit.rules is not None:
            self.rules = list(edit.rules[0])
        if edit.unused is not None:
            self.unused = list(edit.unused[0])
        elif edit.changes and self._context is not None:
            self._refresh_unused(self._context)
        return Edit(
            f"undo {edit.action}",
            tuple((t, new, old) for t, old, new in edit.changes),
            None if edit.rules is None else (edit.rules[1], edit.rules[0]),
            None if edit.unused is None else (edit.unused[1], edit.unused[0]),
        )

    def _need_context(self, what: str) -> Context:
        if self._context is None:
            raise PlanError(f"{what} needs the checkpoints: call plan.bind(sources, target) first")
        return self._context

    def _refresh_unused(self, ctx: Context) -> None:
        self.unused = ctx.unused_for(self.entries, self.rules)

    # -- checkpoints -------------------------------------------------------------------------------
    def bind(self, sources: Any, target: Any, *, force: bool = False, digests: Any = None) -> Plan:
        """Attach the checkpoints (after check_fingerprints) so edits can look at headers."""
        from .propose import Context, open_inputs

        srcs, tgt = open_inputs(
            sources,
            target,
            labels=[s.label for s in self.sources],
            prefixes=[s.prefix for s in self.sources],
        )
        self.check_fingerprints([c for _, c in srcs], tgt, force=force)
        self._context = Context(srcs, tgt, digests)
        return self

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
        if len(self.sources) != 1:
            raise PlanError(f"a plan with {len(self.sources)} sources cannot be inverted")
        src = self.sources[0]
        new_target = dataclasses.replace(src, prefix="")
        new_source = dataclasses.replace(self.target, prefix="")
        try:
            rules = invert_rules(self.rules)
        except PlanError:
            rules = []
        entries: dict[str, Entry] = {}
        for e in self.entries.values():
            if e.effective == "copy":
                for inv in _invert_entry(e, new_source.label):
                    _add_inverse(entries, inv)
        for group in _split_groups(self.entries.values()):
            _add_inverse(entries, _invert_split_group(group, new_source.label))
        unused_names = {(u.label, u.name): u for u in self.unused}
        for (_, name), u in sorted(unused_names.items()):
            if name not in entries:
                entries[name] = Entry(
                    name,
                    "keep",
                    reason=f"not used by the forward plan ({u.reason})",
                    flags=frozenset({"no-source"}),
                )
        unused = [
            Unused(new_source.label, e.target, f"kept its own init in the forward plan: {e.reason}")
            for e in self.entries.values()
            if e.effective != "copy"
        ]
        return Plan([new_source], new_target, rules, dict(sorted(entries.items())), unused)

    # -- YAML --------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "version": PLAN_VERSION,
            "sources": [_ref_dict(s) for s in self.sources],
            "target": _ref_dict(self.target),
            "rules": [r.to_dict() for r in self.rules],
            "entries": {n: _entry_dict(e) for n, e in self.entries.items()},
            "unused": [[u.label, u.name, u.reason] for u in self.unused],
        }

    def to_yaml(self) -> str:
        return yaml.dump(
            self.to_dict(), Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100
        )

    @classmethod
    def from_dict(cls, data: Any, where: str = "plan") -> Plan:
        if not isinstance(data, dict):
            raise PlanError(f"{where}: a plan is a mapping with sources, target, rules, entries")
        version = data.get("version")
        if version != PLAN_VERSION:
            raise PlanError(f"{where}: version: expected {PLAN_VERSION}, got {version!r}")
        unknown = set(data) - {"version", "sources", "target", "rules", "entries", "unused"}
        if unknown:
            raise PlanError(f"{where}: unknown key {sorted(unknown, key=repr)[0]!r}")
        if not isinstance(data.get("sources"), list) or not data["sources"]:
            raise PlanError(f"{where}: sources: expected a non-empty list")
        sources = [_ref(s, f"{where}: sources[{i}]") for i, s in enumerate(data["sources"])]
        labels = [s.label for s in sources]
        if len(set(labels)) != len(labels):
            raise PlanError(f"{where}: sources: labels must be unique, got {labels}")
        target = _ref(data.get("target"), f"{where}: target")
        rules = rules_from_list(data.get("rules") or [], f"{where}: rules")
        raw_entries = data.get("entries") or {}
        if not isinstance(raw_entries, dict):
            raise PlanError(f"{where}: entries: expected a mapping target name -> entry")
        entries = {
            str(n): _entry(str(n), b, f"{where}: entries[{n!r}]", set(labels))
            for n, b in raw_entries.items()
        }
        unused = [
            _unused(u, f"{where}: unused[{i}]") for i, u in enumerate(data.get("unused") or [])
        ]
        return cls(sources, target, rules, entries, unused)

    @classmethod
    def from_yaml(cls, text: str, where: str = "plan") -> Plan:
        try:
            data = yamlload.load(text)
        except yaml.YAMLError as e:
            raise PlanError(f"{where}: not valid YAML: {e}") from None
        return cls.from_dict(data, where)

    def save(
        self, path: str | os.PathLike[str], inputs: Iterable[str | os.PathLike[str]] = ()
    ) -> None:
        """Write atomically (a temp file in the same folder, fsync, rename over `path`). Refused
        when `path` is one of `inputs` or of the plan's own checkpoints (a link to one too).
        Failures raise PlanError, the error callers of plan I/O handle (the TUI's save)."""
        own = [ref.path for ref in (*self.sources, self.target) if ref.path]
        try:
            text = self._rebased(os.curdir, os.path.dirname(path) or os.curdir).to_yaml()
            write_text_atomic(path, text, [*inputs, *own])
        except WriteError as e:
            raise PlanError(str(e)) from None

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Plan:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as e:
            raise PlanError(f"{path}: cannot read plan: {e.strerror}") from None
        except UnicodeDecodeError as e:
            raise PlanError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
        folder = os.path.dirname(path) or os.curdir
        return cls.from_yaml(text, str(path))._rebased(folder, os.curdir)

    def _rebased(self, old: str | os.PathLike[str], new: str | os.PathLike[str]) -> Plan:
        """This plan with relative checkpoint paths meant from folder `old` rewritten to be meant
        from folder `new` (absolute paths stay). In memory a relative path is meant from the
        current folder; in a plan file from the file's own folder (`load`, `save`)."""
        if os.path.realpath(old) == os.path.realpath(new):
            return self
        refs = [_rebase_ref(r, old, new) for r in (*self.sources, self.target)]
        return dataclasses.replace(self, sources=refs[:-1], target=refs[-1])


def _rebase_ref(ref: SourceRef, old: str | os.PathLike[str], new: str | os.PathLike[str]
                ) -> SourceRef:
    if not ref.path or os.path.isabs(ref.path):
        return ref
    path = os.path.relpath(os.path.join(old, ref.path), new)
    return dataclasses.replace(ref, path=path)


# -- stateful groups -------------------------------------------------------------------------------
def _split_group_name(name: str) -> tuple[str, int, bool] | None:
    """(module path, group index, is anchor) for a name that ends in a STATEFUL_GROUPS suffix."""
    for gi, (anchors, followers) in enumerate(STATEFUL_GROUPS):
        for suffixes, anchor in ((anchors, True), (followers, False)):
            for suffix in suffixes:
                if name.endswith("." + suffix):
                    return name[: -len(suffix) - 1], gi, anchor
    return None


def group_members(name: str, entries: Mapping[str, Any]) -> list[str]:
    """The other members in `entries` of `name`'s stateful group ([] when it has none)."""
    found = _split_group_name(name)
    if found is None:
        return []
    return [m for m in _members(found[0], found[1], entries) if m != name]


def _members(module: str, gi: int, entries: Mapping[str, Any]) -> list[str]:
    """Group `gi`'s tensors of `module` in `entries`; [] when the group has followers and the
    module holds none of them (a Linear's weight and bias are not a group, a BatchNorm's are)."""
    anchors, followers = STATEFUL_GROUPS[gi]
    if followers and not any(f"{module}.{s}" in entries for s in followers):
        return []
    return [m for s in (*anchors, *followers) if (m := f"{module}.{s}") in entries]


def follow_groups(entries: dict[str, Entry]) -> dict[str, Entry]:
    """Make every stateful group move as a unit: when an anchor of a group keeps its init, the
    members that would be copied keep theirs too, reason `follows <anchor>`, with the anchor's
    declaring flags (so a follower of a partial is a partial). Rows the user decided are left."""
    out = dict(entries)
    seen: set[tuple[str, int]] = set()
    for name in entries:
        found = _split_group_name(name)
        if found is None or found[:2] in seen:
            continue
        seen.add(found[:2])
        members = _members(found[0], found[1], entries)
        leads = [m for m in members if _split_group_name(m)[2]] or members  # type: ignore[index]
        lead = next((m for m in leads if entries[m].effective == "keep"), None)
        if lead is None:
            continue
        for m in members:
            if entries[m].effective == "copy" and entries[m].status == "proposed":
                out[m] = _follower(entries[m], entries[lead])
    return out


def _follower(e: Entry, lead: Entry) -> Entry:
    return dataclasses.replace(
        e,
        decision="keep",
        sources=(),
        transform=(),
        source_shapes=(),
        source_dtypes=(),
        reason=f"follows {lead.target}" + (f" ({lead.reason})" if lead.reason else ""),
        evidence=(*e.evidence, Evidence("group", f"moves with {lead.target}")),
        flags=lead.flags & (DECLARED_KEEP_FLAGS | {"shape-mismatch"}),
        candidates=tuple(Candidate(lb, n, e.confidence, "would copy alone") for lb, n in e.sources),
    )


# -- helpers: summary ------------------------------------------------------------------------------
def _largest_stacks(names: Iterable[str], root: tuple[str, ...]) -> dict[str, dict[int, list[str]]]:
    """Module -> its largest layer stack (index -> member names); the first one on a tie."""
    out: dict[str, dict[int, list[str]]] = {}
    for path, layers in nm.layer_stacks(names).items():
        comps = path.split(".")
        if len(comps) <= len(root):
            continue  # each layer is a module of its own: no module holds the stack
        mod = ".".join(comps[: len(root) + 1])
        if mod not in out or len(layers) > len(out[mod]):
            out[mod] = layers
    return out


def _differs(a: Entry, b: Entry) -> bool:
    return (a.decision, a.sources, a.transform, a.flags, a.reason) != (
        b.decision,
        b.sources,
        b.transform,
        b.flags,
        b.reason,
    )


# -- helpers: inversion ----------------------------------------------------------------------------
def _invert_entry(e: Entry, label: str) -> list[Entry]:
    if e.transform and isinstance(e.transform[0], Split):
        return []  # handled per group
    if len(e.sources) == 1:
        ((_, name),) = e.sources
        steps = chain_inverse(e.transform, list(e.source_shapes), list(e.source_dtypes))
        return [
            Entry(
                name,
                "copy",
                ((label, e.target),),
                tuple(steps),
                e.status,
                f"inverse of: {e.reason}",
                (),
                e.confidence,
                e.flags - {"user"},
                (),
                e.source_shapes[0],
                e.source_dtypes[0],
                (e.shape,),
                (e.dtype,),
            )
        ]
    if not e.transform or not isinstance(e.transform[0], Concat):
        raise PlanError(
            f"entries[{e.target!r}]: {len(e.sources)} sources without a concat cannot be inverted"
        )
    rest = chain_inverse(
        e.transform[1:], [e.transform[0].out_shape(list(e.source_shapes))], [e.source_dtypes[0]]
    )
    split = e.transform[0].inverse(list(e.source_shapes), list(e.source_dtypes))
    assert isinstance(split, Split)
    out = []
    for i, ((_, name), shape, dtype) in enumerate(
        zip(e.sources, e.source_shapes, e.source_dtypes, strict=True)
    ):
        part_steps = (*rest, dataclasses.replace(split, index=i))
        out.append(
            Entry(
                name,
                "copy",
                ((label, e.target),),
                part_steps,
                e.status,
                f"inverse of: {e.reason}",
                (),
                e.confidence,
                e.flags - {"user"},
                (),
                shape,
                dtype,
                (e.shape,),
                (e.dtype,),
            )
        )
    return out


def _split_groups(entries: Iterable[Entry]) -> list[list[Entry]]:
    groups: dict[tuple[str, str], list[Entry]] = {}
    for e in entries:
        if e.effective == "copy" and e.transform and isinstance(e.transform[0], Split):
            groups.setdefault(e.sources[0], []).append(e)
    return list(groups.values())


def _invert_split_group(group: list[Entry], label: str) -> Entry:
    first = group[0]
    split = first.transform[0]
    assert isinstance(split, Split)
    by_index = {e.transform[0].index: e for e in group if isinstance(e.transform[0], Split)}
    if sorted(by_index) != list(range(len(split.sizes))) or any(
        len(e.transform) != 1 for e in group
    ):
        raise PlanError(
            f"entries[{first.target!r}]: the parts of split source {first.sources[0][1]!r} "
            "do not cover it exactly once: not invertible"
        )
    parts = [by_index[i] for i in range(len(split.sizes))]
    return Entry(
        first.sources[0][1],
        "copy",
        tuple((label, p.target) for p in parts),
        (Concat(split.axis, split.sizes),),
        first.status,
        f"inverse of: {first.reason}",
        (),
        min(p.confidence for p in parts),
        frozenset(),
        (),
        first.source_shapes[0],
        first.source_dtypes[0],
        tuple(p.shape for p in parts),
        tuple(p.dtype for p in parts),
    )


def _add_inverse(entries: dict[str, Entry], e: Entry) -> None:
    if e.target in entries:
        raise PlanError(
            f"source tensor {e.target!r} feeds several targets: the plan cannot be inverted"
        )
    entries[e.target] = e


# -- helpers: YAML ---------------------------------------------------------------------------------
# libyaml's emitter when PyYAML has it: 5-8x faster on plans of 10k entries (reading: yamlload).
_BaseDumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


class _Dumper(_BaseDumper):  # type: ignore[misc,valid-type]
    """Short lists of scalars in flow style; no anchors/aliases (output is stable text)."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _represent_list(dumper: yaml.SafeDumper, data: list[Any]) -> yaml.Node:
    flow = all(
        isinstance(v, (str, int, float, bool, type(None)))
        or (isinstance(v, list) and all(not isinstance(x, (list, dict)) for x in v))
        for v in data
    )
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


def _represent_dict(dumper: yaml.SafeDumper, data: dict[str, Any]) -> yaml.Node:
    flow = len(data) <= 4 and all(
        isinstance(v, (str, int, float, bool, type(None))) for v in data.values()
    )
    return dumper.represent_mapping("tag:yaml.org,2002:map", data.items(), flow_style=flow)


_Dumper.add_representer(list, _represent_list)
_Dumper.add_representer(dict, _represent_dict)


def _ref_dict(r: SourceRef) -> dict[str, Any]:
    out: dict[str, Any] = {
        "label": r.label,
        "path": r.path,
        "prefix": r.prefix,
        "root": r.root,
        "fingerprint": r.fingerprint,
    }
    if r.content is not None:
        out["content"] = r.content
    return out


def _entry_dict(e: Entry) -> dict[str, Any]:
    out: dict[str, Any] = {
        "decision": e.decision,
        "status": e.status,
        "reason": e.reason,
        "confidence": e.confidence,
        "shape": list(e.shape),
        "dtype": e.dtype,
    }
    if e.sources:
        out["sources"] = [
            [label, name, list(shape), dtype]
            for (label, name), shape, dtype in zip(
                e.sources, e.source_shapes, e.source_dtypes, strict=True
            )
        ]
    if e.transform:
        out["transform"] = [t.to_dict() for t in e.transform]
    if e.flags:
        out["flags"] = sorted(e.flags)
    if e.evidence:
        out["evidence"] = [[ev.kind, ev.detail, ev.score] for ev in e.evidence]
    if e.candidates:
        out["candidates"] = [[c.label, c.name, c.score, c.why] for c in e.candidates]
    return out


def _ref(data: Any, where: str) -> SourceRef:
    if not isinstance(data, dict) or "label" not in data:
        raise PlanError(f"{where}: expected a mapping with label, path, prefix, root, fingerprint")
    unknown = set(data) - {"label", "path", "prefix", "root", "fingerprint", "content"}
    if unknown:
        raise PlanError(f"{where}: unknown key {sorted(unknown, key=repr)[0]!r}")
    for key in ("label", "prefix", "root", "fingerprint"):
        if key in data and not isinstance(data[key], str):
            raise PlanError(f"{where}.{key}: expected a string, got {data[key]!r}")
    path = data.get("path")
    if path is not None and not isinstance(path, str):
        raise PlanError(f"{where}.path: expected a string or null, got {path!r}")
    return SourceRef(
        data["label"],
        path,
        data.get("prefix", ""),
        data.get("fingerprint", ""),
        data.get("root", ""),
        data.get("content"),
    )


_ENTRY_KEYS = {
    "decision",
    "status",
    "reason",
    "confidence",
    "shape",
    "dtype",
    "sources",
    "transform",
    "flags",
    "evidence",
    "candidates",
}


def _entry(name: str, body: Any, where: str, labels: set[str]) -> Entry:
    if not isinstance(body, dict):
        raise PlanError(f"{where}: expected a mapping with decision, status, reason")
    unknown = set(body) - _ENTRY_KEYS
    if unknown:
        raise PlanError(f"{where}: unknown key {sorted(unknown, key=repr)[0]!r}")
    decision, status = body.get("decision"), body.get("status", "proposed")
    if decision not in DECISIONS:
        raise PlanError(
            f"{where}.decision: must be one of {', '.join(DECISIONS)}, got {decision!r}"
        )
    if status not in STATUSES:
        raise PlanError(f"{where}.status: must be one of {', '.join(STATUSES)}, got {status!r}")
    sources, shapes, dts = [], [], []
    for i, s in enumerate(body.get("sources") or []):
        w = f"{where}.sources[{i}]"
        if not (
            isinstance(s, list)
            and len(s) == 4
            and all(isinstance(x, str) for x in (s[0], s[1], s[3]))
        ):
            raise PlanError(f"{w}: expected [label, name, shape, dtype], got {s!r}")
        if s[0] not in labels:
            raise PlanError(f"{w}: unknown source label {s[0]!r} (sources: {sorted(labels)})")
        sources.append((s[0], s[1]))
        shapes.append(_shape(s[2], w))
        dts.append(s[3])
    if decision == "copy" and not sources:
        raise PlanError(f"{where}: decision copy needs at least one source")
    if decision != "copy" and sources:
        raise PlanError(f"{where}: decision {decision} takes no sources")
    transform = tuple(
        transform_from_dict(t, f"{where}.transform[{i}]")
        for i, t in enumerate(body.get("transform") or [])
    )
    flags = body.get("flags") or []
    if not isinstance(flags, list) or any(f not in FLAGS for f in flags):
        raise PlanError(f"{where}.flags: expected a list of {', '.join(FLAGS)}, got {flags!r}")
    confidence = body.get("confidence", 0.0)
    if (
        not isinstance(confidence, (int, float))
        or isinstance(confidence, bool)
        or not 0 <= confidence <= 1
    ):
        raise PlanError(f"{where}.confidence: expected a number in [0, 1], got {confidence!r}")
    reason = body.get("reason", "")
    if not isinstance(reason, str):
        raise PlanError(f"{where}.reason: expected a string")
    dtype = body.get("dtype", "")
    if not isinstance(dtype, str):
        raise PlanError(f"{where}.dtype: expected a string")
    evidence = tuple(
        Evidence(*_row(x, 3, f"{where}.evidence[{i}]"))
        for i, x in enumerate(body.get("evidence") or [])
    )
    candidates = tuple(
        Candidate(*_row(x, 4, f"{where}.candidates[{i}]"))
        for i, x in enumerate(body.get("candidates") or [])
    )
    return Entry(
        name,
        decision,
        tuple(sources),
        transform,
        status,
        reason,
        evidence,
        confidence,
        frozenset(flags),
        candidates,
        _shape(body.get("shape", []), f"{where}.shape"),
        dtype,
        tuple(shapes),
        tuple(dts),
    )


def _shape(value: Any, where: str) -> Shape:
    if not isinstance(value, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in value
    ):
        raise PlanError(f"{where}: expected a shape (list of non-negative integers), got {value!r}")
    return tuple(value)


def _row(value: Any, n: int, where: str) -> list[Any]:
    if not isinstance(value, list) or len(value) != n:
        raise PlanError(f"{where}: expected a list of {n} items, got {value!r}")
    return value


def _unused(value: Any, where: str) -> Unused:
    row = _row(value, 3, where)
    if not all(isinstance(x, str) for x in row):
        raise PlanError(f"{where}: expected [label, name, reason] strings")
    return Unused(*row)
