"""Small messages that workers post to the app. Data only: no widgets, no checkpoints' bytes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from textual.message import Message


@dataclass(frozen=True)
class Stats:
    """Summary of a tensor's values (float view): what the details pane draws."""

    min: float
    max: float
    mean: float
    std: float
    hist: tuple[int, ...] = ()
    edges: tuple[float, ...] = ()  # len(hist) + 1 bin edges


@dataclass(frozen=True)
class TensorFacts:
    """What the details pane shows about one tensor once its bytes were read."""

    digest: str | None = None
    stats: Stats | None = None
    error: str | None = None


@dataclass(frozen=True)
class PairFacts:
    """A mapped source/target pair compared value by value."""

    identical: bool
    max_abs_diff: float | None = None
    cosine: float | None = None
    error: str | None = None
    rel_l2: float | None = None  # ||source - target|| / ||target||


@dataclass
class Opened(Message):
    """The checkpoints are open (headers read); the plan is on its way."""

    sources: list[tuple[str, Any]]  # (prefix, checkpoint)
    target: Any


@dataclass
class Loaded(Message):
    """The checkpoints are open and a plan exists (proposed or loaded)."""

    sources: list[Any]
    target: Any
    plan: Any
    notes: list[str] = field(default_factory=list)


@dataclass
class HeaderReady(Message):
    """The header drawn by a worker (a large plan), to show as it is: the `number`-th asked for
    (an older one arriving late is not shown)."""

    text: Any  # rich.text.Text
    number: int


@dataclass
class LoadFailed(Message):
    error: str


@dataclass
class FactsReady(Message):
    """Digest and stats for tensor `name` of `side` ("source" or "target")."""

    side: str
    name: str
    facts: TensorFacts


@dataclass
class PairReady(Message):
    source: str
    target: str
    facts: PairFacts


@dataclass
class PairsReady(Message):
    """Comparisons of the mapped pairs below a module row: (source, target, facts) each."""

    pairs: list[tuple[str, str, PairFacts]]


@dataclass
class WriteProgress(Message):
    done: int
    total: int


@dataclass
class WriteFinished(Message):
    """The output was written (and verified). `report` is the transfer report's text."""

    output: str
    report: str
    verified: bool
    verification: str


@dataclass
class WriteFailed(Message):
    error: str
    cancelled: bool = False


@dataclass
class RulesChanged(Message):
    """A worker re-proposed a snapshot of the plan with changed rules: `edit` (a mapping.plan
    Edit) is what the UI thread applies to the plan under review."""

    edit: Any


@dataclass
class RulesFailed(Message):
    error: str


@dataclass
class PlanSaved(Message):
    """A snapshot of the plan was written to `path`; `then_quit`: the app exits now."""

    path: str
    then_quit: bool = False


@dataclass
class SaveFailed(Message):
    error: str
