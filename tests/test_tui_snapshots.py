"""SVG snapshots of ckpt-tui's main screens at 80x24 and 160x48 (pytest-textual-snapshot).

Update after an intended change: pytest tests/test_tui_snapshots.py --snapshot-update, then look
at the SVGs. The data are fixed (seeded demo shapes), paths are shown by name, nothing is timed.
Screens render in colour; the main screen also with NO_COLOR (monochrome), as users may set it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from tui_waits import previewed, settled, until

from inspector.demo import RNNTConfig, random_state, rnnt_shapes
from inspector.tui.app import ReviewApp, create_app
from inspector.tui.screens.help import HelpScreen
from inspector.tui.screens.write import WriteConfirmScreen


@pytest.fixture
def make_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[bool], ReviewApp]:
    """`make_app(no_color)`: the app over two seeded checkpoints, rendered in colour or, with
    NO_COLOR set, in monochrome (Textual reads NO_COLOR when the app is created)."""
    src = {k: torch.from_numpy(v) for k, v in random_state(rnnt_shapes(RNNTConfig(28)), 1).items()}
    # the demo's case: a vocabulary change (declared) and a conv kernel change (a partial)
    tgt_cfg = RNNTConfig(256, conv_kernel=9)
    tgt = {k: torch.from_numpy(v) for k, v in random_state(rnnt_shapes(tgt_cfg), 2).items()}
    monkeypatch.chdir(tmp_path)  # the write confirmation shows the output folder relative to it
    torch.save({"epoch": 3, "state_dict": src}, tmp_path / "char.pt")
    torch.save(tgt, tmp_path / "bpe.pt")

    def make(no_color: bool) -> ReviewApp:
        if no_color:
            monkeypatch.setenv("NO_COLOR", "1")
        else:
            monkeypatch.delenv("NO_COLOR", raising=False)
        return create_app([str(tmp_path / "char.pt")], str(tmp_path / "bpe.pt"))

    return make


@pytest.fixture
def app(make_app: Callable[[bool], ReviewApp]) -> ReviewApp:
    return make_app(False)


async def expanded(pilot) -> None:  # type: ignore[no-untyped-def]
    """Open the encoder, its folded layers and one tensor, then let the details load."""
    await settled(pilot)
    assert pilot.app.review.target_tree.reveal("encoder.layers.0.self_attn.linear_q.weight")
    await settled(pilot)
    assert pilot.app.review.details_for[0] == "encoder.layers.0.self_attn.linear_q.weight"


@pytest.mark.parametrize("no_color", [False, True], ids=["colour", "no_color"])
@pytest.mark.parametrize("size", [(80, 24), (160, 48)])
def test_main_screen(snap_compare, make_app, size: tuple[int, int], no_color: bool) -> None:  # type: ignore[no-untyped-def]
    app = make_app(no_color)
    assert app.no_color is no_color
    assert snap_compare(app, terminal_size=size, run_before=settled)


@pytest.mark.parametrize("size", [(80, 24), (160, 48)])
def test_expanded_with_details(snap_compare, app: ReviewApp, size: tuple[int, int]) -> None:  # type: ignore[no-untyped-def]
    """A tensor row; at 160x48 the target and source histograms are drawn under the details
    (at 80x24 there is no room for them)."""
    assert snap_compare(app, terminal_size=size, run_before=expanded)


def test_problems_filter(snap_compare, app: ReviewApp) -> None:  # type: ignore[no-untyped-def]
    async def run(pilot) -> None:  # type: ignore[no-untyped-def]
        await settled(pilot)
        await pilot.press("p", "down", "right")
        await settled(pilot)

    assert snap_compare(app, terminal_size=(160, 48), run_before=run)


def test_help_screen(snap_compare, app: ReviewApp) -> None:  # type: ignore[no-untyped-def]
    async def run(pilot) -> None:  # type: ignore[no-untyped-def]
        await settled(pilot)
        await pilot.press("question_mark")
        await until(pilot, lambda: isinstance(pilot.app.screen, HelpScreen), "the help screen")

    assert snap_compare(app, terminal_size=(80, 24), run_before=run)


def test_write_confirmation(snap_compare, app: ReviewApp) -> None:  # type: ignore[no-untyped-def]
    async def run(pilot) -> None:  # type: ignore[no-untyped-def]
        await settled(pilot)
        await pilot.press("w")
        await until(
            pilot, lambda: isinstance(pilot.app.screen, WriteConfirmScreen), "the confirmation"
        )
        await settled(pilot)

    assert snap_compare(app, terminal_size=(80, 24), run_before=run)


def test_rule_preview(snap_compare, app: ReviewApp) -> None:  # type: ignore[no-untyped-def]
    async def run(pilot) -> None:  # type: ignore[no-untyped-def]
        await settled(pilot)
        await pilot.press("e", *"keep joint.*")
        await previewed(pilot)
        assert pilot.app.screen.pending is not None

    assert snap_compare(app, terminal_size=(160, 48), run_before=run)


def test_per_layer_change_of_a_module(snap_compare, app: ReviewApp) -> None:  # type: ignore[no-untyped-def]
    """The encoder's row at 160x48: relative change and cosine per layer, worst tensor each."""

    async def run(pilot) -> None:  # type: ignore[no-untyped-def]
        await settled(pilot)
        tree = pilot.app.review.target_tree
        node = next(n for n in tree.root.children if n.data and n.data.label == "encoder")
        tree.move_cursor(node)
        await settled(pilot)
        assert pilot.app.review.plots_view.changes

    assert snap_compare(app, terminal_size=(160, 48), run_before=run)
