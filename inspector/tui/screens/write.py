"""`w`: confirmation (what is written where), progress with cancel, then the result."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import ProgressBar, Static

from ... import humanize
from ...mapping.plan import is_pending
from ..messages import WriteFinished
from ..state import ReviewState

# Output format by the output's suffix (a folder: an HF model folder).
FORMATS = {
    ".nemo": "NeMo archive (.nemo)",
    ".pt": "torch zip (.pt)",
    ".pth": "torch zip (.pth)",
    ".ckpt": "torch zip (.ckpt)",
    ".bin": "torch zip (.bin)",
    ".safetensors": "safetensors",
    "": "HF model folder",
}


@dataclass(frozen=True)
class WriteSummary:
    output: str  # shown by name
    folder: str  # where it goes: relative to the working folder, or with ~ for home
    format: str
    copied: int  # approved rows that take a source's value
    copied_bytes: int
    pending: int  # rows still proposed that would change the output (mapping.plan.is_pending)
    pending_copies: int
    pending_bytes: int
    kept: int  # rows that keep the target's own tensor
    exists: bool
    # undecided ambiguous rows (mapping.plan.is_ambiguous): they keep the target's init; with
    # the pending rows accepted they are written so (skip_ambiguous), never chosen silently
    ambiguous: int = 0


def write_summary(state: ReviewState, output: Path) -> WriteSummary:
    copied = copied_bytes = pending = pending_copies = pending_bytes = kept = 0
    for name, e in state.plan.entries.items():
        info = state.target_tensors.get(name)
        nbytes = info.nbytes if info is not None else 0
        if is_pending(e):  # what ckpt apply refuses without --accept-proposed
            pending += 1
            if e.effective == "copy":
                pending_copies += 1
                pending_bytes += nbytes
        elif e.effective == "copy":
            copied += 1
            copied_bytes += nbytes
        else:
            kept += 1
    fmt = FORMATS.get(output.suffix, f"the target's format ({output.suffix})")
    return WriteSummary(output.name, display_folder(output.parent), fmt, copied, copied_bytes,
                        pending, pending_copies, pending_bytes, kept, output.exists(),
                        len(state.plan.ambiguous()))


def display_folder(folder: Path) -> str:
    """The folder as a user reads it: `./sub` under the working folder, `~/x` under home."""
    folder = folder.resolve()
    for base, prefix in ((Path.cwd().resolve(), "."), (Path.home().resolve(), "~")):
        if folder == base or base in folder.parents:
            rel = folder.relative_to(base).as_posix()
            return prefix + "/" + ("" if rel == "." else rel)
    return folder.as_posix()


def summary_text(s: WriteSummary, accept: bool) -> Text:
    out = Text()
    out.append("Write ")
    out.append(s.output, style="bold")
    out.append(f"  ({s.format})\n")
    out.append(f"in {s.folder}\n\n")
    copies, nbytes = s.copied, s.copied_bytes
    if accept:
        copies, nbytes = copies + s.pending_copies, nbytes + s.pending_bytes
    out.append(f"{copies} tensor(s) changed, {humanize.nbytes(nbytes)} copied from the source(s)\n")
    out.append("every other tensor, the config and other members are kept as in the target\n")
    if s.pending:
        style = "yellow" if accept else "bold red"
        verb = "accepted as proposed" if accept else "not reviewed: writing is refused"
        out.append(f"\n{s.pending} row(s) still pending ({s.pending_copies} copies): {verb}\n",
                   style=style)
        out.append("a: toggle accepting the pending rows as proposed\n", style="dim")
    if s.ambiguous:
        out.append(f"\n{s.ambiguous} ambiguous row(s) (equally good sources, none chosen) keep "
                   "the target's init", style="yellow")
        out.append(": skipped\n" if accept else "\n", style="yellow")
        out.append("pick their source with c, or reject them with r\n", style="dim")
    if s.exists:
        out.append(f"\n{s.output} exists and will be replaced (atomically)\n", style="yellow")
    out.append("\nenter / y: write   esc / n: cancel", style="bold")
    return out


class WriteConfirmScreen(ModalScreen[bool | None]):
    """Returns accept_proposed (False / True) to write, None to cancel."""

    BINDINGS = [
        Binding("enter,y", "confirm", "Write"),
        Binding("a", "toggle_accept", "Accept pending"),
        Binding("escape,n", "cancel", "Cancel"),
    ]

    def __init__(self, summary: WriteSummary):
        super().__init__()
        self.summary = summary
        self.accept = False

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static("[b]Confirm write[/b]", classes="title")
            yield Static(summary_text(self.summary, self.accept), id="write-summary")

    def action_toggle_accept(self) -> None:
        self.accept = not self.accept
        self.query_one("#write-summary", Static).update(summary_text(self.summary, self.accept))

    def action_confirm(self) -> None:
        if self.summary.pending and not self.accept:
            self.notify("Review the pending rows, or press a to accept them as proposed.",
                        severity="warning")
            return
        self.dismiss(self.accept)

    def action_cancel(self) -> None:
        self.dismiss(None)


class ProgressScreen(ModalScreen[None]):
    """Shown while the write worker runs; escape cancels it (nothing is left behind)."""

    BINDINGS = [Binding("escape,c", "cancel_write", "Cancel")]

    def __init__(self, output: str, worker: Any):
        super().__init__()
        self.output, self.worker = output, worker

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(f"[b]Writing[/b] {self.output}", classes="title")
            yield ProgressBar(total=None, id="write-progress", show_eta=False)
            yield Static("esc: cancel (nothing is left at the destination)", classes="hint")

    def progress(self, done: int, total: int) -> None:
        self.query_one(ProgressBar).update(total=max(total, 1), progress=done)

    def action_cancel_write(self) -> None:
        self.worker.cancel()
        self.query_one(".hint", Static).update("cancelling…")


class ResultScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,enter,q", "dismiss", "Close")]

    def __init__(self, result: WriteFinished):
        super().__init__()
        self.result = result

    def compose(self) -> ComposeResult:
        r = self.result
        head = Text()
        head.append("✓ verified" if r.verified else "✗ verification failed",
                    style="bold green" if r.verified else "bold red")
        head.append(f"  {Path(r.output).name}\n")
        head.append(r.verification)
        with Vertical(classes="dialog wide"):
            yield Static("[b]Written[/b]", classes="title")
            yield Static(head, id="verification")
            with VerticalScroll(id="report-box"):
                yield Static(Text(r.report), id="report")
            yield Static("enter / esc: close", classes="hint")
