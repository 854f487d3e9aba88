"""Write an HF model folder: the target folder's other files copied byte for byte, the weights
re-written in the target's scheme (model.safetensors, a sharded index, or pytorch_model.bin)."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import WriteError
from ..io.atomic import copy_range
from . import safetensors, torch_zip
from .output import Output
from .stream import Progress


def weight_files(out: Output) -> set[str]:
    """Names (relative to the folder) of the files holding the target's weights."""
    folder = Path(out.base.path or "")
    names = {os.path.relpath(p, folder) for p in out.base.files}
    names.add(str(out.base.metadata.get("weights", "")))
    return names


def write(out: Output, dest: str | os.PathLike[str], *, threads: int | None = None,
          progress: Progress | None = None) -> None:
    """Write into the (existing, empty) folder `dest`."""
    folder, dest = Path(out.base.path or ""), Path(dest)
    weights = str(out.base.metadata.get("weights", ""))
    skip = weight_files(out)
    for src in sorted(folder.rglob("*")):
        rel = src.relative_to(folder)
        if src.is_file() and not src.is_symlink() and str(rel) not in skip:
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


def _copy(src: Path, dst: Path) -> None:
    size = src.stat().st_size
    with open(src, "rb") as f, open(dst, "wb") as g:
        copy_range(f.fileno(), 0, g.fileno(), 0, size)
