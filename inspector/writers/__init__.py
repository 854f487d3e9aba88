"""Writers, one module per output format, chosen by the output's suffix or an explicit format.

    write(out: Output, path, *, threads=None, progress=None)   # path: a temp file or folder

`FORMATS` says which module writes a format and whether its output is a folder; `SUFFIXES` maps
file suffixes to formats. A path without a known suffix gets the target's own format.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from ..errors import WriteError


@dataclass(frozen=True)
class Format:
    module: str  # under inspector.writers
    folder: bool  # the output is a folder (written into a temp folder, renamed as a whole)
    function: str = "write"
    pickles: bool = True  # writes the target's container tree as a pickle (non-tensor values too)
    shards: bool = False  # takes `shards=N` (rank files of a DCP checkpoint)


FORMATS = {
    "torch-zip": Format("torch_zip", False),
    "safetensors": Format("safetensors", False, pickles=False),
    "safetensors-sharded": Format("safetensors", True, "write_sharded", pickles=False),
    "nemo": Format("nemo", False),
    "hf": Format("hf_folder", True),
    "dcp": Format("dcp", True, shards=True),
}

# Reader format names -> the writer format that reproduces them.
SAME_AS_TARGET = {
    "torch-zip": "torch-zip",
    "torch-legacy": "torch-zip",
    "safetensors": "safetensors",
    "safetensors-sharded": "safetensors-sharded",
    "nemo": "nemo",
    # An extracted .nemo folder: its weights file, model_weights.ckpt, is a torch zip.
    "nemo-folder": "torch-zip",
    "hf": "hf",
    "memory": "torch-zip",
    "dcp": "dcp",
}

SUFFIXES = {
    ".pt": "torch-zip",
    ".pth": "torch-zip",
    ".ckpt": "torch-zip",
    ".bin": "torch-zip",
    ".safetensors": "safetensors",
    ".nemo": "nemo",
}


def choose_format(out_path: str | os.PathLike[str], target_format: str,
                  explicit: str | None = None) -> str:
    """The output format: explicit, else by suffix, else DCP for an existing DCP folder, else
    the target's own."""
    if explicit is not None:
        if explicit not in FORMATS:
            raise WriteError(f"unknown output format {explicit!r} (known: {', '.join(FORMATS)})")
        return explicit
    if (Path(out_path) / ".metadata").is_file():
        return "dcp"  # replacing a DCP checkpoint folder (never an input: atomic_path checks)
    by_suffix = SUFFIXES.get(Path(out_path).suffix.lower())
    if by_suffix is not None:
        return by_suffix
    same = SAME_AS_TARGET.get(target_format)
    if same is None:
        raise WriteError(f"{out_path}: cannot tell the output format; give --format")
    return same


def writer(fmt: str) -> tuple[Format, ModuleType]:
    spec = FORMATS[fmt]
    return spec, importlib.import_module(f"{__name__}.{spec.module}")
