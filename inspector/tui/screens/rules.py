"""`e`: add, edit or remove a rule, seeing which rows it changes before keeping it."""

from __future__ import annotations

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Input, OptionList, Static
from textual.widgets.option_list import Option
from textual.worker import get_current_worker

from ...errors import PlanError
from ...mapping.plan import Entry, Plan
from ..state import RuleResult, entry_text, parse_rule, rule_text

__all__ = ["RuleEditor", "RuleResult", "preview_text"]

PREVIEW_ROWS = 200  # rows listed in the preview; the count is always exact
NEW = "new"
RULE_HINT = "forms: a.*.b -> c.*.d · old -> new · re:PAT -> REPL · keep GLOB · drop GLOB · {yaml}"


def preview_text(changes: list[tuple[str, Entry, Entry]], labelled: bool = False) -> Text:
    """The rows a rule changes, old → new; `labelled`: say which source each row takes (a
    plan with several sources)."""
    out = Text(f"{len(changes)} row(s) change", style="bold")
    for target, old, new in changes[:PREVIEW_ROWS]:
        out.append(f"\n{target}\n", style="bold")
        out.append(f"  {entry_text(old, labelled)}", style="red")
        out.append(" → ")
        out.append(entry_text(new, labelled), style="green")
    if len(changes) > PREVIEW_ROWS:
        out.append(f"\n… and {len(changes) - PREVIEW_ROWS} more", style="dim")
    return out


class RuleEditor(ModalScreen[RuleResult | None]):
    BINDINGS = [
        Binding("escape", "cancel", "Cancel", priority=True),  # before the Input sees it
        Binding("ctrl+s", "keep", "Keep", priority=True),
        Binding("ctrl+d", "remove", "Remove rule", priority=True),
    ]

    def __init__(self, plan: Plan):
        """`plan`: a snapshot of the plan under review (`ReviewState.snapshot`); previews
        re-propose on it in a worker, and the result is applied to the plan on the UI thread."""
        super().__init__()
        self.plan = plan
        self.pending: RuleResult | None = None
        self.editing: int | None = None  # index of the rule being edited, None: a new rule
        # Every change of the text or the choice is a new request; a preview computed for an
        # older request is dropped, so a slow worker never overwrites a newer preview.
        self._request = 0
        self._shown = 0
        self._text: str | None = None  # the input text the latest request was made for

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide"):
            yield Static("[b]Rules[/b]: pick one to edit (ctrl+d removes it) or type a new one",
                         classes="title")
            yield OptionList(*self._options(), id="rule-list")
            yield Input(placeholder="a.*.b -> c.*.d   re:PAT -> REPL   keep GLOB   {yaml: rule}",
                        id="rule-input")
            yield Static(RULE_HINT, classes="hint", id="rule-forms")
            with VerticalScroll(id="preview-box"):
                yield Static("Type a rule to see which rows it changes.", id="preview")
            yield Static("enter / ctrl+s: keep   ctrl+d: remove selected rule   esc: cancel",
                         classes="hint")

    def _options(self) -> list[Option]:
        opts = [Option(Text("+ new rule", style="bold"), id=NEW)]
        for i, r in enumerate(self.plan.rules):
            opts.append(Option(f"{i + 1}. {rule_text(r)}", id=str(i)))
        return opts

    def on_mount(self) -> None:
        self.query_one("#rule-input", Input).focus()

    @on(OptionList.OptionSelected, "#rule-list")
    def _picked(self, event: OptionList.OptionSelected) -> None:
        box = self.query_one("#rule-input", Input)
        if event.option.id == NEW:
            self.editing = None
            box.value = ""
        else:
            self.editing = int(event.option.id or 0)
            box.value = rule_text(self.plan.rules[self.editing])
        box.focus()

    @property
    def preview_settled(self) -> bool:
        """True when the preview shown is the one for the current text (tests wait on it)."""
        current = self.query_one("#rule-input", Input).value.strip()
        return self._shown == self._request and self._text == current

    def _new_request(self, text: str) -> int:
        self._request += 1
        self._text = text
        self.pending = None
        return self._request

    @on(Input.Changed, "#rule-input")
    def _changed(self, event: Input.Changed) -> None:
        text = event.value.strip()
        request = self._new_request(text)
        if self.editing is not None and text == rule_text(self.plan.rules[self.editing]):
            # the rule as loaded: nothing to preview until it is changed or removed
            self._show(Text("Change the rule to preview it, or ctrl+d to remove it.", style="dim"),
                       request)
            return
        if not text:
            self._show(Text("Type a rule to see which rows it changes.", style="dim"), request)
            return
        try:
            rule = parse_rule(text)
        except PlanError as e:
            self._show(Text(str(e), style="red"), request)
            return
        kind = "add" if self.editing is None else "replace"
        self._preview(RuleResult(kind, rule, -1 if self.editing is None else self.editing), request)

    @on(Input.Submitted, "#rule-input")
    def _submitted(self) -> None:
        self.action_keep()

    def action_remove(self) -> None:
        if self.editing is None:
            self.notify("Pick a rule in the list first.", severity="warning")
            return
        text = self.query_one("#rule-input", Input).value.strip()
        self._preview(RuleResult("remove", None, self.editing), self._new_request(text))

    @work(thread=True, exclusive=True, group="rule-preview", description="preview the rule")
    def _preview(self, result: RuleResult, request: int) -> None:
        """Re-propose off the UI thread (10k tensors take a moment); nothing is changed."""
        try:
            changes = result.preview(self.plan)
        except PlanError as e:
            changes, error = [], str(e)
        else:
            error = ""
        if get_current_worker().is_cancelled:
            return  # the text changed meanwhile: a newer preview is on its way
        if error:
            self.app.call_from_thread(self._show, Text(error, style="red"), request)
        else:
            self.app.call_from_thread(self._previewed, result, changes, request)

    def _previewed(
        self, result: RuleResult, changes: list[tuple[str, Entry, Entry]], request: int
    ) -> None:
        if request != self._request:
            return  # computed for an older text: a newer preview is on its way
        self.pending = result
        head = {"add": "Adding", "replace": "Changing", "remove": "Removing"}[result.kind]
        text = Text(f"{head} this rule: ", style="bold cyan")
        text.append_text(preview_text(changes, labelled=len(self.plan.sources) > 1))
        self._show(text, request)

    def _show(self, text: Text, request: int) -> None:
        if request != self._request:
            return
        self.query_one("#preview", Static).update(text)
        self._shown = request

    def action_keep(self) -> None:
        if self.pending is None:
            self.notify("Nothing to keep yet: type a valid rule.", severity="warning")
            return
        self.dismiss(self.pending)

    def action_cancel(self) -> None:
        self.dismiss(None)
