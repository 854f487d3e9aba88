"""`c`: pick another source for a target row from its ranked candidates."""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from ... import humanize


@dataclass(frozen=True)
class Choice:
    label: str
    name: str
    score: float
    why: str
    shape: tuple[int, ...] | None


def choice_text(c: Choice, target_shape: tuple[int, ...]) -> Text:
    fits = c.shape == target_shape
    out = Text()
    out.append(f"{c.score:.2f} ", style="bold")
    out.append(c.name)
    shape = humanize.shape(c.shape) if c.shape is not None else "?"
    out.append(f"  {shape}", style="green" if fits else "bold red")
    if not fits:
        out.append(" ≠ target", style="bold red")
    out.append(f"\n      {c.label}: {c.why}", style="dim")
    return out


class CandidatesScreen(ModalScreen[Choice | None]):
    BINDINGS = [Binding("escape", "cancel", "Cancel", priority=True)]

    def __init__(self, target: str, shape: tuple[int, ...], choices: list[Choice], *, folded: bool):
        super().__init__()
        self.target, self.shape, self.choices, self.folded = target, shape, choices, folded

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(f"[b]Source for[/b] {self.target} {humanize.shape(self.shape)}",
                         classes="title")
            if self.folded:
                yield Static("(a folded row: every layer takes this source in its own layer)",
                             classes="hint")
            yield OptionList(
                *(Option(choice_text(c, self.shape), id=str(i))
                  for i, c in enumerate(self.choices)),
                id="candidates",
            )
            yield Static("enter: use this source (approved)   esc: cancel", classes="hint")

    @on(OptionList.OptionSelected)
    def _selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(self.choices[event.option_index])

    def action_cancel(self) -> None:
        self.dismiss(None)
