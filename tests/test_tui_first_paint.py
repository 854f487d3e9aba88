"""ckpt-tui paints the trees from the headers alone, before the plan exists (issue 16): the
proposal runs on in its worker while the user browses, and the keys that edit wait for it."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from test_tui_pilot import SIZE, make_app, sync
from tui_waits import settled, until

from inspector.tui import jobs
from inspector.tui.widgets.summary import SummaryBar


@sync
async def test_trees_paint_from_the_headers_while_the_plan_is_proposed(
    files: tuple[Path, Path], monkeypatch: Any
) -> None:
    release = threading.Event()
    real_plan_for = jobs.plan_for

    def slow_plan_for(config: Any, opened: Any) -> Any:
        assert release.wait(60), "the test never let the proposal finish"
        return real_plan_for(config, opened)

    monkeypatch.setattr(jobs, "plan_for", slow_plan_for)
    app = make_app(files)
    async with app.run_test(size=SIZE) as pilot:
        review = app.review
        await until(pilot, lambda: len(review.target_tree.root.children) > 0, "the first paint")
        assert review.state is None  # no plan yet: the trees come from the headers
        assert len(review.source_tree.root.children) > 0
        header = str(review.query_one(SummaryBar).render())
        assert "then proposing a mapping" in header, header
        assert "proposing a mapping…" in str(review.target_tree.border_subtitle)
        await pilot.press("down", "enter", "a")  # browse; approving waits for the plan
        assert review.state is None
        release.set()
        await settled(pilot)
        assert review.state is not None
        assert "proposing" not in str(review.query_one(SummaryBar).render())
        assert not review.target_tree.border_subtitle
        assert review.state.plan.entries


@sync
async def test_the_header_of_a_large_plan_is_drawn_by_a_worker(
    files: tuple[Path, Path], monkeypatch: Any
) -> None:
    from inspector.tui.screens import review as review_screen

    monkeypatch.setattr(review_screen, "HEADER_IN_WORKER", 0)  # every plan counts as large
    app = make_app(files)
    async with app.run_test(size=SIZE) as pilot:
        await settled(pilot)
        review = app.review
        assert review.state is not None
        before = review.state.counts()["approved"]
        header = str(review.query_one(SummaryBar).render())
        assert f"{before} approved" in header, header
        review.target_tree.move_cursor(review.target_tree.root.children[0])
        review.target_tree.focus()
        await pilot.press("a")
        await settled(pilot)
        after = review.state.counts()["approved"]
        assert after > before
        assert f"{after} approved" in str(review.query_one(SummaryBar).render())
