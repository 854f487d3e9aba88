"""Header: what goes where, the transfer summary per module, and the architecture comparison."""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.widgets import Static

from ...mapping.arch import SEE_FLAGGED, has_flagged_problem
from ...mapping.entries import fold_summaries
from ...tree import fold_names
from ..state import HeaderView, ReviewState
from .marks import TARGET_MARKS


@dataclass(frozen=True)
class Names:
    """Files as the header shows them: by name, never by temp path."""

    sources: str
    target: str
    output: str


def summary_text(state: ReviewState | HeaderView, names: Names, arch: list[str]) -> Text:
    counts = state.counts()
    out = Text()
    out.append(names.sources, style="bold")
    out.append(" → ")
    out.append(names.target, style="bold")
    out.append("  ⇒ ", style="dim")
    out.append(names.output)
    out.append("\n")
    for key, label in (("approved", "approved"), ("proposed", "pending"), ("rejected", "rejected")):
        m = TARGET_MARKS[key]
        n = counts["pending" if key == "proposed" else key]
        out.append(f"{m.symbol} {n} {label}  ", style=m.style)
    out.append(f"{counts['problems']} problems", style="bold red" if counts["problems"] else "dim")
    if state.dirty:
        out.append("  [unsaved]", style="bold yellow")
    if state.filter.active:
        out.append(f"  filter: {state.filter.describe()}", style="bold cyan")
    partial = state.partials()
    if partial:
        shown = fold_names(partial)
        listed = ", ".join(shown[:2]) + (f", … ({len(shown)} groups)" if len(shown) > 2 else "")
        out.append(f"\n⚠ partial: {len(partial)} keep init with no declared reason: {listed}",
                   style="bold red")
    for detail in state.partial_modules():
        out.append(f"\n⚠ {detail}", style="bold red")
    out.append("\n")
    out.append("transfer: " + " · ".join(fold_summaries(state.summary().values())))
    for line in standing(state, arch):
        out.append("\n")
        out.append(line, style="yellow")
    return out


def standing(state: ReviewState | HeaderView, arch_lines: list[str]) -> list[str]:
    """The architecture lines (computed when the plan opened) that still hold: a stack's pointer
    to its rows flagged shape-mismatch goes once every one of them is decided."""
    out = []
    for line in arch_lines:
        if line.endswith(SEE_FLAGGED):
            path = line.split(": ", 1)[0]
            if not has_flagged_problem(state.plan.entries[n] for n in state.plan.under(path)):
                continue
        out.append(line)
    return out


class SummaryBar(Static):
    def show(self, text: Text) -> None:
        self.update(text)
