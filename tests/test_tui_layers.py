"""ckpt-tui and layer selection: `--layers` proposes with the selection, and the rule editor
takes index arithmetic with its live preview (Textual pilot)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import torch
from test_layer_selection import _model
from tui_waits import previewed, settled

from inspector.tui import build_parser
from inspector.tui.app import create_app
from inspector.tui.screens.rules import RuleEditor

SIZE = (100, 30)
SELECTION = ("{template: {from: 'encoder.layers.{2*n}', to: 'encoder.layers.{n}', n: 0..5}}")


def _files(tmp_path: Path) -> tuple[str, str]:
    teacher, student = tmp_path / "teacher.pt", tmp_path / "student.pt"
    torch.save(_model(12, 1).state_dict(), teacher)
    torch.save(_model(6, 2).state_dict(), student)
    return str(teacher), str(student)


def test_layers_option_proposes_with_the_selection(tmp_path: Path) -> None:
    teacher, student = _files(tmp_path)
    args = build_parser().parse_args([teacher, student, "--layers", "every:2"])
    app = create_app([teacher], student, layers=args.layers, layers_prefix=args.layers_prefix)

    async def run() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await settled(pilot)
            plan = app.review.state.plan
            assert [r.to_dict() for r in plan.rules] == [{
                "template": {"from": "encoder.layers.{2*n}", "to": "encoder.layers.{n}",
                             "n": "0..5"},
                "note": "--layers every:2"}]
            assert plan.entries["encoder.layers.3.0.weight"].sources == (
                ("teacher.pt", "encoder.layers.6.0.weight"),)
            assert len(plan.unused) == 24

    asyncio.run(run())


def test_rule_editor_previews_a_selection_then_keeps_it(tmp_path: Path) -> None:
    teacher, student = _files(tmp_path)
    app = create_app([teacher], student)

    async def run() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await settled(pilot)
            await pilot.press("e")
            assert isinstance(app.screen, RuleEditor)
            await pilot.press(*"encoder.layers.{n*n} -> encoder.layers.{n}")
            await previewed(pilot)
            preview = str(app.screen.query_one("#preview").render())
            assert "rules[0].template: {n*n}: n*n is not affine" in preview
            assert app.screen.pending is None
            app.screen.query_one("#rule-input").value = ""
            await pilot.press(*SELECTION)
            await previewed(pilot)
            preview = str(app.screen.query_one("#preview").render())
            # student layers 1..5 now come from teacher layers 2..10; layer 0 stays as it was
            assert "20 row(s) change" in preview
            assert "encoder.layers.3.0.weight" in preview
            assert app.review.state.plan.rules == []  # nothing changed before keeping
            await pilot.press("enter")
            await settled(pilot)
            plan = app.review.state.plan
            assert [r.to_dict() for r in plan.rules] == [{"template": {
                "from": "encoder.layers.{2*n}", "to": "encoder.layers.{n}", "n": "0..5"}}]
            assert plan.entries["encoder.layers.5.1.bias"].sources == (
                ("teacher.pt", "encoder.layers.10.1.bias"),)
            assert {u.reason for u in plan.unused} == {
                "dropped by rules[0]: a layer not selected by encoder.layers.{2*n} -> "
                "encoder.layers.{n}, n in 0..5"}

    asyncio.run(run())
