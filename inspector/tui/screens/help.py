"""`?`: the keys and the legend of row marks."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from ..widgets.marks import SOURCE_MARKS, TARGET_MARKS

KEYS = (
    ("tab", "switch between source and target tree"),
    ("↑ ↓ ← → space", "move, collapse, expand"),
    ("a / r", "approve / reject the row or the whole subtree"),
    ("c", "pick another source from the ranked candidates"),
    ("e", "rules: add, edit, remove, with a live preview"),
    ("/", "search names (substring, or wildcard * ?)"),
    ("p / n / m", "filter: problems / pending / module under cursor"),
    ("escape", "clear filters"),
    ("u ctrl+z / U ctrl+y", "undo / redo"),
    ("s", "save the plan (YAML, for ckpt apply)"),
    ("w", "write the output (confirmation first)"),
    ("d", "show or hide the details pane"),
    ("ctrl+p", "command palette: every action by name"),
    ("q", "quit (asks when decisions are unsaved)"),
)


def help_table() -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    for key, what in KEYS:
        table.add_row(key, what)
    table.add_row("", "")
    for title, marks in (("target", TARGET_MARKS), ("source", SOURCE_MARKS)):
        for m in marks.values():
            table.add_row(Text(f"{title} {m.symbol}", style=m.style), m.meaning)
    return table


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,question_mark,q", "dismiss", "Close")]

    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="dialog"):
            yield Static("[b]ckpt-tui[/b]: review the mapping, then write", classes="title")
            yield Static(help_table())
