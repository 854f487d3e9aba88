"""ckpt-tui driven by keys (Textual pilot): each action's effect on the plan and the disk."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from tui_waits import previewed, settled, until

import inspector
from inspector.demo import RNNTConfig, random_state, rnnt_shapes
from inspector.mapping.plan import Plan
from inspector.tui.app import ReviewApp, create_app
from inspector.tui.screens.candidates import CandidatesScreen
from inspector.tui.screens.quit import QuitScreen
from inspector.tui.screens.review import ReviewScreen
from inspector.tui.screens.rules import RuleEditor
from inspector.tui.screens.write import WriteConfirmScreen

SIZE = (80, 24)


def sync(fn: Callable[..., Awaitable[None]]) -> Callable[..., None]:
    """Run an async test with asyncio.run (no async pytest plugin needed)."""

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(fn(*args, **kwargs))

    return run


def make_app(files: tuple[Path, Path], **kw: object) -> ReviewApp:
    return create_app([str(files[0])], str(files[1]), **kw)  # type: ignore[arg-type]


async def settle(app: ReviewApp, pilot) -> None:  # type: ignore[no-untyped-def]
    await settled(pilot)


async def goto(app: ReviewApp, pilot, name: str) -> None:  # type: ignore[no-untyped-def]
    """Put the target cursor on the row of tensor `name` (as arrow keys would)."""
    assert app.review.target_tree.reveal(name)
    app.review.target_tree.focus()
    await pilot.pause()


async def goto_module(app: ReviewApp, pilot, label: str) -> None:  # type: ignore[no-untyped-def]
    """Put the target cursor on the top-level module row `label`."""
    node = next(n for n in app.review.target_tree.root.children if n.data and n.data.label == label)
    app.review.target_tree.move_cursor(node)
    app.review.target_tree.focus()
    await pilot.pause()


def listing(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


@sync
async def test_opens_and_shows_trees(files: tuple[Path, Path]) -> None:
    app = make_app(files)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        assert app.review.state is not None
        roots = [n.data.label for n in app.review.target_tree.root.children if n.data]
        assert roots == ["preprocessor.featurizer", "encoder", "decoder.prediction", "joint"]
        assert app.review.target_tree.has_focus


@sync
async def test_approve_subtree_reject_row_undo_redo(files: tuple[Path, Path]) -> None:
    app = make_app(files)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        assert app.review.state is not None
        entries = app.review.state.plan.entries
        await pilot.press("down", "a")  # the cursor starts on the first row: go to encoder
        assert {entries[n].status for n in app.review.state.plan.under("encoder")} == {"approved"}
        assert entries["joint.enc.weight"].status == "proposed"
        await goto(app, pilot, "joint.enc.weight")
        await pilot.press("r")
        assert entries["joint.enc.weight"].status == "rejected"
        await pilot.press("u")
        assert entries["joint.enc.weight"].status == "proposed"
        await pilot.press("ctrl+z")
        assert entries["encoder.layers.0.norm_out.weight"].status == "proposed"
        await pilot.press("ctrl+y")
        assert entries["encoder.layers.0.norm_out.weight"].status == "approved"


@sync
async def test_filters_and_search(files: tuple[Path, Path]) -> None:
    app = make_app(files)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        tree = app.review.target_tree
        await pilot.press("p")
        assert tree.model is not None
        assert not tree.model.root.names  # the vocabulary change is a declared keep
        await pilot.press("escape")
        assert len(tree.model.root.names) == 181
        await pilot.press("slash")
        await pilot.press(*"linear_q.weight", "enter")
        assert app.review.state is not None
        assert app.review.state.filter.search == "linear_q.weight"
        assert len(tree.model.root.names) == 4
        assert len(app.review.source_tree.model.root.names) == 4  # their sources
        await pilot.press("escape")
        await goto_module(app, pilot, "encoder")
        await pilot.press("a", "n")  # approve the encoder, then show pending rows only
        assert not any(n.startswith("encoder.") for n in tree.model.root.names)
        await pilot.press("n", "escape")
        await goto(app, pilot, "joint.enc.weight")
        await pilot.press("m")
        assert all(n.startswith("joint.") for n in tree.model.root.names)


@sync
async def test_candidates_picker_sets_source(files: tuple[Path, Path]) -> None:
    app = make_app(files)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await goto(app, pilot, "encoder.layers.0.norm_out.weight")
        await pilot.press("c")
        assert isinstance(app.screen, CandidatesScreen)
        choices = [c.name for c in app.screen.choices]
        assert choices[0] == "encoder.layers.0.norm_out.weight"
        await pilot.press("down", "enter")
        await settle(app, pilot)
        assert app.review.state is not None
        e = app.review.state.plan.entries["encoder.layers.0.norm_out.weight"]
        assert e.sources[0][1] == choices[1]
        assert e.status == "approved"
        assert "user" in e.flags


@sync
async def test_candidates_on_a_folded_row_set_every_layer(files: tuple[Path, Path]) -> None:
    from inspector.mapping.names import analogous

    app = make_app(files)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await goto(app, pilot, "encoder.layers.0.norm_out.weight")
        names = list(app.review.target_tree.current_row.names)
        await pilot.press("c")
        assert isinstance(app.screen, CandidatesScreen)
        pick = next(i for i, c in enumerate(app.screen.choices)
                    if c.name == "encoder.layers.0.norm_conv.weight")
        chosen = app.screen.choices[pick].name
        await pilot.press(*["down"] * pick, "enter")
        await settle(app, pilot)
        assert app.review.state is not None
        for name in names:
            e = app.review.state.plan.entries[name]
            assert e.sources[0][1] == analogous(chosen, names[0], name)
            assert e.status == "approved"


@sync
async def test_rule_editor_previews_then_keeps(files: tuple[Path, Path]) -> None:
    app = make_app(files)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        assert app.review.state is not None
        await pilot.press("e")
        assert isinstance(app.screen, RuleEditor)
        await pilot.press(*"keep encoder.layers.3.*")
        await previewed(pilot)
        editor = app.screen
        assert editor.pending is not None
        preview = str(editor.query_one("#preview").render())
        assert "40 row(s) change" in preview
        assert app.review.state.plan.rules == []  # nothing changed before keeping
        await pilot.press("enter")
        await settle(app, pilot)
        rules = [r.to_dict() for r in app.review.state.plan.rules]
        assert rules == [{"keep": "encoder.layers.3.*"}]
        conv = app.review.state.plan.entries["encoder.layers.3.conv.depthwise_conv.weight"]
        assert conv.decision == "keep"
        # edit it, then remove it, each previewed first
        await pilot.press("e", "shift+tab", "down", "enter")  # pick rule 1 in the list
        await pilot.press("ctrl+d")
        await previewed(pilot)
        assert app.screen.pending is not None
        assert app.screen.pending.kind == "remove"
        await pilot.press("ctrl+s")
        await settle(app, pilot)
        assert app.review.state.plan.rules == []
        await pilot.press("u")
        assert len(app.review.state.plan.rules) == 1


@sync
async def test_save_plan_and_quit_confirmation(files: tuple[Path, Path], tmp_path: Path) -> None:
    plan_path = tmp_path / "review.plan.yaml"
    app = make_app(files, plan_path=plan_path)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await pilot.press("down", "a", "q")
        assert isinstance(app.screen, QuitScreen)  # unsaved decisions: asks first
        await pilot.press("escape")
        assert not plan_path.exists()
        await pilot.press("s", "enter")
        await settle(app, pilot)
        assert plan_path.exists()
        assert app.review.state is not None
        assert not app.review.state.dirty
        saved = Plan.load(plan_path)
        assert saved.entries["encoder.layers.0.norm_out.weight"].status == "approved"
        await pilot.press("q")
        await pilot.pause()
    assert app.return_value == 0


@sync
async def test_loads_a_saved_plan(files: tuple[Path, Path], tmp_path: Path) -> None:
    from inspector.mapping.propose import propose

    plan = propose(str(files[0]), str(files[1]))
    plan.reject(plan.under("encoder.layers.2"))
    plan.save(tmp_path / "p.yaml")
    app = make_app(files, plan=tmp_path / "p.yaml")
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        assert app.review.state is not None
        assert app.review.state.plan.entries["encoder.layers.2.norm_out.bias"].status == "rejected"
        assert app.config.plan_path == tmp_path / "p.yaml"


@sync
async def test_nothing_written_before_confirmation_or_after_cancel(
    files: tuple[Path, Path], tmp_path: Path
) -> None:
    out = tmp_path / "out.pt"
    before = listing(tmp_path)
    app = make_app(files, output=out)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await pilot.press("down", "a", "c", "escape", "e", "escape", "w")
        assert isinstance(app.screen, WriteConfirmScreen)
        text = str(app.screen.query_one("#write-summary").render())
        assert "out.pt" in text
        assert "torch zip" in text
        assert "168 tensor(s) changed" in text
        assert listing(tmp_path) == before
        await pilot.press("escape")
        await settle(app, pilot)
        assert listing(tmp_path) == before
        await pilot.press("w", "enter")  # pending rows: refused until accepted
        assert isinstance(app.screen, WriteConfirmScreen)
        await pilot.press("escape")
    assert listing(tmp_path) == before


@sync
async def test_in_memory_checkpoints_have_no_output(tmp_path: Path) -> None:
    src = inspector.open(random_state(rnnt_shapes(RNNTConfig(28)), 1))
    tgt = inspector.open(random_state(rnnt_shapes(RNNTConfig(28)), 2))
    app = create_app(src, tgt)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await pilot.press("w")
        assert not isinstance(app.screen, WriteConfirmScreen)


@sync
async def test_command_palette_lists_every_action(files: tuple[Path, Path]) -> None:
    app = make_app(files)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        titles = {c.title for c in app.get_system_commands(app.screen)}
        for binding in ReviewScreen.BINDINGS:
            assert binding.description in titles  # type: ignore[union-attr]


@sync
async def test_write_flow_confirms_writes_verifies_and_matches_ckpt_apply(
    files: tuple[Path, Path], tmp_path: Path
) -> None:
    from inspector.applying import apply
    from inspector.tui.screens.write import ResultScreen

    out = tmp_path / "out.pt"
    plan_path = tmp_path / "ui.plan.yaml"
    app = make_app(files, output=out, plan_path=plan_path)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await goto_module(app, pilot, "encoder")
        await pilot.press("a")
        row = app.review.target_tree.current_row  # the cursor stays on the module it approved
        assert row is not None
        assert (row.key, row.leaf) == ("encoder", False)
        await goto(app, pilot, "encoder.pre_encode.out.bias")
        await pilot.press("r", "s", "enter")  # reject one row, save the plan
        await settle(app, pilot)
        await pilot.press("w", "a", "enter")  # accept the pending rows as proposed, write
        await until(pilot, lambda: isinstance(app.screen, ResultScreen), "the result screen")
        await settle(app, pilot)
        assert app.review.last_report is not None
        assert app.review.last_report.verified
    written = torch.load(out, weights_only=True)
    source = torch.load(files[0], weights_only=True)["state_dict"]
    target = torch.load(files[1], weights_only=True)
    copied, rejected = "encoder.layers.1.norm_out.bias", "encoder.pre_encode.out.bias"
    assert torch.equal(written[copied], source[copied])
    assert torch.equal(written[rejected], target[rejected])
    assert torch.equal(written["joint.enc.weight"], target["joint.enc.weight"])  # new vocabulary
    # The saved plan applied outside the UI gives the same tensors.
    again = tmp_path / "again.pt"
    apply(plan_path, again, accept_proposed=True)
    other = torch.load(again, weights_only=True)
    assert other.keys() == written.keys()
    assert all(torch.equal(other[k], written[k]) for k in written)


def test_cancelled_write_leaves_nothing(files: tuple[Path, Path], tmp_path: Path) -> None:
    from inspector.mapping.propose import propose
    from inspector.tui import jobs

    plan = propose(str(files[0]), str(files[1]))
    plan.approve(plan.under("encoder"))
    before = listing(tmp_path)

    def cancel(done: int, total: int) -> None:
        raise jobs.WriteCancelled()

    with pytest.raises(jobs.WriteCancelled):
        jobs.write(plan, tmp_path / "out.pt", True, cancel)
    assert listing(tmp_path) == before


@sync
async def test_header_warns_of_partials_and_details_give_the_keep_reason(tmp_path: Path) -> None:
    """A kernel-size mismatch leaves 4 conv weights at init without a declared reason: the
    header says so (count and folded names); a vocabulary-change row shows its real reason."""
    src = random_state(rnnt_shapes(RNNTConfig(28)), 1)
    tgt = random_state(rnnt_shapes(RNNTConfig(256, conv_kernel=9)), 2)
    torch.save({k: torch.from_numpy(v) for k, v in src.items()}, tmp_path / "char.pt")
    torch.save({k: torch.from_numpy(v) for k, v in tgt.items()}, tmp_path / "bpe.pt")
    app = make_app((tmp_path / "char.pt", tmp_path / "bpe.pt"))
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        header = str(app.review.query_one("#summary").render())
        assert "8 problems" in header  # the convs' weights, and their biases that follow them
        assert "⚠ partial: 8 keep init with no declared reason" in header
        assert "encoder.layers.{0..3}.conv.depthwise_conv.weight" in header
        assert "⚠ module encoder is copied in part: 160 of 168 tensors copy" in header
        await goto(app, pilot, "decoder.prediction.embed.weight")
        details = str(app.review.query_one("#details").render())
        assert "vocabulary changed 29 -> 257" in details
        assert "no source" not in details
        await goto(app, pilot, "encoder.layers.0.conv.depthwise_conv.weight")
        await pilot.press("r")  # the folded row of 4 layers: rejecting declares the keeps
        await goto(app, pilot, "encoder.layers.0.conv.depthwise_conv.bias")
        await pilot.press("r")
        await pilot.pause()
        header = str(app.review.query_one("#summary").render())
        assert "8 rejected  0 problems" in header
        assert "copied in part" not in header
        assert "partial" not in header
