"""ckpt-tui changes the plan on the UI thread only: workers compute on snapshots, handlers apply.

The races are made deterministic by holding the workers' library calls on an Event until both
requests were made; nothing here depends on timing.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from subproc import ckpt
from tui_waits import previewed, settled, until

from inspector.errors import PlanError
from inspector.mapping.plan import Plan
from inspector.tui.app import ReviewApp, create_app
from inspector.tui.screens.quit import QuitScreen
from inspector.tui.screens.rules import RuleEditor
from inspector.tui.state import ReviewState, RuleResult

SIZE = (80, 24)
KEEP_LAYER_3 = RuleResult("add", {"keep": "encoder.layers.3.*"})


def make_app(files: tuple[Path, Path], plan_path: Path) -> ReviewApp:
    return create_app([str(files[0])], str(files[1]), plan_path=plan_path)


class Gate:
    """Holds every call of a wrapped function in a worker thread until `open()`: `entered`
    counts the calls that reached it."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.entered = 0

    def wrap(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        def held(*args: Any, **kwargs: Any) -> Any:
            self.entered += 1
            assert self.event.wait(60), "the gate was never opened"
            return fn(*args, **kwargs)

        return held

    def open(self) -> None:
        self.event.set()


@pytest.fixture
def gate(monkeypatch: pytest.MonkeyPatch) -> Iterator[Gate]:
    """Re-proposing (RuleResult.edit) and saving (Plan.save) wait for the gate."""
    g = Gate()
    monkeypatch.setattr(RuleResult, "edit", g.wrap(RuleResult.edit))
    monkeypatch.setattr(Plan, "save", g.wrap(Plan.save))
    yield g
    g.open()  # never leave a worker thread waiting


def expected_bytes(plan: Plan, folder: Path, name: str) -> bytes:
    """What saving `plan` into `folder` writes (relative paths are written from the folder)."""
    path = folder / name
    Plan.save(plan, path)
    return path.read_bytes()


@pytest.mark.parametrize("order", ["rules-then-save", "save-then-rules"])
def test_rule_change_and_save_together_save_one_whole_state(
    files: tuple[Path, Path], tmp_path: Path, gate: Gate, order: str
) -> None:
    """A save asked for while rules are re-proposed waits and saves the new plan; a rule change
    asked for while the plan is written waits its turn (refused): never a mix of the two."""
    saved = tmp_path / "out" / "review.plan.yaml"
    saved.parent.mkdir()

    async def run() -> tuple[Plan, list[Any]]:
        app = make_app(files, saved)
        async with app.run_test(size=SIZE) as pilot:
            await settled(pilot)
            review = app.review
            assert review.state is not None
            start = review.state.snapshot()
            first, second = (
                (lambda: review.change_rules(KEEP_LAYER_3), lambda: review.save_plan(saved))
                if order == "rules-then-save"
                else (lambda: review.save_plan(saved), lambda: review.change_rules(KEEP_LAYER_3))
            )
            first()
            await until(pilot, lambda: gate.entered == 1, "the first job to start")
            second()
            await pilot.pause()
            assert review.state.plan.rules == []  # nothing applied while a worker computes
            assert gate.entered == 1  # the second request waits for the first job
            gate.open()
            await settled(pilot)
            assert not review.busy
            assert not review.state.dirty
            return start, [r.to_dict() for r in review.state.plan.rules]

    start, rules_now = asyncio.run(run())
    # the two whole states, written by the library from the plan the review started with
    before = expected_bytes(start, saved.parent, "before.yaml")
    KEEP_LAYER_3.edit(start)
    after = expected_bytes(start, saved.parent, "after.yaml")
    assert before != after
    written = saved.read_bytes()
    assert written in (before, after)
    if order == "rules-then-save":
        assert written == after  # the save waited for the rule change
        assert rules_now == [KEEP_LAYER_3.rule]
    else:
        assert written == before  # the rule change was refused while saving
        assert rules_now == []


def test_quit_waits_for_a_rule_change_then_asks(
    files: tuple[Path, Path], tmp_path: Path, gate: Gate
) -> None:
    """q while rules are re-proposed does not drop the change: it says to wait; once the change
    is applied the plan is unsaved and q asks."""

    async def run() -> None:
        app = make_app(files, tmp_path / "review.plan.yaml")
        async with app.run_test(size=SIZE) as pilot:
            await settled(pilot)
            app.review.change_rules(KEEP_LAYER_3)
            await until(pilot, lambda: gate.entered == 1, "the re-proposal to start")
            await pilot.press("q")
            assert app.return_value is None
            assert not isinstance(app.screen, QuitScreen)
            gate.open()
            await settled(pilot)
            assert app.review.state is not None
            assert app.review.state.plan.rules
            await pilot.press("q")
            await until(pilot, lambda: isinstance(app.screen, QuitScreen), "the question")
            await pilot.press("escape")

    asyncio.run(run())


def test_plan_is_changed_on_the_ui_thread_only(
    files: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every change of the plan under review (its methods, its entries, its attributes) is made
    on the UI thread, for decisions, rule changes, undo/redo and saving; the re-proposal itself
    runs in a worker thread."""
    ui = threading.get_ident()  # run_test runs the app's event loop in this thread
    threads: dict[str, set[int]] = {}

    def record(what: str) -> None:
        threads.setdefault(what, set()).add(threading.get_ident())

    original_edit = RuleResult.edit

    def edit(self: RuleResult, plan: Plan) -> Any:
        record("re-propose (worker)")
        return original_edit(self, plan)

    monkeypatch.setattr(RuleResult, "edit", edit)

    class Entries(dict):  # type: ignore[type-arg]
        def __setitem__(self, key: Any, value: Any) -> None:
            record("entries[...] =")
            super().__setitem__(key, value)

        def update(self, *a: Any, **k: Any) -> None:  # bulk edits set many rows at once
            record("entries[...] =")
            super().update(*a, **k)

    def watch(plan: Plan) -> None:
        """Record the thread of every mutating call on this plan object (not its snapshots)."""
        for name in ("approve", "reject", "set_decision", "set_source", "set_rules", "add_rule",
                     "undo"):
            method = getattr(plan, name)

            def wrapper(*a: Any, _m: Any = method, _n: str = name, **k: Any) -> Any:
                record(_n)
                return _m(*a, **k)

            object.__setattr__(plan, name, wrapper)
        plan.entries = Entries(plan.entries)

        class Watched(type(plan)):  # type: ignore[misc]
            def __setattr__(self, key: str, value: Any) -> None:
                if self is plan:
                    record(f".{key} =")
                super().__setattr__(key, value)

        plan.__class__ = Watched

    def assert_ui_only() -> None:
        off_ui = {what: ids - {ui} for what, ids in threads.items() if ids - {ui}}
        off_ui.pop("re-propose (worker)", None)
        assert not off_ui, f"the plan was changed off the UI thread: {off_ui}"

    async def run() -> None:
        app = make_app(files, tmp_path / "review.plan.yaml")
        async with app.run_test(size=SIZE) as pilot:
            await settled(pilot)
            review = app.review
            assert review.state is not None
            plan = review.state.plan
            watch(plan)
            await pilot.press("down", "a", "r", "u", "U")  # approve, reject, undo, redo
            await pilot.press("e", *"keep encoder.layers.3.*")
            await previewed(pilot)
            await pilot.press("enter")
            await settled(pilot)
            assert_ui_only()
            assert [r.to_dict() for r in plan.rules] == [{"keep": "encoder.layers.3.*"}]
            await pilot.press("e", "shift+tab", "down", "enter", "ctrl+d")  # remove the rule
            await previewed(pilot)
            assert isinstance(app.screen, RuleEditor)
            await pilot.press("ctrl+s")
            await settled(pilot)
            assert plan.rules == []
            await pilot.press("u", "s", "enter")  # undo the removal on the UI thread, save
            await settled(pilot)
            assert len(plan.rules) == 1
            assert review.state.plan is plan

    asyncio.run(run())
    assert {"approve", "reject", "undo", "entries[...] =", ".rules ="} <= set(threads)
    assert threads["re-propose (worker)"] - {ui}, "the re-proposal ran on the UI thread"
    assert_ui_only()


def test_save_and_save_then_quit_write_the_same_bytes_as_the_cli(
    files: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`s` and quit's "save and quit" are one path: the same decisions give the same file, written
    by Plan.save, the function `ckpt map -o` writes with (an unedited review saves what
    `ckpt map -o` writes, byte for byte)."""
    saves: list[Path] = []
    original_save = Plan.save

    def save(self: Plan, path: Any, *a: Any, **k: Any) -> None:
        saves.append(Path(path))
        original_save(self, path, *a, **k)

    monkeypatch.setattr(Plan, "save", save)

    async def review(plan_path: Path, *keys: str) -> ReviewApp:
        app = make_app(files, plan_path)
        async with app.run_test(size=SIZE) as pilot:
            await settled(pilot)
            await pilot.press(*keys)
            if keys[-1] == "q":
                await until(pilot, lambda: isinstance(app.screen, QuitScreen), "the question")
                await pilot.press("s")
                await until(pilot, lambda: app.return_value is not None, "the app to quit")
            else:
                await settled(pilot)
        return app

    asyncio.run(review(tmp_path / "saved.plan.yaml", "down", "a", "s", "enter"))
    app = asyncio.run(review(tmp_path / "quit.plan.yaml", "down", "a", "q"))
    assert app.return_value == 0
    asyncio.run(review(tmp_path / "plain.plan.yaml", "s", "enter"))
    assert saves == [tmp_path / n for n in ("saved.plan.yaml", "quit.plan.yaml", "plain.plan.yaml")]
    saved = (tmp_path / "saved.plan.yaml").read_bytes()
    assert saved == (tmp_path / "quit.plan.yaml").read_bytes()
    assert Plan.load(tmp_path / "saved.plan.yaml").entries["encoder.layers.0.norm_out.weight"
                                                           ].status == "approved"
    r = ckpt("map", files[0], files[1], "-o", tmp_path / "cli.plan.yaml")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "plain.plan.yaml").read_bytes() == (tmp_path / "cli.plan.yaml").read_bytes()
    assert saved != (tmp_path / "plain.plan.yaml").read_bytes()


def test_an_edit_computed_on_a_snapshot_applies_as_if_made_here(state: ReviewState) -> None:
    """What the worker does (RuleResult.edit on a snapshot) leaves the plan under review alone;
    apply_edit then gives the same plan as making the change directly, and undo reverts it."""
    start = state.plan.to_dict()
    snapshot = state.snapshot()
    edit = KEEP_LAYER_3.edit(snapshot)
    assert state.plan.to_dict() == start  # the worker's change stays in the snapshot
    direct = state.snapshot()
    KEEP_LAYER_3.edit(direct)
    state.apply_edit(edit)
    assert state.plan.to_dict() == snapshot.to_dict() == direct.to_dict() != start
    assert state.dirty
    state.undo()
    assert state.plan.to_dict() == start
    state.redo()
    assert state.plan.to_dict() == direct.to_dict()


def test_a_stale_edit_is_refused(state: ReviewState) -> None:
    """An edit computed from a state the plan has left (a row decided meanwhile) is refused
    whole: nothing of it is applied."""
    edit = KEEP_LAYER_3.edit(state.snapshot())
    state.approve(["encoder.layers.3.norm_out.bias"])
    before = state.plan.to_dict()
    with pytest.raises(PlanError, match="changed while it was computed"):
        state.apply_edit(edit)
    assert state.plan.to_dict() == before
    state.undo()
    state.apply_edit(edit)  # back at the state it was computed from: it applies
    assert [r.to_dict() for r in state.plan.rules] == [KEEP_LAYER_3.rule]
