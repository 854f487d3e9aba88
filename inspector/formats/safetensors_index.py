"""Sharded checkpoints: a `*.index.json` whose `weight_map` names the shard file of each tensor.

The same index layout serves safetensors shards (`model.safetensors.index.json`) and torch zip
shards (`pytorch_model.bin.index.json`): `read_index` takes the shard reader as an argument.
Shard names come from the file, so they are checked to stay inside the index's folder. They
are checked lexically, not by resolving links: the Hugging Face cache keeps shards as symlinks
into a shared blob folder, and those must still open.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

from ..errors import DuplicateKeyError, HeaderError, MissingRecordError, UnsupportedFormatError
from ..model import Signature, TensorInfo
from ..sources import opened
from . import Loaded, ReadOptions
from . import safetensors as single
from .safetensors import MAX_HEADER_SIZE, parse_json_object, read_tensors

FORMAT = "safetensors-sharded"
INDEX_SUFFIX = ".safetensors.index.json"

# A shard reader: shard path -> (its tensors by name, format metadata worth keeping; a "notes"
# list in it becomes notes of the whole checkpoint).
ShardReader = Callable[[Path], tuple[dict[str, TensorInfo], dict[str, Any]]]


def sniff(path: Path, head: bytes) -> bool:
    if path.is_dir():
        return bool(index_files(path, INDEX_SUFFIX))
    return path.name.endswith(INDEX_SUFFIX) and path.is_file()


def read(path: Path, options: ReadOptions) -> Loaded:
    index = single_index(path, INDEX_SUFFIX) if path.is_dir() else path
    return read_index(index, read_tensors, FORMAT)


def signature(path: Path) -> Signature:
    """read()'s names, shapes and dtypes (its order, its checks) from the shards' columns."""
    index = single_index(path, INDEX_SUFFIX) if path.is_dir() else path
    weight_map, _ = load_index(index)
    shards = {
        rel: single.signature(shard_path(index, rel)) for rel in dict.fromkeys(weight_map.values())
    }
    rows = {rel: {n: i for i, n in enumerate(sig.names)} for rel, sig in shards.items()}
    names: list[str] = []
    shapes: list[tuple[int, ...]] = []
    dtypes: list[str] = []

    def add(sig: Signature, i: int) -> None:
        names.append(sig.names[i])
        shapes.append(sig.shapes[i])
        dtypes.append(sig.dtypes[i])

    for name, rel in weight_map.items():
        i = rows[rel].get(name)
        if i is None:
            raise MissingRecordError(
                shard_path(index, rel), f"listed in {index.name} but not in this shard", key=name
            )
        add(shards[rel], i)
    seen_in: dict[str, str] = dict(weight_map)
    for rel, sig in shards.items():
        for i, name in enumerate(sig.names):
            owner = seen_in.setdefault(name, rel)
            if owner != rel:
                raise DuplicateKeyError(
                    shard_path(index, rel), f"also stored in shard {owner}", key=name
                )
            if name not in weight_map:
                add(sig, i)
    return Signature(names, shapes, dtypes)


def index_files(folder: Path, suffix: str) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.name.endswith(suffix) and p.is_file())


def single_index(folder: Path, suffix: str) -> Path:
    found = index_files(folder, suffix)
    if len(found) != 1:
        names = ", ".join(p.name for p in found) or "none"
        raise UnsupportedFormatError(folder, f"expected one *{suffix} file, found {names}")
    return found[0]


def read_index(index: Path, read_shard: ShardReader, fmt: str) -> Loaded:
    """Read every shard an index names and check the index against the shards' contents."""
    weight_map, index_meta = load_index(index)
    shards = {rel: read_shard(shard_path(index, rel)) for rel in dict.fromkeys(weight_map.values())}
    tree: dict[str, TensorInfo] = {}
    for name, rel in weight_map.items():
        tensor = shards[rel][0].get(name)
        if tensor is None:
            raise MissingRecordError(
                shard_path(index, rel), f"listed in {index.name} but not in this shard", key=name
            )
        tree[name] = tensor
    unlisted = _add_unlisted(index, weight_map, shards, tree)
    notes = [n for _, meta in shards.values() for n in meta.pop("notes", [])]
    if unlisted:
        notes.append(f"{len(unlisted)} tensors in the shards are not listed in {index.name}")
    total = index_meta.get("total_size")
    actual = sum(t.nbytes for t in tree.values())
    if isinstance(total, int) and total != actual:
        notes.append(f"{index.name} declares total_size {total}, the tensors hold {actual} bytes")
    metadata = {
        "index": index.name,
        "index_metadata": index_meta,
        "shards": {rel: meta for rel, (_, meta) in shards.items()},
    }
    return Loaded(fmt, tree, metadata, notes, root=())


def _add_unlisted(
    index: Path,
    weight_map: dict[str, str],
    shards: dict[str, tuple[dict[str, TensorInfo], dict[str, Any]]],
    tree: dict[str, TensorInfo],
) -> list[str]:
    """Add tensors the index does not list; refuse a name that two shards both hold."""
    unlisted = []
    seen_in: dict[str, str] = dict(weight_map)
    for rel, (tensors, _) in shards.items():
        for name, tensor in tensors.items():
            owner = seen_in.setdefault(name, rel)
            if owner != rel:
                raise DuplicateKeyError(
                    shard_path(index, rel), f"also stored in shard {owner}", key=name
                )
            if name not in tree:
                tree[name] = tensor
                unlisted.append(name)
    return unlisted


def load_index(index: Path) -> tuple[dict[str, str], dict[str, Any]]:
    """The index's weight_map (tensor -> shard file) and its `metadata` object."""
    label = os.fspath(index)
    with opened(index) as src:
        if src.size > MAX_HEADER_SIZE:
            raise HeaderError(
                label, f"index is {src.size} bytes, over the {MAX_HEADER_SIZE}-byte cap"
            )
        text = src.read(0, src.size)
    doc = parse_json_object(label, text, "index")
    weight_map = doc.get("weight_map")
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
        raise HeaderError(label, "must be an object of tensor name -> shard file", key="weight_map")
    meta = doc.get("metadata") or {}
    if not isinstance(meta, dict):
        raise HeaderError(label, "must be an object", key="metadata")
    return weight_map, meta


def shard_path(index: Path, rel: str) -> Path:
    """The shard file `rel` names, refused when it could leave the index's folder."""
    label = os.fspath(index)
    parts = PurePosixPath(rel.replace("\\", "/")).parts
    if not rel or rel.startswith(("/", "\\")) or ".." in parts or ":" in rel:
        raise HeaderError(label, "shard path leaves the index's folder", key=rel)
    path = index.parent.joinpath(*parts)
    try:
        found = path.is_file()
    except OSError as e:  # a name past the file system's limits (ENAMETOOLONG), ...
        raise HeaderError(label, f"shard path cannot be looked up: {e.strerror}", key=rel) from None
    if not found:
        raise MissingRecordError(label, "shard file named in weight_map does not exist", key=rel)
    return path
