"""Write an HF model folder: the target folder's other files copied byte for byte, the weights
re-written in the target's scheme (model.safetensors, a sharded index, or pytorch_model.bin)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from ..errors import WriteError
from ..io.atomic import copy_range
from ..sources import opened, opens_itself, storage_name
from . import safetensors, torch_zip
from .output import Output
from .stream import Progress


def weight_files(out: Output) -> set[str]:
    """Names (relative to the folder) of the files holding the target's weights."""
    root = storage_name(out.base.path) if out.base.path is not None else ""
    names = {p[len(root) + 1 :] for p in out.base.files if p.startswith(root + "/")}
    names.add(str(out.base.metadata.get("weights", "")))
    return names


def write(out: Output, dest: str | os.PathLike[str], *, threads: int | None = None,
          progress: Progress | None = None) -> None:
    """Write into the (existing, empty) folder `dest`."""
    dest = Path(dest)
    weights = str(out.base.metadata.get("weights", ""))
    skip = weight_files(out)
    for rel, src in _files(out.base.path or Path()):
        if rel not in skip:
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            _copy(src, dest / rel)
    if weights.endswith(".safetensors.index.json"):
        safetensors.write_sharded(out, dest, threads=threads, progress=progress,
                                  index_name=weights)
    elif weights.endswith(".safetensors"):
        safetensors.write(out, dest / weights, threads=threads, progress=progress)
    elif weights.endswith(".bin") and not weights.endswith(".index.json"):
        torch_zip.write(out, dest / weights, threads=threads, progress=progress)
    else:
        raise WriteError(f"{dest}: writing HF weights as {weights!r} is not supported yet "
                         "(sharded .bin); write safetensors instead (--format safetensors)")


def _files(folder: Path) -> Iterator[tuple[str, Path]]:
    """(name relative to `folder`, path) of every file under it, in name order; links are not
    followed (`iterdir`: a local folder, or one at a URL)."""
    for child in sorted(folder.iterdir()):
        if child.is_symlink():
            continue
        if child.is_dir():
            yield from ((f"{child.name}/{rel}", p) for rel, p in _files(child))
        elif child.is_file():
            yield child.name, child


_PIECE = 8 << 20


def _copy(src: Path, dst: Path) -> None:
    if opens_itself(src):  # a file at a URL: streamed in pieces
        with opened(src) as s, open(dst, "wb") as g:
            for at in range(0, s.size, _PIECE):
                g.write(s.read(at, min(_PIECE, s.size - at)))
        return
    size = src.stat().st_size
    with open(src, "rb") as f, open(dst, "wb") as g:
        copy_range(f.fileno(), 0, g.fileno(), 0, size)
