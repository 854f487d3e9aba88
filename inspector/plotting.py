"""Pictures of what changed: per-layer relative change and cosine, bars grouped by module.

Two halves. `change_rows` turns (tensor name, relative change, cosine) triples into rows of
module / layer / relative change / cosine (pure data, no drawing): `ckpt diff --plot` feeds it
the changed tensors of a diff, ckpt-tui the compared pairs below a module row, and any other
report with per-tensor comparisons can feed it the same way.
`write_plot` draws the rows with matplotlib (the optional `plot` extra, imported only here and
only when a picture is asked for) into an .svg, .png or self-contained .html file.

A layer is the part of a name up to its first numeric segment (`encoder.layers.3`); a module is
what comes before that number (`encoder.layers`), shown folded as the tree folds it
(`encoder.layers.{0..3}`). A tensor outside numbered layers is its own bar under its first
dotted part. A bar stands for the layer's most changed tensor: the largest relative change
||A-B|| / ||B|| and the lowest cosine among the layer's changed tensors.
"""

from __future__ import annotations

import html
import io
import math
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from .errors import PlotError
from .tree import format_ranges

SUFFIXES = (".svg", ".png", ".html")
EXTRA_HINT = "pip install 'ckpt-inspector[plot]'"
DPI = 100  # pixels per inch of a .png
_INDEX = re.compile(r"^\d+$")


@dataclass(frozen=True)
class ChangeRow:
    """One bar: a layer (or a tensor outside numbered layers) of one module."""

    module: str  # "encoder.layers" (numbered layers) or "decoder" (first part of the name)
    layer: str  # "3", or the rest of the tensor's name ("prediction.embed.weight")
    relchange: float  # the largest ||A-B|| / ||B|| among its changed tensors (may be inf)
    cosine: float  # the lowest cosine among them
    tensors: int  # changed tensors in the layer
    worst: str  # the tensor with the largest relative change

    @property
    def label(self) -> str:
        return f"{self.module}.{self.layer}" if self.module else self.layer


@lru_cache(maxsize=1 << 15)  # a chart of 20k tensors is made again after edits
def split_layer(name: str) -> tuple[str, str]:
    """(module, layer) of a tensor name: split at its first numeric segment, else after its
    first dotted part."""
    parts = name.split(".")
    for i, p in enumerate(parts):
        if i > 0 and _INDEX.match(p):
            return ".".join(parts[:i]), p
    if len(parts) == 1:
        return "", name
    return parts[0], ".".join(parts[1:])


def change_rows(changes: Iterable[tuple[str, float, float]]) -> list[ChangeRow]:
    """Rows of the changed tensors, given as (name, relative change, cosine), one row per
    layer, in order of first appearance."""
    table: dict[tuple[str, str], ChangeRow] = {}
    for name, rel, cos in changes:
        key = split_layer(name)
        old = table.get(key)
        if old is None:
            table[key] = ChangeRow(*key, rel, cos, 1, name)
            continue
        bigger = _more(rel, old.relchange)
        table[key] = ChangeRow(
            *key,
            rel if bigger else old.relchange,
            min(cos, old.cosine),
            old.tensors + 1,
            name if bigger else old.worst,
        )
    return list(table.values())


def binned(rows: list[ChangeRow], most: int) -> list[ChangeRow]:
    """`rows` in at most `most` runs of neighbours, each one row (`layer` names its first and
    last: `0-7`, or `98-dec.0` for a run into the next module) with the largest change and the
    lowest cosine (a NaN counting as both), their tensors and the worst tensor: a terminal
    panel has room for that many bars, and plotting thousands of layers took a frame of 0.15 s
    (a MoE model's 833 layers)."""
    size = -(-len(rows) // most) if most > 0 else len(rows)
    if size <= 1:
        return rows
    out = []
    for start in range(0, len(rows), size):
        run = rows[start:start + size]
        top = run[0]
        for r in run[1:]:
            if _more(r.relchange, top.relchange):
                top = r
        first, last = run[0], run[-1]
        end = last.layer if last.module == first.module else last.label  # `enc.98-dec.0`
        layer = first.layer if len(run) == 1 else f"{first.layer}-{end}"
        cosines = [r.cosine for r in run]
        cosine = math.nan if any(map(math.isnan, cosines)) else min(cosines)  # NaN shows
        out.append(ChangeRow(first.module, layer, top.relchange, cosine,
                             sum(r.tensors for r in run), top.worst))
    return out


def _more(x: float, y: float) -> bool:
    """x > y, a NaN counting as the largest (it must show, not hide)."""
    return (math.isnan(x) and not math.isnan(y)) or x > y


def diff_changes(result: Any) -> list[tuple[str, float, float]]:
    """(name, relative change, cosine) of a `DiffResult`'s changed tensors (B's name)."""
    from .diffing import CHANGED

    return [(r.name, r.comparison.rel_l2, r.comparison.cosine)
            for r in result.by_status(CHANGED) if r.comparison is not None]


def plot_result(result: Any, path: str | os.PathLike[str],
                inputs: Iterable[str | os.PathLike[str]]) -> tuple[Path, int]:
    """Draw a `DiffResult`'s changed tensors into `path`: (the file, its number of bars).
    `inputs`: the compared checkpoints (`PATH::ROOT` allowed), never written over."""
    from .reader import split_root

    rows = change_rows(diff_changes(result))
    paths = [p for p in (split_root(os.fspath(s))[0] for s in inputs) if os.path.exists(p)]
    out = write_plot(rows, path, title=f"A: {result.a}   B: {result.b}", inputs=paths)
    return out, len(rows)


def plot_change(before: str | os.PathLike[str], after: str | os.PathLike[str],
                path: str | os.PathLike[str]) -> tuple[Path, int]:
    """What a written checkpoint changed against another, by value (`ckpt apply --plot`, `ckpt
    average --plot`): the picture `ckpt diff BEFORE AFTER --plot PATH` draws."""
    from .diffing import diff

    return plot_result(diff(before, after, values=True), path, (before, after))


def module_titles(rows: list[ChangeRow]) -> dict[str, str]:
    """Each module's title: numbered layers folded (`encoder.layers.{0..3}`)."""
    layers: dict[str, list[str]] = {}
    for r in rows:
        layers.setdefault(r.module, []).append(r.layer)
    out = {}
    for module, names in layers.items():
        if all(_INDEX.match(n) for n in names):
            idx = [int(n) for n in names]
            inner = format_ranges(idx)
            out[module] = f"{module}.{{{inner}}}" if len(idx) > 1 else f"{module}.{inner}"
        else:
            out[module] = module or "(top)"
    return out


# -- drawing (matplotlib) -------------------------------------------------------------------------


def check_output(path: str | os.PathLike[str]) -> Path:
    """The plot's path, once its suffix is known and matplotlib imports (PlotError otherwise):
    called before any long work, so that a missing extra fails at once."""
    out = Path(path)
    if out.suffix.lower() not in SUFFIXES:
        raise PlotError(f"{out}: a plot is written as {', '.join(SUFFIXES)}, not "
                        f"{out.suffix or 'a file without suffix'}")
    if not out.parent.is_dir():
        raise PlotError(f"{out}: the destination folder {out.parent} does not exist")
    _pyplot()
    return out


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only: never a window
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise PlotError(f"plots need matplotlib, which is not installed ({e}); "
                        f"{EXTRA_HINT}") from None
    return plt


def write_plot(
    rows: list[ChangeRow],
    path: str | os.PathLike[str],
    *,
    title: str,
    inputs: Iterable[str | os.PathLike[str]] = (),
) -> Path:
    """Draw `rows` into `path` (.svg, .png or .html, by its suffix), written whole or not at all
    (inspector.io.atomic; an input named as `path` is refused). Bars carry the ids
    `relchange-K` and `cosine-K` (K: the row's index) in an SVG."""
    from .io.atomic import atomic_path

    out = check_output(path)
    fig = draw(rows, title)
    suffix = out.suffix.lower()
    try:
        with atomic_path(out, inputs) as tmp:
            if suffix == ".html":
                buf = io.StringIO()
                fig.savefig(buf, format="svg")
                tmp.write_text(_html(title, buf.getvalue(), rows), encoding="utf-8")
            else:
                fig.savefig(tmp, format=suffix[1:], dpi=DPI)
    finally:
        _pyplot().close(fig)
    return out


def draw(rows: list[ChangeRow], title: str) -> Any:
    """A matplotlib Figure: relative change above, cosine below, one bar per row, modules
    separated by a gap and named under the axis."""
    plt = _pyplot()
    xs, groups = _positions(rows)
    longest = max((len(r.layer) for r in rows), default=1)
    width, height = figure_size(rows)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(width, height), sharex=True, dpi=DPI)
    fig.suptitle(title, fontsize=10)
    rel = bar_heights(rows)
    bars = top.bar(xs, rel, color="tab:orange", width=0.8)
    for k, (bar, r) in enumerate(zip(bars, rows, strict=True)):
        bar.set_gid(f"relchange-{k}")
        if not math.isfinite(r.relchange):
            bar.set_hatch("//")
    top.set_ylabel("||A-B|| / ||B||")
    cos = [r.cosine if math.isfinite(r.cosine) else 0.0 for r in rows]
    lowest = min([*cos, 0.0])
    low = lowest - 0.05 * (1.0 - lowest)  # the lowest bar stays visible
    bars = bottom.bar(xs, [c - low for c in cos], bottom=low, color="tab:blue", width=0.8)
    for k, bar in enumerate(bars):
        bar.set_gid(f"cosine-{k}")
    bottom.set_ylim(low, 1.0)
    bottom.set_ylabel("cosine")
    bottom.set_xticks(xs, [r.layer for r in rows], rotation=90, fontsize=7)
    titles = module_titles(rows)
    for module, (first, last) in groups.items():
        top.annotate(titles[module], xy=(first - 0.4, 1.0), xycoords=("data", "axes fraction"),
                     xytext=(0, 3), textcoords="offset points", rotation=25, ha="left",
                     va="bottom", fontsize=8)
        for ax in (top, bottom):
            ax.axvspan(first - 0.5, last + 0.5, color="0.93", zorder=0)
    if not rows:
        top.text(0.5, 0.5, "no changed tensors", ha="center", va="center",
                 transform=top.transAxes)
    fig.subplots_adjust(bottom=(0.4 + 0.06 * longest) / height, top=1 - 1.6 / height)
    return fig


def figure_size(rows: list[ChangeRow]) -> tuple[float, float]:
    """(width, height) in inches: a quarter inch and more per bar, room for the longest name."""
    xs, _ = _positions(rows)
    longest = max((len(r.layer) for r in rows), default=1)
    return max(6.0, min(60.0, 2.0 + 0.28 * (xs[-1] + 1 if xs else 0))), 5.0 + 0.06 * longest


def _positions(rows: list[ChangeRow]) -> tuple[list[float], dict[str, tuple[float, float]]]:
    """x of each bar (a gap of one bar between modules) and each module's first and last x."""
    xs: list[float] = []
    groups: dict[str, tuple[float, float]] = {}
    x = -1.0
    previous: str | None = None
    for r in rows:
        x += 1.0 if r.module == previous else 2.0
        previous = r.module
        xs.append(x)
        first = groups.get(r.module, (x, x))[0]
        groups[r.module] = (first, x)
    return xs, groups


def bar_heights(rows: list[ChangeRow]) -> list[float]:
    """The rows' relative changes as bar heights: an infinite or NaN one (B all zero) is drawn
    as high as the highest finite one (1.0 when there is none), and hatched."""
    finite = [r.relchange for r in rows if math.isfinite(r.relchange)]
    cap = max(finite, default=1.0) or 1.0
    return [r.relchange if math.isfinite(r.relchange) else cap for r in rows]


def _html(title: str, svg: str, rows: list[ChangeRow]) -> str:
    """A self-contained page: the SVG inline (no file or network reference), then the table."""
    svg = svg[svg.index("<svg"):]  # the XML declaration and DOCTYPE do not belong inside HTML
    lines = "\n".join(
        f"<tr><td>{html.escape(r.label)}</td><td>{r.relchange:.4g}</td>"
        f"<td>{r.cosine:.6f}</td><td>{r.tensors}</td><td>{html.escape(r.worst)}</td></tr>"
        for r in rows
    )
    return (
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
        f"<title>{html.escape(title)}</title></head>\n<body>\n"
        f"<h1>{html.escape(title)}</h1>\n{svg}\n"
        "<table><thead><tr><th>layer</th><th>||A-B|| / ||B|| (max)</th><th>cosine (min)</th>"
        "<th>changed tensors</th><th>most changed</th></tr></thead>\n"
        f"<tbody>\n{lines}\n</tbody></table>\n</body></html>\n"
    )
