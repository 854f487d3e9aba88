"""Value plots under the details (textual-plotext): a tensor's histogram, target and source side
by side on one value axis; for a module row, its per-layer relative change and cosine.

Draws what it is given (stats and rows computed in workers, inspector.plotting); reads nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

from textual.containers import Horizontal
from textual_plotext import PlotextPlot

from ...plotting import ChangeRow, bar_heights, binned
from ..messages import Stats

MIN_SCREEN_HEIGHT = 40  # rows the screen needs before the plots take their place
MAX_TICKS = 5  # named bars under a chart
TICK_CHARS = 10  # longest bar name under a chart
MAX_BARS = 100  # bars a chart draws at most: more layers are drawn in runs (plotting.binned)


@dataclass(frozen=True)
class Histogram:
    title: str  # "target" / "source (char.pt)"
    stats: Stats


@dataclass(frozen=True)
class PlotsView:
    """What the plots show: histograms of a tensor's sides, or a module's per-layer change."""

    histograms: tuple[Histogram, ...] = ()
    changes: tuple[ChangeRow, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.histograms and not self.changes


class ValuePlots(Horizontal):
    """Two plot panels; the screen calls `show` with a `PlotsView`. Each view gets new panels:
    a plotext figure cleared and drawn again kept some of its earlier ticks."""

    def show(self, view: PlotsView) -> None:
        left, right = PlotextPlot(classes="plot"), PlotextPlot(classes="plot")
        if view.changes:
            _changes(left, right, list(view.changes))
        elif view.histograms:
            _histograms([left, right], view.histograms)
        right.display = bool(view.changes) or len(view.histograms) > 1
        self.remove_children()
        self.mount(left, right)


def _histograms(plots: list[PlotextPlot], histograms: tuple[Histogram, ...]) -> None:
    """One histogram per side, on the same value range so that the two compare at a glance."""
    edges = [e for h in histograms for e in h.stats.edges]
    lo, hi = (min(edges), max(edges)) if edges else (0.0, 1.0)
    for plot, h in zip(plots, histograms, strict=False):
        e, counts = h.stats.edges, h.stats.hist
        if len(e) != len(counts) + 1:
            continue
        centers = [(a + b) / 2 for a, b in pairwise(e)]
        plt = plot.plt
        plt.bar(centers, list(counts), width=0.9)
        plt.title(f"{h.title}: values")
        if hi > lo:
            plt.xlim(lo, hi)
            ticks = [lo, (lo + hi) / 2, hi]
            plt.xticks(ticks, [f"{t:.3g}" for t in ticks])


def short_labels(rows: list[ChangeRow]) -> list[str]:
    """The rows' labels without the dotted prefix they all share (`layers.0`, `conv.0`)."""
    split = [r.label.split(".") for r in rows]
    common = 0
    while split and all(len(s) > common + 1 and s[common] == split[0][common] for s in split):
        common += 1
    return [".".join(s[common:]) for s in split]


def _fit(name: str, width: int) -> str:
    """`name` without the leading dotted parts it has no room for (the end names the tensor);
    a last part still too long is cut."""
    parts = name.split(".")
    while len(parts) > 1 and len(".".join(parts)) > width:
        parts.pop(0)
    short = ".".join(parts)
    return short if len(short) <= width else short[: width - 1] + "…"


def _changes(left: PlotextPlot, right: PlotextPlot, layers: list[ChangeRow]) -> None:
    rows = binned(layers, MAX_BARS)
    per = "layer" if len(rows) == len(layers) else f"{-(-len(layers) // len(rows))} layers"
    xs = list(range(1, len(rows) + 1))
    left.plt.bar(xs, bar_heights(rows), width=0.8)
    left.plt.title(f"||source - target|| / ||target|| per {per} (max)")
    right.plt.bar(xs, [r.cosine for r in rows], width=0.8)
    right.plt.title(f"cosine per {per} (min)")
    # A few short names, never overlapping on a panel of 60 columns or more: plotext drops an
    # overlapping label, picked in the order of a set (so it varied from one process to the next).
    labels = [_fit(name, TICK_CHARS) for name in short_labels(rows)]
    step = -(-len(rows) // MAX_TICKS)
    shown = list(range(0, len(rows), step))
    for p in (left, right):
        p.plt.xticks([xs[i] for i in shown], [labels[i] for i in shown])
