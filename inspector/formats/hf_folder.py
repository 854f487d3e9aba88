"""Hugging Face model folders: `config.json` plus safetensors or pytorch_model.bin weights.

The weights are read by the safetensors and torch zip readers; this module only picks the
weight files the way transformers does and keeps the parsed config.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..containers import detect_root, dotted, iter_tensors, subtree
from ..errors import HeaderError, UnsupportedFormatError
from ..model import Storage, TensorInfo
from ..sources import opened
from . import Loaded, ReadOptions
from .safetensors import MAX_HEADER_SIZE, parse_json_object, read_tensors
from .safetensors_index import read_index

FORMAT = "hf"
CONFIG = "config.json"

WeightsReader = Callable[[Path, ReadOptions], Loaded]


def _safetensors_single(path: Path, options: ReadOptions) -> Loaded:
    tensors, meta = read_tensors(path)
    return Loaded(FORMAT, tensors, {"safetensors_metadata": meta}, root=())


def _safetensors_index(path: Path, options: ReadOptions) -> Loaded:
    return read_index(path, read_tensors, FORMAT)


def _bin_single(path: Path, options: ReadOptions) -> Loaded:
    tensors, meta = torch_zip_tensors(path, options)
    notes = meta.pop("notes")
    return Loaded(FORMAT, tensors, meta, notes, root=())


def _bin_index(path: Path, options: ReadOptions) -> Loaded:
    return read_index(path, lambda shard: torch_zip_tensors(shard, options), FORMAT)


# Weight files in the order transformers prefers them; the glob rows cover other libraries'
# names (diffusers `diffusion_pytorch_model.*`, PEFT `adapter_model.*`) when exactly one matches.
WEIGHT_FILES: tuple[tuple[str, WeightsReader], ...] = (
    ("model.safetensors", _safetensors_single),
    ("model.safetensors.index.json", _safetensors_index),
    ("pytorch_model.bin", _bin_single),
    ("pytorch_model.bin.index.json", _bin_index),
    ("*.safetensors.index.json", _safetensors_index),
    ("*.safetensors", _safetensors_single),
    ("*.bin.index.json", _bin_index),
    ("*.bin", _bin_single),
)


def sniff(path: Path, head: bytes) -> bool:
    if not (path.is_dir() and (path / CONFIG).is_file()):
        return False
    return any(_matches(path, pattern) for pattern, _ in WEIGHT_FILES)


def read(path: Path, options: ReadOptions) -> Loaded:
    config = _config(path / CONFIG)
    weights, reader = _weights(path)
    loaded = reader(weights, options)
    loaded.metadata = {"config": config, "weights": weights.name, **loaded.metadata}
    return loaded


def _matches(folder: Path, pattern: str) -> list[Path]:
    return sorted(p for p in folder.glob(pattern) if p.is_file())


def _weights(folder: Path) -> tuple[Path, WeightsReader]:
    for pattern, reader in WEIGHT_FILES:
        found = _matches(folder, pattern)
        if len(found) == 1:
            return found[0], reader
        if len(found) > 1:
            names = ", ".join(p.name for p in found)
            raise UnsupportedFormatError(
                folder, f"several weight files and no index to choose between them: {names}"
            )
    raise UnsupportedFormatError(folder, f"{CONFIG} found but no weight files next to it")


def _config(path: Path) -> dict[str, Any]:
    with opened(path) as src:
        if src.size > MAX_HEADER_SIZE:
            raise HeaderError(
                path, f"config is {src.size} bytes, over the {MAX_HEADER_SIZE}-byte cap"
            )
        text = src.read(0, src.size)
    return parse_json_object(os.fspath(path), text, "config")


def torch_zip_tensors(
    path: Path, options: ReadOptions
) -> tuple[dict[str, TensorInfo], dict[str, Any]]:
    """The flat weights of a torch zip file, storage keys prefixed with the file name.

    The prefix keeps storages of different shards apart: every torch file numbers its records
    from 0, and equal keys would show unrelated tensors as tied.
    """
    from . import torch_zip  # imported here: this module must load even where that one is absent

    loaded = torch_zip.read(path, options)
    root = loaded.root if loaded.root is not None else detect_root(loaded.tree)
    renamed: dict[str, Storage] = {}
    tensors = {}
    for p, t in iter_tensors(subtree(loaded.tree, root)):
        storage = renamed.get(t.storage.key)
        if storage is None:
            storage = replace(t.storage, key=f"{path.name}:{t.storage.key}")
            renamed[t.storage.key] = storage
        tensors[dotted(p)] = replace(t, storage=storage)
    notes = [f"{path.name}: {n}" for n in loaded.notes]
    return tensors, {"torch_metadata": loaded.metadata, "notes": notes}
