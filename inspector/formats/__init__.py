"""Readers, one module per format, behind one small interface.

A reader module defines:

    FORMAT: str                                     # name shown to users ("safetensors", ...)
    def sniff(path: Path, head: bytes) -> bool      # cheap: path and its first 512 bytes
    def read(path: Path, options: ReadOptions) -> Loaded

A reader of single files may also define `sniff_source(name: str, head: bytes) -> bool`; its
`read` then takes a `sources.Source` for `path` as well (`inspector.open(source)`). Readers reach
bytes only through `sources` (`opened(path)`: read at an offset, view, size, name), never by
opening or mapping files themselves.

`read` returns the container tree with `TensorInfo` leaves (their `name` may be empty: `open()`
names them after choosing the weights root) and never reads tensor data. Readers know nothing of
the CLI or the TUI. Order matters in `READERS`: the first whose `sniff` says yes reads the file.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from ..errors import HeaderError
from ..model import TreePath


@dataclass(frozen=True)
class ReadOptions:
    strict: bool = False  # unsupported pickle globals become errors instead of records
    cache_dir: Path | None = None  # where compressed archives (.nemo as tar.gz) are expanded


@dataclass
class Loaded:
    format: str
    tree: Any
    metadata: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    root: TreePath | None = None  # the reader knows where the weights are (else: detected)


# Module names under inspector.formats, most specific first.
READERS = (
    "nemo",
    "nemo_folder",
    "dcp",
    "hf_folder",
    "safetensors_index",
    "safetensors",
    "torch_zip",
    "torch_legacy",
)


def reader_modules() -> list[ModuleType]:
    """The reader modules that exist in this build (a missing one is simply not offered)."""
    mods = []
    for name in READERS:
        try:
            mods.append(importlib.import_module(f"{__name__}.{name}"))
        except ModuleNotFoundError as e:
            if e.name != f"{__name__}.{name}":
                raise
    return mods


def check_names(names: Iterable[str], path: Path | None) -> None:
    """Refuse a tensor name no file or terminal can hold (a lone surrogate: JSON `\\ud800`, a
    pickle's surrogatepass string), as the safetensors reference implementation does."""
    names = list(names) if not isinstance(names, list) else names
    if all(map(str.isascii, names)):
        return
    for name in names:
        try:
            name.encode("utf-8")
        except UnicodeEncodeError as e:
            shown = name.encode("utf-8", "backslashreplace").decode("utf-8")
            raise HeaderError(path, f"tensor name is not valid Unicode ({e.reason} at position "
                                    f"{e.start})", key=shown) from None
