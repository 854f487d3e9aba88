"""A source with a name prefix: the one definition of the `(prefix, source)` pair that propose,
plans, `ckpt map` and the TUI take, and of its command-line form `PREFIX=PATH`.

    split_source(("encoder.", "enc.pt"))   # ("encoder.", "enc.pt")
    split_source("enc.pt")                 # ("", "enc.pt")
    parse_source("encoder.=enc.pt")        # ("encoder.", "enc.pt"), unless that file exists
"""

from __future__ import annotations

import os
from typing import Any

from ..reader import split_root

SEPARATOR = "="


def is_prefixed(item: Any) -> bool:
    """True for a `(prefix, source)` pair (a 2-tuple whose first item is a str)."""
    return isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str)


def split_source(item: Any) -> tuple[str, Any]:
    """`(prefix, source)` of a pair; `("", item)` for anything else (a path, a Checkpoint)."""
    return item if is_prefixed(item) else ("", item)


def with_prefix(prefix: str, source: Any) -> Any:
    """The pair, or the source alone when there is no prefix."""
    return (prefix, source) if prefix else source


def parse_source(arg: str) -> tuple[str, str]:
    """A command-line source: `PREFIX=PATH` -> `(PREFIX, PATH)`. An argument that names an
    existing file (a `::ROOT` after it allowed), has no `=`, or an empty prefix is a plain path,
    `("", arg)`."""
    prefix, eq, path = arg.partition(SEPARATOR)
    if not eq or not prefix or os.path.exists(str(split_root(arg)[0])):
        return "", arg
    return prefix, path
