"""Write safetensors files, single or sharded with `model.safetensors.index.json`.

The header is what the reference implementation writes: compact JSON, `__metadata__` first, then
the tensors sorted by dtype (widest first, the reference's enum order) and name, padded with
spaces to a multiple of 8 bytes. Tensors are written contiguous in C order (tied tensors are
written once per name: the format has no sharing).
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Mapping
from pathlib import Path

from .. import dtypes
from ..errors import WriteError
from ..io.atomic import open_output, pwrite_all
from .output import Output, OutTensor
from .stream import Job, Progress, run_jobs

INDEX_NAME = "model.safetensors.index.json"
DEFAULT_SHARD_BYTES = 5 * 10**9  # transformers' default max_shard_size ("5GB")


def st_dtype(t: OutTensor) -> str:
    code = dtypes.get(t.dtype).safetensors
    if code is None:
        raise WriteError(f"{t.name}: dtype {t.dtype} cannot be stored in safetensors")
    return code


def _rank(t: OutTensor) -> int:
    """Where the reference's Dtype enum puts the tensor's dtype (the dtypes table's column)."""
    rank = dtypes.get(t.dtype).safetensors_rank
    if rank is None:
        raise WriteError(f"{t.name}: dtype {t.dtype} cannot be stored in safetensors")
    return rank


def header_bytes(tensors: Mapping[str, OutTensor], metadata: Mapping[str, str] | None
                 ) -> tuple[bytes, list[tuple[str, OutTensor, int]]]:
    """The 8-byte length + padded JSON header, and (name, tensor, data offset) in file order."""
    order = sorted(tensors.items(), key=lambda kv: (-_rank(kv[1]), kv[0]))
    header: dict[str, object] = {}
    if metadata:
        header["__metadata__"] = dict(metadata)
    placed, pos = [], 0
    for name, t in order:
        header[name] = {"dtype": st_dtype(t), "shape": list(t.shape),
                        "data_offsets": [pos, pos + t.value.nbytes]}
        placed.append((name, t, pos))
        pos += t.value.nbytes
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text, placed


def write_file(tensors: Mapping[str, OutTensor], path: str | os.PathLike[str],
               metadata: Mapping[str, str] | None = None, *, threads: int | None = None,
               progress: Progress | None = None) -> None:
    head, placed = header_bytes(tensors, metadata)
    size = len(head) + sum(t.value.nbytes for _, t, _ in placed)
    fd = open_output(path)
    try:
        os.ftruncate(fd, size)
        pwrite_all(fd, head, 0)
        jobs = [Job(len(head) + off, t.value) for _, t, off in placed if t.value.nbytes]
        run_jobs(fd, jobs, threads=threads, progress=progress)
    finally:
        os.close(fd)


def write(out: Output, path: str | os.PathLike[str], *, threads: int | None = None,
          progress: Progress | None = None) -> None:
    """One safetensors file with the output's weights (the target's `__metadata__` kept)."""
    write_file(out.tensors, path, _metadata(out), threads=threads, progress=progress)


def _metadata(out: Output) -> dict[str, str] | None:
    meta = out.base.metadata.get("safetensors_metadata")
    if meta:
        return dict(meta)
    return {"format": "pt"}


def shard_names(out: Output, max_bytes: int = DEFAULT_SHARD_BYTES) -> dict[str, str]:
    """Which shard file each tensor goes to: the target's own when it was sharded, else in name
    order, cut at `max_bytes` as transformers does."""
    mirrored = {}
    for name in out.tensors:
        src = out.base.tensors.get(name)
        path = src.storage.source.path if src is not None else None
        mirrored[name] = Path(path).name if path else None
    if all(mirrored.values()) and len(set(mirrored.values())) > 1:
        return {k: v for k, v in mirrored.items() if v}
    groups: list[list[str]] = [[]]
    size = 0
    for name, t in out.tensors.items():
        if groups[-1] and size + t.value.nbytes > max_bytes:
            groups.append([])
            size = 0
        groups[-1].append(name)
        size += t.value.nbytes
    n = len(groups)
    return {name: f"model-{i + 1:05d}-of-{n:05d}.safetensors"
            for i, g in enumerate(groups) for name in g}


def write_sharded(out: Output, folder: str | os.PathLike[str], *, threads: int | None = None,
                  progress: Progress | None = None, index_name: str = INDEX_NAME,
                  max_bytes: int = DEFAULT_SHARD_BYTES) -> list[str]:
    """Shards + index into `folder` (which exists); returns the file names written."""
    folder = Path(folder)
    shards = shard_names(out, max_bytes)
    by_file: dict[str, dict[str, OutTensor]] = {}
    for name, t in out.tensors.items():
        by_file.setdefault(shards[name], {})[name] = t
    for fname, tensors in by_file.items():
        write_file(tensors, folder / fname, _metadata(out), threads=threads, progress=progress)
    total = sum(t.value.nbytes for t in out.tensors.values())
    index = {"metadata": {"total_size": total},
             "weight_map": {k: shards[k] for k in sorted(shards)}}
    (folder / index_name).write_text(json.dumps(index, indent=2) + "\n")
    return [*by_file, index_name]
