"""ckpt-tui's header follows the review: the "problems" count drops as flagged rows are decided,
and the note pointing at rows flagged shape-mismatch shows only while one is still to review."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import torch
from tui_waits import settled

from inspector.demo import RNNTConfig, random_state, rnnt_shapes
from inspector.mapping import propose
from inspector.mapping.arch import SEE_FLAGGED
from inspector.tui.app import ReviewApp, create_app
from inspector.tui.state import ReviewState
from inspector.tui.widgets.summary import standing

CONVS = [f"encoder.layers.{i}.conv.depthwise_conv.weight" for i in range(4)]


def _files(tmp_path: Path, kernel: int) -> tuple[Path, Path]:
    src = random_state(rnnt_shapes(RNNTConfig(28)), 1)
    tgt = random_state(rnnt_shapes(RNNTConfig(28, conv_kernel=kernel)), 2)
    for name, sd in (("char.pt", src), ("other.pt", tgt)):
        torch.save({k: torch.from_numpy(v) for k, v in sd.items()}, tmp_path / name)
    return tmp_path / "char.pt", tmp_path / "other.pt"


def _header(app: ReviewApp) -> str:
    return str(app.review.query_one("#summary").render())


def test_approving_flagged_rows_drops_the_problem_count(tmp_path: Path) -> None:
    """A kernel change: 4 conv rows flagged shape-mismatch. Approving them (they keep their init,
    seen) decides them: 0 problems; the output is still a partial transfer, and says so."""
    src, tgt = _files(tmp_path, kernel=9)

    async def run() -> None:
        app = create_app([str(src)], str(tgt))
        async with app.run_test(size=(100, 30)) as pilot:
            await settled(pilot)
            assert "8 problems" in _header(app)  # the convs' weights and biases
            for name in (CONVS[0], CONVS[0].replace(".weight", ".bias")):
                assert app.review.target_tree.reveal(name)
                app.review.target_tree.focus()
                await pilot.pause()
                await pilot.press("a")  # the folded row of the 4 layers
                await settled(pilot)
                remaining = "4 problems" if name == CONVS[0] else "0 problems"
                assert remaining in _header(app)
            assert "⚠ partial: 8 keep init with no declared reason" in _header(app)

    asyncio.run(run())


def test_shape_mismatch_note_only_while_such_rows_are_to_review(tmp_path: Path) -> None:
    """Same stack sizes, rows flagged shape-mismatch with no candidate to name: the header points
    at the flagged rows, and stops once they are decided (or when a plan has none)."""
    src, tgt = _files(tmp_path, kernel=31)
    plan = propose(str(src), str(tgt))
    for name in CONVS:
        plan.entries[name] = dataclasses.replace(
            plan.entries[name], decision="keep", sources=(), source_shapes=(), source_dtypes=(),
            flags=frozenset({"shape-mismatch"}), reason="edited by hand", candidates=())
    plan.save(tmp_path / "plan.yaml")

    async def run() -> None:
        app = create_app([str(src)], str(tgt), plan=str(tmp_path / "plan.yaml"))
        async with app.run_test(size=(160, 40)) as pilot:
            await settled(pilot)
            header = _header(app)
            assert "4 problems" in header
            assert f"encoder.layers: {SEE_FLAGGED}" in header
            assert app.review.target_tree.reveal(CONVS[0])
            app.review.target_tree.focus()
            await pilot.pause()
            await pilot.press("r")
            await settled(pilot)
            header = _header(app)
            assert "0 problems" in header
            assert SEE_FLAGGED not in header

    asyncio.run(run())


def test_standing_keeps_other_lines(tmp_path: Path) -> None:
    src, tgt = _files(tmp_path, kernel=31)
    plan = propose(str(src), str(tgt))
    import inspector

    state = ReviewState(plan, {plan.sources[0].label: inspector.open(src)}, inspector.open(tgt))
    lines = ["encoder.layers: conv kernel 31 -> 9: set x=31", f"encoder.layers: {SEE_FLAGGED}"]
    assert standing(state, lines) == lines[:1]  # no row is flagged shape-mismatch
