"""Quitting with unsaved decisions asks first."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static


class QuitScreen(ModalScreen[str | None]):
    """Returns "save" (save the plan, then quit), "quit", or None (stay)."""

    BINDINGS = [
        Binding("s", "choose('save')", "Save and quit"),
        Binding("y,q", "choose('quit')", "Quit without saving"),
        Binding("escape,n", "choose('')", "Stay"),
    ]

    def __init__(self, edits: int):
        super().__init__()
        self.edits = edits

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static("[b]Unsaved decisions[/b]", classes="title")
            yield Static(
                f"{self.edits} change(s) to the plan are not saved.\n\n"
                "[b]s[/b] save the plan and quit   [b]y[/b] quit without saving   [b]esc[/b] stay"
            )

    def action_choose(self, choice: str) -> None:
        self.dismiss(choice or None)
