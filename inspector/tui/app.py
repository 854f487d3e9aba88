"""The ckpt-tui application: review a proposed mapping, correct it, approve it, write it.

A thin layer over the library: `inspector.open`, `mapping.propose`, `Plan` edits (through
`ReviewState`), `apply`. The app only opens its main screen, `screens.review.ReviewScreen`,
which holds the layout, the bindings and the handlers. Build the app with `create_app`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from textual.app import App, SystemCommand
from textual.screen import Screen

from ..mapping.prefixed import is_prefixed
from .config import AppConfig, SourceSpec, default_output, default_plan_path
from .screens.review import ReviewScreen


def create_app(
    sources: SourceSpec | Iterable[SourceSpec],
    target: Any,
    *,
    plan: Any = None,
    output: str | os.PathLike[str] | None = None,
    rules: Any = None,
    plan_path: str | os.PathLike[str] | None = None,
    layers: str | None = None,
    layers_prefix: list[str] | None = None,
) -> ReviewApp:
    """Build the review app. Nothing is read or written until the app runs."""
    if isinstance(sources, (list, tuple)) and not is_prefixed(sources):
        items = list(sources)
    else:
        items = [sources]
    out = Path(output) if output is not None else default_output(target)
    if plan_path is None and isinstance(plan, (str, os.PathLike)):
        plan_path = plan
    config = AppConfig(
        items,
        target,
        plan,
        out,
        rules,
        Path(plan_path) if plan_path else default_plan_path(out),
        layers,
        list(layers_prefix or []),
    )
    return ReviewApp(config)


class ReviewApp(App[int]):
    """The review app: it composes nothing itself but opens the main screen (`ReviewScreen`),
    where the layout, the key bindings and the handlers live; dialogs are pushed over it."""

    CSS_PATH = "app.tcss"
    TITLE = "ckpt-tui"

    def __init__(self, config: AppConfig):
        super().__init__()
        self.config = config
        self.review = ReviewScreen(config)

    def on_mount(self) -> None:
        self.push_screen(self.review)

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield from self.review.system_commands()
