"""Waiting in Textual pilot tests on conditions, never on timing.

`pilot.pause()` waits until the process looks idle (a CPU-time heuristic with a 1 s cap): under
load a key's follow-up messages or a worker can still be pending after it. These helpers wait
until the app says its work is done: no worker left, the details loaded, a preview shown.
"""

from __future__ import annotations

from collections.abc import Callable
from time import monotonic
from typing import Any

from textual.worker import WorkerCancelled

TIMEOUT = 60.0  # generous: a loaded CI machine is slow, a hang still fails


async def until(pilot: Any, condition: Callable[[], bool], what: str) -> None:
    """Let the app run until `condition()` holds; fail naming `what` after TIMEOUT."""
    deadline = monotonic() + TIMEOUT
    while not condition():
        if monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.01)


async def settled(pilot: Any) -> None:
    """The app has loaded, no worker runs (twice in a row: a finished worker's message can start
    another), the details pane has what it shows and the header is current."""
    app = pilot.app
    await until(pilot, lambda: app.review.state is not None, "the checkpoints to load")
    quiet = 0
    while quiet < 2:
        try:
            await app.workers.wait_for_complete()
        except WorkerCancelled:  # an exclusive worker replaced by a newer one: wait for that
            quiet = 0
            continue
        await pilot.pause()
        busy = (len(app.workers) > 0 or not app.review.details_complete
                or not app.review.header_current)
        quiet = 0 if busy else quiet + 1
        if busy:
            await until(pilot, lambda: app.review.details_complete, "the details pane")
            await until(pilot, lambda: app.review.header_current, "the header")


async def previewed(pilot: Any) -> None:
    """The rule editor shows the preview of the text as typed now."""
    await until(pilot, lambda: pilot.app.screen.preview_settled, "the rule preview")
    await settled(pilot)
