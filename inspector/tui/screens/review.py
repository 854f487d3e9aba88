"""The main screen of ckpt-tui: the two key trees, the header, the details, and every action.

Opening, hashing, saving and writing run in thread workers that post the small messages of
`messages.py`; the handlers here apply what they bring on the UI thread. Widgets never touch files.
"""

from __future__ import annotations

import gc
from collections.abc import Iterable
from pathlib import Path
from time import monotonic
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import Footer, Input
from textual.worker import get_current_worker

from ... import humanize
from ...bulk import paused_gc
from ...errors import CheckpointError, PlanError, WriteError
from ...mapping.plan import Plan
from ...plotting import ChangeRow
from .. import charts, jobs
from .. import messages as msg
from ..config import AppConfig, display_name
from ..state import HeaderView, ReviewState, RuleResult, source_tree_view
from ..treemodel import Row, TreeModel
from ..widgets.details import DetailsPane, DetailsView, Side
from ..widgets.keytree import KeyTree
from ..widgets.labels import module_label, source_labeler, target_labeler
from ..widgets.marks import SOURCE_MARKS, TARGET_MARKS, mark
from ..widgets.plots import MIN_SCREEN_HEIGHT, Histogram, PlotsView, ValuePlots
from ..widgets.summary import Names, SummaryBar, summary_text

# Rows from which the header (counts, partial modules, the transfer summary: a tally of every
# row's state, ~25 ms at 100k rows) is drawn by a worker after an edit instead of on the UI
# thread with the trees.
HEADER_IN_WORKER = 200_000


class ReviewScreen(Screen[None]):
    """Two key trees, the decisions, the details; keys for every action (see `?`)."""

    # The target tree has the focus from the start. Textual's default focuses the first focusable
    # widget (the source tree) when the screen is shown, which, under load, could come after
    # on_loaded had focused the target tree (a snapshot then showed the source tree's legend).
    AUTO_FOCUS = "#target-tree"

    BINDINGS = [
        Binding("question_mark", "help", "Help"),
        Binding("slash", "search", "Search"),
        Binding("a", "approve", "Approve"),
        Binding("r", "reject", "Reject"),
        Binding("c", "candidates", "Candidates"),
        Binding("e", "rules", "Rules"),
        Binding("p", "filter_problems", "Problems"),
        Binding("n", "filter_pending", "Pending", show=False),
        Binding("m", "filter_module", "Module", show=False),
        Binding("escape", "clear_filter", "Clear filter", show=False),
        Binding("u,ctrl+z", "undo", "Undo"),
        Binding("U,ctrl+y", "redo", "Redo", show=False),
        Binding("s", "save", "Save"),
        Binding("w", "write", "Write"),
        Binding("d", "toggle_details", "Details", show=False),
        Binding("q", "quit_app", "Quit"),
    ]

    def __init__(self, config: AppConfig):
        super().__init__(id="review")
        self.config = config
        self.state: ReviewState | None = None
        self.arch_lines: list[str] = []
        self.facts: dict[tuple[str, str], msg.TensorFacts] = {}
        self.details_for: tuple[str | None, str | None] = (None, None)  # (target, source) shown
        self.pairs: dict[tuple[str, str], msg.PairFacts] = {}
        self.chart_pairs: list[tuple[str, str]] = []  # (source, target) a module's chart needs
        self.plots_view = PlotsView()
        # What the running job does (re-proposing, saving): edits wait for it, a save waits
        # and then runs (`_save_next`). Set and cleared on the UI thread only.
        self.busy = ""
        self._save_next: tuple[Path, bool] | None = None
        self.last_report: msg.WriteFinished | None = None
        self._headers_asked = self._headers_shown = 0  # see header_current
        self._chart: tuple[Any, Any] | None = None  # see _chart_of

    # Layout ------------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        then = "reading the plan" if self.config.plan is not None else "proposing a mapping"
        yield SummaryBar(f"Opening the checkpoints, then {then}…", id="summary")
        with Horizontal(id="trees"):
            yield KeyTree("source", source_labeler, id="source-tree")
            yield KeyTree("target", target_labeler(self._evidence), id="target-tree")
        yield Input(placeholder="search names: substring or wildcard (*, ?); enter to apply",
                    id="search")
        yield DetailsPane(id="details")
        yield ValuePlots(id="plots")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#search", Input).display = False
        self.open_inputs()

    def _evidence(self, name: str) -> str:
        return self.state.evidence(name) if self.state is not None else ""

    @property
    def source_tree(self) -> KeyTree:
        return self.query_one("#source-tree", KeyTree)

    @property
    def target_tree(self) -> KeyTree:
        return self.query_one("#target-tree", KeyTree)

    # Opening (worker) --------------------------------------------------------------------------
    # Every worker has a description: Textual would otherwise name it after the repr of its
    # arguments, and a snapshot of a 100k-row plan takes seconds to repr (on the UI thread).
    @work(thread=True, exclusive=True, group="open", description="open the checkpoints")
    def open_inputs(self) -> None:
        """Open the inputs, post them (the first paint: the trees from the headers), then
        propose or bind the plan and post it (the marks, the summary, the keys)."""
        try:
            opened = jobs.open_inputs(self.config)
            self.post_message(opened)
            self.post_message(jobs.plan_for(self.config, opened))
        except (CheckpointError, PlanError, OSError) as e:
            self.post_message(msg.LoadFailed(str(e)))

    def on_opened(self, message: msg.Opened) -> None:
        if self.state is not None:
            return
        labels: dict[str, Any] = {}
        for spec, (_, ckpt) in zip(self.config.sources, message.sources, strict=True):
            label, n = display_name(spec), 2
            while label in labels:  # as the plan makes its labels unique
                label, n = f"{display_name(spec)}#{n}", n + 1
            labels[label] = ckpt
        tensors, titles = source_tree_view(labels)
        self.target_tree.set_model(TreeModel(message.target.tensors))
        self.source_tree.set_model(TreeModel(tensors, titles=titles))
        what = "reading the plan" if self.config.plan is not None else "proposing a mapping"
        opened_at = monotonic()

        # The header keeps its one line until the plan is there (its height is laid out from
        # its text: changed twice in a row, Textual kept the first height); the seconds go on
        # the target tree's border.
        def show() -> None:
            if self.state is None:
                self.target_tree.border_subtitle = (
                    f"{what}… {monotonic() - opened_at:.0f} s: the trees can be browsed")
            else:
                self.target_tree.border_subtitle = ""
                ticker.stop()

        show()
        ticker = self.set_interval(1.0, show)
        self.target_tree.focus()

    def on_load_failed(self, message: msg.LoadFailed) -> None:
        self.query_one(SummaryBar).show(Text(f"Cannot open: {message.error}", style="bold red"))
        self.notify(message.error, title="Cannot open", severity="error", timeout=30)

    def on_loaded(self, message: msg.Loaded) -> None:
        plan = message.plan
        labels = [s.label for s in plan.sources]
        sources = dict(zip(labels, message.sources, strict=True))
        self.state = ReviewState(plan, sources, message.target)
        self.target_tree.border_subtitle = ""
        self.arch_lines = list(message.notes)
        # The checkpoints and the plan live as long as the app: the cycle collector need not
        # walk their objects again on every edit (at 100k rows each pass took most of a key's
        # time). Objects freed later are still freed by their reference counts.
        gc.freeze()
        self.refresh_all()
        self.target_tree.focus()

    # Redrawing ---------------------------------------------------------------------------------
    def names(self) -> Names:
        srcs = ", ".join(display_name(s) for s in self.config.sources)
        out = self.config.output.name if self.config.output is not None else "(no output path)"
        return Names(srcs, display_name(self.config.target), out)

    def refresh_all(self) -> None:
        """Rebuild both trees from the state (expansion and cursor are kept) and the header."""
        state = self.state
        if state is None:
            return
        # With no filter every tensor is shown: None says so without a list of 100k names
        targets = state.visible_targets() if state.filter.active else None
        self.target_tree.set_model(TreeModel(state.target_tensors, targets, state.target_marks(),
                                             reuse=self.target_tree.model))
        sources = state.visible_sources(targets) if state.filter.active else None
        marks = state.source_marks()
        shown = self.source_tree.model
        # The source tree shows the same rows with the same marks (approving changes neither):
        # kept as it is, not built again
        if shown is None or sources is not None or shown.names_given or shown.marks is not marks:
            self.source_tree.set_model(TreeModel(state.source_tensors, sources, marks,
                                                 titles=state.source_titles, reuse=shown))
        self.refresh_header()
        self.show_details()

    def refresh_header(self) -> None:
        """Draw the header: at once for a plan of fewer than HEADER_IN_WORKER rows, else in a
        worker from a frozen view (its passes over every row would hold up the key)."""
        if self.state is None:
            return
        view = self.state.header_view()
        self._headers_asked += 1
        if len(view.plan.entries) < HEADER_IN_WORKER:
            self.query_one(SummaryBar).show(summary_text(view, self.names(), self.arch_lines))
            self._headers_shown = self._headers_asked
        else:  # started once the trees are drawn: its passes would share their thread's time
            self.call_after_refresh(self._draw_header, view, self.names(), list(self.arch_lines),
                                    self._headers_asked)

    @work(thread=True, exclusive=True, group="header", description="draw the header")
    def _draw_header(self, view: HeaderView, names: Names, arch: list[str], number: int) -> None:
        text = summary_text(view, names, arch)
        if not get_current_worker().is_cancelled:  # a newer edit's header is on its way
            self.post_message(msg.HeaderReady(text, number))

    def on_header_ready(self, message: msg.HeaderReady) -> None:
        if message.number == self._headers_asked:
            self.query_one(SummaryBar).show(message.text)
            self._headers_shown = message.number

    @property
    def header_current(self) -> bool:
        """The header shows the state as it is now (a large plan's is drawn after the trees)."""
        return self._headers_shown == self._headers_asked

    # Selection and details ---------------------------------------------------------------------
    @on(KeyTree.NodeHighlighted)
    def _highlighted(self, event: KeyTree.NodeHighlighted[Row]) -> None:
        tree = event.control
        if self.state is None or not isinstance(tree, KeyTree) or not tree.has_focus:
            return  # a cursor moved to show a partner: do not bounce back
        row = event.node.data
        if row is not None and row.leaf:
            if tree.side == "target":
                partners = self.state.partners(row.names[0])
                if partners:
                    self.source_tree.reveal(partners[0])
            else:
                readers = self.state.readers_of(row.names[0])
                if readers:
                    self.target_tree.reveal(readers[0])
        self.show_details()

    def focused_row(self) -> tuple[str, Row | None]:
        for tree in (self.target_tree, self.source_tree):
            if tree.has_focus:
                return tree.side, tree.current_row
        return "target", self.target_tree.current_row

    def show_details(self) -> None:
        state = self.state
        pane = self.query_one(DetailsPane)
        if state is None:
            return
        side, row = self.focused_row()
        if row is None:
            pane.show(DetailsView())
            return
        if not row.leaf:
            tree = self.target_tree if side == "target" else self.source_tree
            table = TARGET_MARKS if side == "target" else SOURCE_MARKS
            assert tree.model is not None
            totals = tree.model.totals(row)
            text = module_label(tree.model, row, table)
            text.append(f"\n{humanize.dtypes(totals.dtypes)}", style="dim")
            for key, n in totals.marks.items():
                m = mark(table, key)
                text.append(f"\n{m.symbol} {n} {m.meaning}", style=m.style)
            self.details_for = (None, None)
            self._module_chart(side, row, text)
            pane.show(DetailsView(module=text))
            return
        self.chart_pairs = []
        target: str | None = row.names[0] if side == "target" else None
        source: str | None
        if side == "source":
            readers = state.readers_of(row.names[0])
            target = readers[0] if readers else None
            source = row.names[0]
        else:
            partners = state.partners(row.names[0])
            source = partners[0] if partners else None
        view = self._details_view(target, source, len(row.names))
        pane.show(view)
        self.show_plots(PlotsView(histograms=tuple(
            Histogram(side.title, side.facts.stats) for side in (view.target, view.source)
            if side is not None and side.facts is not None and side.facts.stats is not None)))
        self.details_for = (target, source)
        missing = self._missing_facts(target, source)
        pair = self._pair_missing(target, source)
        if missing or pair:
            self.load_facts(target, source, missing, pair)

    @property
    def details_complete(self) -> bool:
        """True when the details pane has every fact it shows for the selected tensors (digests,
        stats, the pair comparison): tests wait on this rather than on timing."""
        target, source = self.details_for
        charted = all(p in self.pairs for p in self.chart_pairs)
        return (charted and not self._missing_facts(target, source)
                and not self._pair_missing(target, source))

    def _module_chart(self, side: str, row: Row, text: Text) -> None:
        """The per-layer change chart of a module row: from the comparisons at hand, the missing
        ones computed by a worker (not above charts.CHART_BYTES to read, nor for more than
        charts.CHART_TENSORS tensors: the note says why)."""
        assert self.state is not None
        if len(row.names) > charts.CHART_TENSORS:
            text.append(f"\nper-layer change: {len(row.names)} tensors, too many to chart here "
                        "(ckpt diff --plot draws them)", style="dim")
            self.chart_pairs = []
            self.show_plots(PlotsView())
            return
        pairs, missing, rows, note = self._chart_of(side, row)
        if note:
            text.append(note, style="dim")
        self.chart_pairs = pairs
        self.show_plots(PlotsView(changes=rows))
        if missing:
            self.load_pairs(missing)

    def _chart_of(self, side: str, row: Row) -> tuple[list[charts.Pair], list[charts.Pair],
                                                      tuple[ChangeRow, ...], str]:
        """A module row's chart: its pairs, those not compared yet, its rows and a note; kept
        for the same shown names (a filter shows fewer) while the rows copy from the same
        sources and no comparison came in (pair facts are only added), so an edit that changes
        none of these (approving 20k rows) does not walk them again."""
        assert self.state is not None
        key = (id(self.state), side, row.names, self.state.pairs_version, len(self.pairs))
        if self._chart is not None and self._chart[0] == key:
            return self._chart[1]
        pairs = charts.module_pairs(self.state, side, row)
        missing = [p for p in pairs if p not in self.pairs]
        size = charts.pairs_nbytes(self.state, missing)
        note = ""
        if size > charts.CHART_BYTES:
            note = (f"\nper-layer change: {len(missing)} pairs, {humanize.nbytes(size)} to "
                    "read: too much to chart here (ckpt diff --plot draws it)")
            pairs, missing = [p for p in pairs if p in self.pairs], []
        made = (pairs, missing, tuple(charts.chart_rows(pairs, self.pairs)), note)
        self._chart = (key, made)
        return made

    def show_plots(self, view: PlotsView) -> None:
        """Draw `view` under the details when the screen has room for it (MIN_SCREEN_HEIGHT)."""
        plots = self.query_one(ValuePlots)
        if view != self.plots_view:
            plots.show(view)
        self.plots_view = view
        self._place_plots()

    def _place_plots(self) -> None:
        plots = self.query_one(ValuePlots)
        plots.display = (not self.plots_view.empty and self.size.height >= MIN_SCREEN_HEIGHT
                         and self.query_one(DetailsPane).display)

    def on_resize(self) -> None:
        self._place_plots()

    @work(thread=True, exclusive=True, group="facts", description="compare pairs")
    def load_pairs(self, pairs: list[tuple[str, str]]) -> None:
        """Compare the (source, target) pairs a module's chart needs, off the UI thread."""
        worker = get_current_worker()
        done = []
        for source, target in pairs:
            if worker.is_cancelled:
                return
            sck, sname = self._locate("source", source)
            tck, tname = self._locate("target", target)
            done.append((source, target, jobs.pair_facts(sck, sname, tck, tname)))
        self.post_message(msg.PairsReady(done))

    def on_pairs_ready(self, message: msg.PairsReady) -> None:
        for source, target, facts in message.pairs:
            self.pairs[(source, target)] = facts
        self.show_details()

    def _missing_facts(self, target: str | None, source: str | None) -> list[tuple[str, str]]:
        wanted = [("target", target), ("source", source)]
        return [(side, name) for side, name in wanted if name is not None
                and (side, name) not in self.facts]

    def _pair_missing(self, target: str | None, source: str | None) -> bool:
        if self.state is None or target is None or source is None:
            return False
        e = self.state.entry(target)
        return e is not None and e.effective == "copy" and (source, target) not in self.pairs

    def _details_view(self, target: str | None, source: str | None, count: int) -> DetailsView:
        state = self.state
        assert state is not None
        tside = sside = None
        decision = None
        if target is not None:
            info = state.target_tensors[target]
            tside = Side("target", target, info, count, self.facts.get(("target", target)))
            e = state.entry(target)
            if e is not None:
                m = mark(TARGET_MARKS, state.target_mark(target))
                decision = Text(f"{m.symbol} {m.meaning} — {e.reason or state.evidence(target)}",
                                style=m.style)
        if source is not None:
            key = state.source_key(source)
            info = state.source_tensors[source]
            title = f"source ({key.label})"
            sside = Side(title, key.name, info, 1, self.facts.get(("source", source)))
        pair = self.pairs.get((source, target)) if source and target else None
        return DetailsView(tside, sside, decision, pair)

    @work(thread=True, exclusive=True, group="facts", description="read tensor facts")
    def load_facts(
        self, target: str | None, source: str | None, missing: list[tuple[str, str]], pair: bool
    ) -> None:
        """Digest and stats of the `missing` tensors and, with `pair`, their comparison: off the
        UI thread, reading only the checkpoints (what is missing was decided on the UI thread)."""
        worker = get_current_worker()
        for side, name in missing:
            if worker.is_cancelled:
                return
            ckpt, real = self._locate(side, name)
            self.post_message(msg.FactsReady(side, name, jobs.tensor_facts(ckpt, real)))
        if target and source and pair and not worker.is_cancelled:
            sck, sname = self._locate("source", source)
            tck, tname = self._locate("target", target)
            facts = jobs.pair_facts(sck, sname, tck, tname)
            self.post_message(msg.PairReady(source, target, facts))

    def _locate(self, side: str, name: str) -> tuple[Any, str]:
        assert self.state is not None
        if side == "target":
            return self.state.target, name
        key = self.state.source_key(name)
        return self.state.sources[key.label], key.name

    def on_facts_ready(self, message: msg.FactsReady) -> None:
        self.facts[(message.side, message.name)] = message.facts
        self.show_details()

    def on_pair_ready(self, message: msg.PairReady) -> None:
        self.pairs[(message.source, message.target)] = message.facts
        self.show_details()

    # Actions: decisions --------------------------------------------------------------------------
    def _target_names(self) -> list[str] | None:
        """Target names of the row under the target cursor (all shown names of a subtree)."""
        row = self.target_tree.current_row
        if self.state is None or row is None:
            self.notify("Select a row of the target tree first.", severity="warning")
            return None
        if self.busy:
            self.notify(f"Wait: {self.busy}.", severity="warning")
            return None
        return list(row.names)

    def action_approve(self) -> None:
        names = self._target_names()
        if names is not None and self.state is not None:
            with paused_gc():  # see _after_edit
                edit = self.state.approve(names)
                self._after_edit(f"approved {len(edit.targets)} row(s)")

    def action_reject(self) -> None:
        names = self._target_names()
        if names is not None and self.state is not None:
            with paused_gc():
                edit = self.state.reject(names)
                self._after_edit(f"rejected {len(edit.targets)} row(s)")

    def _after_edit(self, what: str) -> None:
        self.refresh_all()
        # An edit's new rows live on (in the plan, or in the undo history) like the plan's at
        # load, and so do the trees' rows: kept out of the collector's passes too. A bulk edit
        # of 100k rows otherwise costs a pass over them: in the next frames, or at once when
        # the edit ran with the collector paused (45 ms).
        gc.freeze()
        self.notify(what, timeout=2)

    def action_undo(self) -> None:
        if self.state is not None and not self.busy:
            with paused_gc():
                edit = self.state.undo()
                self._after_edit(f"undid {edit.action}" if edit else "nothing to undo")

    def action_redo(self) -> None:
        if self.state is not None and not self.busy:
            with paused_gc():
                edit = self.state.redo()
                self._after_edit("redone" if edit else "nothing to redo")

    def action_candidates(self) -> None:
        from .candidates import CandidatesScreen, Choice

        names = self._target_names()
        if names is None or self.state is None:
            return
        target = names[0]
        e = self.state.entry(target)
        ranked = self.state.choices(target)
        if e is None or not ranked:
            self.notify(f"{target}: no source tensor fits.", severity="warning")
            return
        choices = []
        for c in ranked:
            info = self.state.source_info(c.label, c.name)
            choices.append(Choice(c.label, c.name, c.score, c.why, info.shape if info else None))

        def chosen(choice: Choice | None) -> None:
            if choice is None or self.state is None:
                return
            with paused_gc():  # see _after_edit
                try:
                    edit, missed = self.state.set_analogous_sources(
                        names, choice.label, choice.name)
                except PlanError as err:
                    self.notify(str(err), title="Not applied", severity="error", timeout=10)
                    return
                what = f"{target} ← {choice.name}" if len(names) == 1 else (
                    f"{len(edit.targets)} row(s) ← {choice.name} and its other layers")
                if missed:
                    what += f"; {len(missed)} row(s) without that source in their layer: unchanged"
                self._after_edit(what)

        screen = CandidatesScreen(target, e.shape, choices, folded=len(names) > 1)
        self.app.push_screen(screen, chosen)

    # Actions: rules ------------------------------------------------------------------------------
    def action_rules(self) -> None:
        from .rules import RuleEditor

        if self.state is None:
            return
        if self.busy:
            self.notify(f"Wait: {self.busy}.", severity="warning")
            return

        def done(result: RuleResult | None) -> None:
            if result is not None:
                self.change_rules(result)

        self.app.push_screen(RuleEditor(self.state.snapshot()), done)

    def change_rules(self, result: RuleResult) -> None:
        """Re-propose with the changed rules: a worker computes the Edit on a snapshot of the
        plan, `on_rules_changed` applies it here on the UI thread. Edits wait meanwhile."""
        if self.state is None or self.busy:
            return
        self.busy = "re-proposing with the new rules"
        self.repropose(result, self.state.snapshot())

    @work(thread=True, exclusive=True, group="edit", description="re-propose")
    def repropose(self, result: RuleResult, plan: Plan) -> None:
        try:
            self.post_message(msg.RulesChanged(result.edit(plan)))
        except PlanError as err:
            self.post_message(msg.RulesFailed(str(err)))

    def on_rules_changed(self, message: msg.RulesChanged) -> None:
        assert self.state is not None
        with paused_gc():  # see _after_edit
            try:
                edit = self.state.apply_edit(message.edit)
            except PlanError as err:
                self.notify(str(err), title="Rule not applied", severity="error")
            else:
                self._after_edit(f"{edit.action}: {len(edit.targets)} row(s) changed")
        self._job_done()

    def on_rules_failed(self, message: msg.RulesFailed) -> None:
        self.notify(message.error, title="Rule not applied", severity="error")
        self._job_done()

    def _job_done(self) -> None:
        """The running job finished (its result is applied): edits may go on; a save asked for
        meanwhile runs now, on the plan as it is now."""
        self.busy = ""
        queued, self._save_next = self._save_next, None
        if queued is not None:
            self.save_plan(*queued)

    # Actions: filters and search -----------------------------------------------------------------
    def _set_filter(self, **changes: Any) -> None:
        if self.state is None:
            return
        self.state.set_filter(**changes)
        self.refresh_all()

    def action_filter_problems(self) -> None:
        if self.state is not None:
            self._set_filter(problems=not self.state.filter.problems)

    def action_filter_pending(self) -> None:
        if self.state is not None:
            self._set_filter(pending=not self.state.filter.pending)

    def action_filter_module(self) -> None:
        if self.state is None:
            return
        if self.state.filter.module:
            self._set_filter(module="")
            return
        row = self.target_tree.current_row
        if row is not None:
            self._set_filter(module=row.prefixes[0] if len(row.prefixes) == 1 else row.key)

    def action_clear_filter(self) -> None:
        search = self.query_one("#search", Input)
        if search.display:
            search.display = False
            self.target_tree.focus()
        if self.state is not None and self.state.filter.active:
            self.state.clear_filter()
            self.refresh_all()

    def action_search(self) -> None:
        search = self.query_one("#search", Input)
        search.display = True
        if self.state is not None:
            search.value = self.state.filter.search
        search.focus()

    @on(Input.Submitted, "#search")
    def _search_submitted(self, event: Input.Submitted) -> None:
        event.input.display = False
        self._set_filter(search=event.value.strip())
        self.target_tree.focus()

    def action_toggle_details(self) -> None:
        pane = self.query_one(DetailsPane)
        pane.display = not pane.display
        self._place_plots()

    # Actions: files ------------------------------------------------------------------------------
    def action_save(self) -> None:
        from .save import SavePlanScreen

        if self.state is None:
            return

        def chosen(path: str | None) -> None:
            if path:
                self.save_plan(Path(path))

        self.app.push_screen(SavePlanScreen(str(self.config.plan_path)), chosen)

    def save_plan(self, path: Path, then_quit: bool = False) -> None:
        """Save the plan as it is now to `path` (then quit, with `then_quit`): the snapshot is
        taken here on the UI thread, a worker writes it with `Plan.save` (as `ckpt map -o` and
        `ckpt plan` do). While another job runs, the save waits for it to finish."""
        if self.state is None:
            return
        if self.busy:
            self._save_next = (path, then_quit)
            self.notify(f"Saving when {self.busy} is done.", timeout=3)
            return
        self.busy = f"saving the plan to {path.name}"
        self.write_plan(self.state.snapshot(), path, then_quit)

    @work(thread=True, exclusive=True, group="save", description="save the plan")
    def write_plan(self, plan: Plan, path: Path, then_quit: bool) -> None:
        try:
            plan.save(path)
        except (OSError, PlanError) as e:
            self.post_message(msg.SaveFailed(str(e)))
        else:
            self.post_message(msg.PlanSaved(str(path), then_quit))

    def on_plan_saved(self, message: msg.PlanSaved) -> None:
        assert self.state is not None
        path = Path(message.path)
        self.state.mark_saved()  # edits waited: the plan is the snapshot that was saved
        self.config.plan_path = path
        if message.then_quit:
            self.app.exit(0)
            return
        self.refresh_header()
        self.notify(f"plan saved to {path.name}", timeout=3)
        self._job_done()

    def on_save_failed(self, message: msg.SaveFailed) -> None:
        self.notify(message.error, title="Plan not saved", severity="error")
        self._job_done()

    def action_write(self) -> None:
        from .write import WriteConfirmScreen, write_summary

        if self.state is None or self.busy:
            return
        if self.config.output is None:
            self.notify("No output path: start with -o OUT.", severity="error")
            return
        summary = write_summary(self.state, self.config.output)
        self.app.push_screen(WriteConfirmScreen(summary), self._confirmed)

    def _confirmed(self, accept_proposed: bool | None) -> None:
        from .write import ProgressScreen

        if accept_proposed is None or self.config.output is None:
            return
        assert self.state is not None
        worker = self.write_output(self.state.snapshot(), self.config.output, accept_proposed)
        self.app.push_screen(ProgressScreen(self.config.output.name, worker))

    @work(thread=True, exclusive=True, group="write", description="write the output")
    def write_output(self, plan: Plan, out: Path, accept_proposed: bool) -> None:
        worker = get_current_worker()

        def progress(done: int, total: int) -> None:
            if worker.is_cancelled:
                raise jobs.WriteCancelled()
            self.post_message(msg.WriteProgress(done, total))

        try:
            self.post_message(jobs.write(plan, out, accept_proposed, progress))
        except jobs.WriteCancelled:
            self.post_message(msg.WriteFailed("cancelled: nothing was written", cancelled=True))
        except (WriteError, PlanError, CheckpointError, OSError) as e:
            self.post_message(msg.WriteFailed(str(e)))

    def on_write_progress(self, message: msg.WriteProgress) -> None:
        from .write import ProgressScreen

        if isinstance(self.app.screen, ProgressScreen):
            self.app.screen.progress(message.done, message.total)

    def on_write_finished(self, message: msg.WriteFinished) -> None:
        from .write import ProgressScreen, ResultScreen

        self.last_report = message
        if isinstance(self.app.screen, ProgressScreen):
            self.app.pop_screen()
        self.app.push_screen(ResultScreen(message))

    def on_write_failed(self, message: msg.WriteFailed) -> None:
        from .write import ProgressScreen

        if isinstance(self.app.screen, ProgressScreen):
            self.app.pop_screen()
        if message.cancelled:
            self.notify(message.error, title="Write cancelled", severity="warning", timeout=10)
        else:
            self.notify(message.error, title="Write failed", severity="error", timeout=10)

    # Help, quit, command palette -----------------------------------------------------------------
    def action_help(self) -> None:
        from .help import HelpScreen

        self.app.push_screen(HelpScreen())

    def action_quit_app(self) -> None:
        from .quit import QuitScreen

        if self.busy:  # a rule change not yet applied, or a save not yet written
            self.notify(f"Wait: {self.busy} (ctrl+q quits at once).", severity="warning")
            return
        if self.state is None or not self.state.dirty:
            self.app.exit(0)
            return

        def answer(choice: str | None) -> None:
            if choice == "save" and self.config.plan_path is not None:
                self.save_plan(self.config.plan_path, then_quit=True)
            elif choice == "quit":
                self.app.exit(0)

        self.app.push_screen(QuitScreen(self.state.unsaved_edits), answer)

    def system_commands(self) -> Iterable[SystemCommand]:
        """Every binding as a command of the palette (ctrl+p), with its line of help."""
        for binding in self.BINDINGS:
            assert isinstance(binding, Binding)
            action = getattr(self, f"action_{binding.action}")
            yield SystemCommand(binding.description, _COMMAND_HELP[binding.action], action)


# One line per action for the command palette (and the help screen).
_COMMAND_HELP = {
    "help": "keys, legend and what each mark means",
    "search": "show only names matching a substring or wildcard",
    "approve": "approve the target row under the cursor, or its whole subtree",
    "reject": "reject the row or subtree: the target keeps its own init",
    "candidates": "pick another source for the row from its ranked candidates",
    "rules": "add, edit or remove a rule, previewing the rows it changes",
    "filter_problems": "toggle: only problem rows (keep their init with no declared reason)",
    "filter_pending": "toggle: only proposed rows that would change the output (copy, drop)",
    "filter_module": "toggle: only the module under the cursor",
    "clear_filter": "show everything again",
    "undo": "undo the last decision",
    "redo": "redo what was undone",
    "save": "save the plan as YAML (ckpt apply can use it)",
    "write": "write the output: confirmation, progress, verification, report",
    "toggle_details": "show or hide the details pane",
    "quit_app": "quit (asks first when decisions are unsaved)",
}
