"""ckpt-tui's value plots (issue 15 part 4): a tensor's histograms, target and source side by
side, and a module row's per-layer change chart, computed in workers; the figures are checked
against the library's own (compare.tensor_stats, compare.compare_tensors), the pixels by the
SVG snapshots in test_tui_snapshots.py."""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from tui_waits import settled, until

import inspector
from inspector.compare import compare_tensors, tensor_stats
from inspector.plotting import change_rows
from inspector.tui import charts, jobs
from inspector.tui.app import ReviewApp, create_app
from inspector.tui.widgets.plots import ValuePlots

TALL, SMALL = (160, 48), (80, 24)
LEAF = "encoder.layers.0.self_attn.linear_q.weight"


def sync(fn: Callable[..., Awaitable[None]]) -> Callable[..., None]:
    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(fn(*args, **kwargs))

    return run


def make_app(files: tuple[Path, Path]) -> ReviewApp:
    return create_app([str(files[0])], str(files[1]))


async def on_module(app: ReviewApp, pilot: Any, label: str) -> None:
    tree = app.review.target_tree
    node = next(n for n in tree.root.children if n.data and n.data.label == label)
    tree.move_cursor(node)
    tree.focus()
    await pilot.pause()


async def on_leaf(app: ReviewApp, pilot: Any, name: str) -> None:
    assert app.review.target_tree.reveal(name)
    app.review.target_tree.focus()
    await pilot.pause()


@sync
async def test_leaf_shows_both_sides_histograms_of_the_core_stats(
    files: tuple[Path, Path],
) -> None:
    app = make_app(files)
    async with app.run_test(size=TALL) as pilot:
        await settled(pilot)
        await on_leaf(app, pilot, LEAF)
        await settled(pilot)
        view = app.review.plots_view
        assert [h.title for h in view.histograms] == ["target", "source (char.pt)"]
        src, tgt = inspector.open(files[0]), inspector.open(files[1])
        expected_t = tensor_stats(tgt, LEAF, bins=jobs.HIST_BINS)
        expected_s = tensor_stats(src, LEAF, bins=jobs.HIST_BINS)
        assert list(view.histograms[0].stats.hist) == expected_t.hist
        assert list(view.histograms[0].stats.edges) == expected_t.hist_edges
        assert list(view.histograms[1].stats.hist) == expected_s.hist
        assert app.review.query_one(ValuePlots).display


@sync
async def test_module_row_charts_each_layer_as_the_library_compares_it(
    files: tuple[Path, Path],
) -> None:
    app = make_app(files)
    async with app.run_test(size=TALL) as pilot:
        await settled(pilot)
        await on_module(app, pilot, "encoder")
        await settled(pilot)
        rows = list(app.review.plots_view.changes)
        src, tgt = inspector.open(files[0]), inspector.open(files[1])
        figures = []
        for name, t in tgt.tensors.items():
            s = name
            if name.startswith("encoder.") and s in src.tensors and src[s].shape == t.shape:
                c = compare_tensors(src, s, tgt, name)
                figures.append((name, c.rel_l2, c.cosine))
        assert rows == change_rows(figures)
        layers = [r.layer for r in rows if r.module == "encoder.layers"]
        assert layers == ["0", "1", "2", "3"]
        # the shape mismatches (depthwise conv kernels) have no values to compare: left out
        assert all("depthwise_conv.weight" not in r.worst for r in rows)
        assert app.review.query_one(ValuePlots).display


@sync
async def test_plots_stay_hidden_on_a_small_screen_and_with_the_details(
    files: tuple[Path, Path],
) -> None:
    app = make_app(files)
    async with app.run_test(size=SMALL) as pilot:
        await settled(pilot)
        await on_leaf(app, pilot, LEAF)
        await settled(pilot)
        assert app.review.plots_view.histograms  # computed, but no room for it
        assert not app.review.query_one(ValuePlots).display
    app = make_app(files)
    async with app.run_test(size=TALL) as pilot:
        await settled(pilot)
        await on_leaf(app, pilot, LEAF)
        await settled(pilot)
        assert app.review.query_one(ValuePlots).display
        await pilot.press("d")
        assert not app.review.query_one(ValuePlots).display
        await pilot.press("d")
        assert app.review.query_one(ValuePlots).display


@sync
async def test_a_chart_is_walked_again_only_when_its_rows_copy_from_other_sources(
    files: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Approving a module's rows changes no pair: its chart is kept, not worked out again from
    every row (20k rows took 0.1 s a key); rejecting them empties it, undoing brings it back."""
    walks = []
    real = charts.module_pairs

    def counted(*args: Any) -> Any:
        walks.append(args[2].key)
        return real(*args)

    app = make_app(files)
    async with app.run_test(size=TALL) as pilot:
        await settled(pilot)
        await on_module(app, pilot, "encoder")
        await settled(pilot)
        charted = app.review.plots_view.changes
        assert len(charted) > 4
        monkeypatch.setattr(charts, "module_pairs", counted)
        await pilot.press("a")
        await settled(pilot)
        assert walks == []
        assert app.review.plots_view.changes == charted
        await pilot.press("r")
        await settled(pilot)
        assert walks == ["encoder"]
        assert app.review.plots_view.changes == ()
        await pilot.press("u")
        await settled(pilot)
        assert walks == ["encoder", "encoder"]
        assert app.review.plots_view.changes == charted
        before = app.review.target_tree.current_row
        assert before is not None
        await pilot.press("slash")  # a filter shows fewer rows of the same module: charted anew
        await pilot.press(*"*weight", "enter")
        await on_module(app, pilot, "encoder")
        await settled(pilot)
        after = app.review.target_tree.current_row
        assert after is not None
        assert after.prefixes == before.prefixes
        assert len(after.names) < len(before.names)
        assert walks == ["encoder"] * 3


@sync
async def test_module_chart_is_computed_off_the_ui_thread(
    files: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the chart's comparisons are held back, the app still answers keys; once they are
    let through, the chart appears."""
    release = threading.Event()
    started = threading.Event()
    real = jobs.pair_facts

    def held(*args: Any) -> Any:
        started.set()
        assert release.wait(60), "never released"
        return real(*args)

    app = make_app(files)
    async with app.run_test(size=TALL) as pilot:
        await settled(pilot)
        monkeypatch.setattr(jobs, "pair_facts", held)
        await on_module(app, pilot, "joint")  # nothing to compare: its vocabulary changed
        assert app.review.plots_view.changes == ()
        await on_module(app, pilot, "encoder")
        await until(pilot, started.is_set, "the chart's worker to start")
        assert app.review.plots_view.changes == ()
        await pilot.press("up")  # the UI thread is free: the cursor moves
        assert app.review.target_tree.current_row is not None
        assert app.review.target_tree.current_row.label == "preprocessor.featurizer"
        await on_module(app, pilot, "encoder")
        release.set()
        await settled(pilot)
        assert len(app.review.plots_view.changes) > 4


@sync
async def test_a_module_too_large_to_chart_says_so(
    files: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(charts, "CHART_BYTES", 1000)
    app = make_app(files)
    async with app.run_test(size=TALL) as pilot:
        await settled(pilot)
        await on_module(app, pilot, "encoder")
        await settled(pilot)
        assert app.review.plots_view.changes == ()
        text = str(app.review.query_one("#details").render())
        assert "too much to chart here (ckpt diff --plot draws it)" in text


@sync
async def test_a_module_with_too_many_tensors_is_not_walked(
    files: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(charts, "CHART_TENSORS", 100)
    app = make_app(files)
    async with app.run_test(size=TALL) as pilot:
        await settled(pilot)
        await on_module(app, pilot, "encoder")  # 168 tensors
        await settled(pilot)
        assert app.review.plots_view.changes == ()
        assert not app.review.query_one(ValuePlots).display
        text = str(app.review.query_one("#details").render())
        assert "168 tensors, too many to chart here" in text
        await on_module(app, pilot, "preprocessor.featurizer")  # 2 tensors: charted
        await settled(pilot)
        assert len(app.review.plots_view.changes) == 2
