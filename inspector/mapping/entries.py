"""The plan's data: one `Entry` per target tensor and the small records around it.

`SourceRef` (a checkpoint a plan reads or writes, with its header `fingerprint`), `Evidence`,
`Candidate`, `Unused`, `Edit` (a reversible change) and `ModuleSummary`; the vocabularies
(`DECISIONS`, `STATUSES`, `FLAGS`) and the one definition of a partial / pending / problem row.

Names in `Entry.sources` are names as they appear in that source checkpoint (no prefix added);
`SourceRef.prefix` is what `propose` put in front of them before applying the rules.
"""

from __future__ import annotations

import hashlib
import re
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import KW_ONLY, dataclass, fields
from itertools import compress, repeat
from math import prod
from operator import attrgetter
from typing import TYPE_CHECKING, Protocol, TypeVar

from .._native import core
from ..humanize import floor_percent
from ..tree import fold_names
from .rules import Rule
from .transforms import Transform

if TYPE_CHECKING:
    from ..model import Checkpoint

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


def is_partial(e: Entry) -> bool:
    """The row keeps the target's init with no declared reason (a keep rule, a vocabulary
    change, the user's reject or choice): a transfer that silently misses it."""
    return e.effective == "keep" and e.status != "rejected" and not e.flags & DECLARED_KEEP_FLAGS


def is_pending(e: Entry) -> bool:
    """Still proposed and would change the output (a copy or a drop): what `apply` refuses
    without accept_proposed and the TUI counts "pending". A proposed keep changes nothing."""
    return e.status == "proposed" and e.effective in ("copy", "drop")


def is_proposed_copy(e: Entry) -> bool:
    """A copy nobody has decided yet: what makes a module listed as copied in part."""
    return e.status == "proposed" and e.decision == "copy"  # proposed: effective is decision


def is_ambiguous(e: Entry) -> bool:
    """Two or more sources fit equally well, none was chosen, and the user has not decided the
    row (still proposed): what scripted apply refuses unless told to skip it (keeps its init)."""
    return "ambiguous" in e.flags and e.status == "proposed"


def is_problem(e: Entry) -> bool:
    """The one definition of a "problem row" (`ckpt map`'s "to review", the TUI's problems
    filter and count): a partial (shape mismatch, no source, ambiguous sources, ...) nobody has
    decided yet. Approving it (it keeps its init, seen) or rejecting it decides it; an approved
    partial is still a partial (`apply --strict` refuses it), no longer a row to review."""
    return is_partial(e) and e.status == "proposed"


Shape = tuple[int, ...]
_T = TypeVar("_T")


@dataclass(frozen=True)
class SourceRef:
    """A checkpoint a plan reads from or writes to."""

    label: str  # short unique name used in entries
    path: str | None
    prefix: str = ""  # added to the source's names before the rules see them
    fingerprint: str = ""  # header digest, see fingerprint()
    root: str = ""  # weights sub-tree inside the container ("" = detected/top)
    content: str | None = None  # content digest of the whole checkpoint, when computed


@dataclass(frozen=True, slots=True)  # one or more per row: no __dict__ each
class Evidence:
    """One reason for (or against) a row's decision."""

    kind: str  # exact-name, rule, prefix, similar, shape, dtype, digest, vocab, group
    detail: str
    score: float = 0.0


@dataclass(frozen=True, slots=True)  # one or more per row: no __dict__ each
class Candidate:
    """A source tensor ranked for a target row."""

    label: str
    name: str
    score: float
    why: str


@dataclass(frozen=True, slots=True)  # one per target row: no __dict__ each (100k rows: 10 MB)
class Entry:
    """The decision for one target tensor."""

    target: str
    decision: str  # copy | keep | drop
    sources: tuple[tuple[str, str], ...] = ()  # (source label, name in that source)
    _: KW_ONLY  # the rest by keyword only
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


# Every field of Entry in declaration order: what the core's frozen_rows / frozen_replaced set.
ENTRY_FIELDS = tuple(f.name for f in fields(Entry))

# A row's state: all that is_partial, is_pending, is_problem, is_ambiguous and the TUI's marks
# read of it. Rows are many and states few: bulk counts ask each state once (`in_state`), and
# `row_state` maps over 100k rows without a Python call per row.
RowState = tuple[str, str, frozenset[str]]  # (status, decision, flags)
row_state: Callable[[Entry], RowState] = attrgetter("status", "decision", "flags")


def in_state(state: RowState) -> Entry:
    """A row in `state`, nothing else set: what the row predicates answer for every row in it
    (tests/test_plan.py holds them to it)."""
    status, decision, flags = state
    return Entry("", decision, status=status, flags=flags)


class ByState(dict[RowState, _T]):
    """`answer(row)` by row state, each state asked once: `by_state[row_state(e)]`, or over many
    rows `map(by_state.__getitem__, map(row_state, rows))`, runs no Python code per row."""

    def __init__(self, answer: Callable[[Entry], _T]):
        super().__init__()
        self.answer = answer

    def __missing__(self, state: RowState) -> _T:
        found = self[state] = self.answer(in_state(state))
        return found


def copied_sources(rows: Iterable[Entry]) -> list[tuple[tuple[str, str], ...]]:
    """The `sources` of the rows that copy (what makes a source tensor "used"), in order."""
    # `e.effective == "copy"` spelled out: twice as fast as the property over 100k rows
    return [e.sources for e in rows if e.decision == "copy" and e.status != "rejected"]


def uses_differ(before: Iterable[Entry], after: Iterable[Entry]) -> bool:
    """Whether rows changed from `before` to `after` (in the same order) change which source
    tensors are used: a status change other than to or from rejected never does."""
    return copied_sources(before) != copied_sources(after)


def names_where(entries: Mapping[str, Entry], predicate: Callable[[Entry], bool]) -> list[str]:
    """The names of the rows `predicate` (a row predicate above) holds for, in order."""
    asked = ByState(predicate)
    return list(compress(entries, map(asked.__getitem__, map(row_state, entries.values()))))


def with_status(rows: list[Entry], status: str) -> list[Entry]:
    """`[dataclasses.replace(e, status=status) for e in rows]`, made in the core: bulk approve
    and reject of 100k rows spent most of their time in a Python copy per row."""
    return core.frozen_replaced(Entry, ENTRY_FIELDS, rows, "status", status)


def alike(fields: Mapping[str, object], targets: list[str],
          sources: list[tuple[tuple[str, str], ...]]) -> list[Entry]:
    """Rows with `fields` but for their `targets` and `sources` (one each, in order), made in the
    core: the rows a proposal copies by one rename differ in nothing else (100k of them)."""
    varied = {"target": targets, "sources": sources}
    columns = [varied[f] if f in varied else (fields[f],) for f in ENTRY_FIELDS]
    return core.frozen_rows(Entry, ENTRY_FIELDS, columns, len(targets))


def built(cls: type[_T], fields: dict[str, object]) -> _T:
    """An instance of the frozen dataclass `cls` from `fields`, which names every field (in
    declaration order) with a value already checked: `__init__`'s per-field
    `object.__setattr__` run from C, without its Python frame. Set one by one, not by assigning
    `__dict__`: that would cost ~500 B more per instance (no shared-key attribute values)."""
    new = object.__new__(cls)
    deque(map(object.__setattr__, repeat(new), fields, fields.values()), 0)
    return new


@dataclass(frozen=True, slots=True)  # one or more per row: no __dict__ each
class Unused:
    """A source tensor no entry reads, and why."""

    label: str
    name: str
    reason: str


@dataclass(frozen=True)
class Edit:
    """A reversible change of rows: `targets[i]` went from `before[i]` to `after[i]`; the rules
    and the unused list before and after, when it changed them. Kept as three columns, not a
    tuple per row: a bulk edit (and its undo) of 100k rows made and unzipped 100k tuples."""

    action: str
    targets: tuple[str, ...]
    before: tuple[Entry, ...]
    after: tuple[Entry, ...]
    rules: tuple[tuple[Rule, ...], tuple[Rule, ...]] | None = None
    unused: tuple[tuple[Unused, ...], tuple[Unused, ...]] | None = None
    # False when the plan saw that the rows changed no source tensor's use (`uses_differ`: a
    # status change not to or from rejected): a UI need not mark the sources again
    uses_changed: bool = True
    # True when the rows changed status only (approve, reject, their undo): no row's decision,
    # sources or transform changed
    status_only: bool = False

    @property
    def changes(self) -> tuple[tuple[str, Entry, Entry], ...]:
        """(target, before, after) per changed row."""
        return tuple(zip(self.targets, self.before, self.after, strict=True))

    def reversed(self, action: str | None = None) -> Edit:
        """The edit that takes the plan back from this one's result to its start (named
        `action`, or as this one)."""
        return Edit(
            self.action if action is None else action,
            self.targets,
            self.after,
            self.before,
            None if self.rules is None else (self.rules[1], self.rules[0]),
            None if self.unused is None else (self.unused[1], self.unused[0]),
            self.uses_changed,
            self.status_only,
        )


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
    layers: int = 0  # layers of the module's layer stack (a named one first: plan._largest_stacks)
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


_DIGITS = re.compile(r"\d+")


def fold_summaries(summaries: Iterable[ModuleSummary]) -> list[str]:
    """`layers.{0..59} 100%`: modules whose names differ only in indices and whose lines are
    otherwise equal, as one line each, in first-seen order (a model whose top level is its
    layer stack has one module per layer)."""
    groups: dict[tuple[str, str], list[str]] = {}
    for s in summaries:
        rest = s.line()[len(s.module):]
        groups.setdefault((_DIGITS.sub("#", s.module), rest), []).append(s.module)
    return [", ".join(fold_names(mods)) + rest for (_, rest), mods in groups.items()]


def fingerprint(ckpt: Checkpoint) -> str:
    """Digest of a checkpoint's header: sorted (name, dtype, shape); no tensor data is read."""
    tensors = ckpt.tensors
    # a shape's text made once per distinct shape (100k tensors share a handful)
    shapes = {s: ",".join(map(str, s)) for s in {t.shape for t in tensors.values()}}
    names = sorted(tensors)  # names, not items: tuples compare several times slower
    lines = [f"{name}\0{t.dtype}\0{shapes[t.shape]}\n"
             for name, t in zip(names, map(tensors.__getitem__, names), strict=True)]
    return "hdr1:" + hashlib.blake2b("".join(lines).encode(), digest_size=16).hexdigest()


class PlanData(Protocol):
    """A plan's five parts, as `Plan` holds them: what plan I/O and inversion read."""

    sources: list[SourceRef]
    target: SourceRef
    rules: list[Rule]
    entries: dict[str, Entry]
    unused: list[Unused]


# A plan's parts in `Plan`'s field order: what plan I/O and inversion build (`Plan(*parts)`).
PlanParts = tuple[list[SourceRef], SourceRef, list[Rule], dict[str, Entry], list[Unused]]
