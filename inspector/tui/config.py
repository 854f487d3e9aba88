"""What ckpt-tui was started with (`AppConfig`) and how its inputs and outputs are named.

A leaf of the TUI: the app builds a config, the open worker (`jobs.open_and_plan`) reads it, the
main screen shows its names. Nothing here imports the app, the screens or the jobs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..mapping.prefixed import SEPARATOR, is_prefixed

SourceSpec = Any  # a path, a Checkpoint, or a (prefix, path | Checkpoint) pair


@dataclass
class AppConfig:
    """Everything `create_app` was given; resolved into checkpoints by the open worker."""

    sources: list[SourceSpec]
    target: Any
    plan: Any = None  # a Plan, a plan file path, or None to propose
    output: Path | None = None
    rules: Any = None
    plan_path: Path | None = None  # where `s` saves
    layers: str | None = None  # `--layers SPEC`: rules added after `rules` (mapping.layersel)
    layers_prefix: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def default_output(target: Any) -> Path | None:
    """Next to the target with a `.migrated` suffix: `bpe.nemo` -> `bpe.migrated.nemo`."""
    path = getattr(target, "path", target)
    if not isinstance(path, (str, os.PathLike)):
        return None
    p = Path(path)
    if p.is_dir():
        return p.with_name(p.name + ".migrated")
    return p.with_name(f"{p.stem}.migrated{p.suffix}")


def default_plan_path(output: Path | None) -> Path:
    if output is None:
        return Path("plan.yaml")
    return output.with_name(f"{output.name.split('.')[0]}.plan.yaml")


def display_name(obj: Any) -> str:
    """A file by its name (never a temp path); an in-memory checkpoint by its format."""
    if is_prefixed(obj):
        return f"{obj[0]}{SEPARATOR}{display_name(obj[1])}"
    path = getattr(obj, "path", obj)
    if isinstance(path, (str, os.PathLike)):
        return Path(path).name
    fmt = getattr(obj, "format", None)
    return f"<{fmt}>" if fmt else "<memory>"
