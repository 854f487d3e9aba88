"""Opening the checkpoints a command names: `PATH::ROOT` per input, `--root` as a default.

`PATH::ROOT` is parsed by `inspector.reader.split_root` (every command, the Python API too).
`--root KEY` on a command that reads several checkpoints is the root of each input that has
that sub-tree and names no root of its own; the others keep their detected root (a training
dict's `model` is not looked for inside a .nemo target). No input having it is an error.
"""

from __future__ import annotations

from ..containers import parse_root, subtree
from ..errors import CheckpointError
from ..model import Checkpoint
from ..reader import open_checkpoint, split_root, with_root


def open_inputs(args: list[str], root: str | None, *, strict: bool = False) -> list[Checkpoint]:
    """The checkpoints named by `args`, with `root` applied where it exists (see above)."""
    opened = [(split_root(a)[1] is not None, open_checkpoint(a, strict=strict)) for a in args]
    if root is None:
        return [c for _, c in opened]
    path = parse_root(root)
    fits = [not own and _has(c, path) for own, c in opened]
    if not any(fits):
        raise CheckpointError(
            ", ".join(args),
            "no input has this sub-tree (give it per input as PATH::ROOT)",
            key=root,
        )
    return [with_root(c, path) if fit else c for fit, (_, c) in zip(fits, opened, strict=True)]


def _has(ckpt: Checkpoint, path: tuple[str | int, ...]) -> bool:
    try:
        subtree(ckpt.tree, path)
    except (KeyError, IndexError, TypeError):
        return False
    return True


def file_of(arg: str) -> str:
    """The file an argument names, without its `::ROOT`."""
    return str(split_root(arg)[0])
