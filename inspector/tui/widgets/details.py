"""Details pane: the selected tensor(s), their values and, for a mapped pair, the comparison."""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.widgets import Static

from ... import humanize
from ...model import TensorInfo
from ..messages import PairFacts, Stats, TensorFacts

BARS = "▁▂▃▄▅▆▇█"


@dataclass(frozen=True)
class Side:
    """One tensor as the pane shows it: where it is from, its info, and facts once computed."""

    title: str  # "target" / "source (rnnt_char.pt)"
    name: str
    info: TensorInfo
    count: int = 1  # tensors the selected row stands for (folded layers)
    facts: TensorFacts | None = None


@dataclass(frozen=True)
class DetailsView:
    target: Side | None = None
    source: Side | None = None
    decision: Text | None = None
    pair: PairFacts | None = None
    module: Text | None = None  # a module row: its totals instead of a tensor


def sparkline(hist: tuple[int, ...]) -> str:
    top = max(hist, default=0)
    if top == 0:
        return ""
    last = len(BARS) - 1
    return "".join(BARS[min(last, (h * len(BARS)) // (top + 1))] if h else " " for h in hist)


def stats_text(s: Stats) -> str:
    values = f"min {s.min:.4g}  max {s.max:.4g}  mean {s.mean:.4g}  std {s.std:.4g}"
    return f"{values}  {sparkline(s.hist)}"


def pair_text(p: PairFacts) -> Text:
    if p.error:
        return Text(f"compare: {p.error}", style="red")
    if p.identical:
        return Text("values: identical (same digest)", style="green")
    parts = []
    if p.max_abs_diff is not None:
        parts.append(f"max |Δ| {p.max_abs_diff:.4g}")
    if p.cosine is not None:
        parts.append(f"cosine {p.cosine:.6f}")
    return Text("values differ: " + ", ".join(parts), style="yellow")


def side_text(side: Side) -> Text:
    t = side.info
    out = Text()
    out.append(f"{side.title}: ", style="bold")
    out.append(side.name)
    if side.count > 1:
        out.append(f"  (x{side.count} folded)", style="dim")
    out.append(f"\n  {t.dtype} {humanize.shape(t.shape)}  {humanize.nbytes(t.nbytes)}")
    facts = side.facts
    if facts is None:
        out.append("  digest …", style="dim")
        return out
    if facts.error:
        out.append(f"\n  {facts.error}", style="red")
        return out
    if facts.digest:
        out.append(f"  {facts.digest}", style="dim")
    if facts.stats is not None:
        out.append(f"\n  {stats_text(facts.stats)}")
    return out


class DetailsPane(Static):
    """Read-only text; the app builds a `DetailsView` and calls `show`."""

    def show(self, view: DetailsView) -> None:
        parts: list[Text] = []
        if view.module is not None:
            parts.append(view.module)
        if view.decision is not None or view.pair is not None:
            # The comparison shares the decision's line: it is what the decision rests on.
            line = view.decision.copy() if view.decision is not None else Text()
            if view.pair is not None:
                line.append(" · ")
                line.append_text(pair_text(view.pair))
            parts.append(line)
        if view.target is not None:
            parts.append(side_text(view.target))
        if view.source is not None:
            parts.append(side_text(view.source))
        self.update(Text("\n").join(parts) if parts else Text("Select a row.", style="dim"))
