"""What a writer writes: the target's container tree with output tensors as leaves.

An `OutTensor` is a strided view of an `OutStorage` (so tied tensors stay tied and torch views keep
their layout) and also knows how to produce its own logical values (`value`, for formats that
store each tensor contiguously). Both are described by producers: nothing is read until a writer
runs them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ..containers import iter_leaves
from ..model import Checkpoint, TreePath
from .produce import Producer


@dataclass(eq=False)
class OutStorage:
    key: str  # unique within the output (the target's storage key, or "new:<tensor name>")
    dtype: str
    nbytes: int
    producer: Producer  # every byte of the storage, in order


@dataclass(eq=False)
class OutTensor:
    name: str
    dtype: str
    shape: tuple[int, ...]
    strides: tuple[int, ...]
    storage_offset: int
    storage: OutStorage
    value: Producer  # the logical tensor in C order
    is_parameter: bool = False
    requires_grad: bool = False
    changed: bool = False  # its values come from a source, not from the target


@dataclass
class Output:
    """The output to write: `tree` (leaves OutTensor), the weights `root`, and the checkpoint it
    was derived from (its format, metadata and files are mirrored)."""

    tree: Any
    root: TreePath
    tensors: dict[str, OutTensor]
    base: Checkpoint
    notes: list[str] = field(default_factory=list)
    # Calls to globals the safe reader did not recognise as data (os.system(...)) are written
    # back only when the user opted in; otherwise the pickler refuses them.
    keep_unknown_globals: bool = False

    def storages(self) -> list[OutStorage]:
        """Every storage reached from the whole tree, in first-use order."""
        seen: dict[int, OutStorage] = {}
        for _, t in iter_out_tensors(self.tree):
            seen.setdefault(id(t.storage), t.storage)
        return list(seen.values())


def iter_out_tensors(tree: Any, prefix: TreePath = ()) -> Iterator[tuple[TreePath, OutTensor]]:
    return iter_leaves(tree, OutTensor, prefix)
