"""A checkpoint's signature: tensor names, shapes and dtypes, as three parallel columns.

That is all a header-only diff (or any name/shape check) needs. A reader that can produce it
without building a `TensorInfo` per tensor offers `signature(path)` next to `read(path, options)`
(safetensors, single and sharded, do: a 1M-tensor header becomes three lists in C++); for every
other source the signature is taken from `inspector.open(...)`. Readers stay the only place that
knows formats: this module only asks them.
`Signature` itself lives in `inspector.model`, so a reader builds one without importing this
module (which imports `inspector.reader`, and so the readers).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .model import Checkpoint, Signature
from .reader import is_remote, open_checkpoint, pick_reader, split_root

FastReader = Callable[[Path], "Signature"]


def signature(source: Any, *, root: str | None = None) -> Signature:
    """The signature of a path, a Checkpoint, a state dict or a module.

    A path whose reader has a fast `signature()` is read by it (only when no `root` is asked
    for: those formats are flat); anything else goes through `inspector.open(source, root=root)`.
    Bad input raises the same errors as `inspector.open`.
    """
    source, root = split_root(source, root)
    if isinstance(source, Checkpoint) and root is None:
        return Signature.of(source)
    if isinstance(source, (str, os.PathLike)) and root is None and not is_remote(source):
        path = Path(source)
        fast = _fast_reader(path)
        if fast is not None:
            return fast(path)
    return Signature.of(open_checkpoint(source, root=root))


def _fast_reader(path: Path) -> FastReader | None:
    """The `signature` function of the reader `open()` would pick, if it has one."""
    fast: FastReader | None = getattr(pick_reader(path), "signature", None)
    return fast
