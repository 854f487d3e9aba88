"""Verify the tensors of a written DCP checkpoint that our reader lists as split into chunks.

While the DCP reader shows a tensor split over rank files as a record of its chunks (not as one
tensor), a `--shards N` output is verified chunk by chunk: each chunk's zip is read in place and
hashed (`ckh1`, as every tensor), and compared with the digest of the same rows of the value the
tensor should hold. A tensor the reader opens whole needs none of this.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import dtypes
from ..formats import ReadOptions
from ..formats.torch_zip import read_zip_at
from ..hashing import Digest
from ..model import Checkpoint, TensorInfo
from .produce import Producer, View, ViewValue, take_rows
from .verify import value_digest


def chunked(written: Checkpoint, names: list[str]) -> dict[str, list[dict[str, Any]]]:
    """Of `names` (relative to the weights root), those the reader lists as split: their
    chunks (offsets, sizes, file, offset, length)."""
    split = written.metadata.get("dcp", {}).get("sharded_tensors", {})
    prefix = "".join(f"{k}." for k in written.root or ())
    return {n: split[prefix + n]["chunks"] for n in names if prefix + n in split}


def verify_chunks(written: Checkpoint, folder: Path, chunks: dict[str, list[dict[str, Any]]],
                  expected: Callable[[str], Producer]) -> dict[str, list[str]]:
    """Mismatches by tensor name (empty: every chunk holds the expected rows)."""
    bad: dict[str, list[str]] = {}
    for name, parts in chunks.items():
        value = expected(name)
        for c in parts:
            got = _chunk_tensor(folder, c)
            if got is None:
                bad.setdefault(name, []).append(
                    f"{name}: chunk at {c['offsets']} in {c['file']} is not a tensor")
                continue
            r0 = c["offsets"][0] if c["offsets"] else 0
            want = take_rows(value, r0, r0 + (c["sizes"][0] if c["sizes"] else 1))
            if got.shape != tuple(want.shape) or got.dtype != want.dtype:
                bad.setdefault(name, []).append(
                    f"{name}: chunk at {c['offsets']} is {got.dtype}{list(got.shape)}")
            elif _digest(ViewValue(None, got.storage, View.of(got))) != _digest(want):
                bad.setdefault(name, []).append(
                    f"{name}: chunk at {c['offsets']} does not hold the expected rows")
    return bad


def _digest(value: Producer) -> Digest:
    """A plain view is hashed as its bytes (a uint8 view with one more axis), so dtypes the C++
    copy does not convert (complex32, complex128) compare as well: both sides of a comparison
    are hashed the same way."""
    if isinstance(value, ViewValue) and value.out_dtype == value.view.dtype:
        v, n = value.view, dtypes.get(value.dtype).itemsize
        raw = View("uint8", (*v.shape, n), (*(s * n for s in v.strides), 1), v.offset * n)
        value = ViewValue(value.ckpt, value.storage, raw)
    return value_digest(value)


def _chunk_tensor(folder: Path, c: dict[str, Any]) -> TensorInfo | None:
    loaded = read_zip_at(str(folder / c["file"]), c["offset"], c["length"], ReadOptions(),
                         member=f"{c['file']}@{c['offset']}", checkpoint=False)
    return loaded.tree if isinstance(loaded.tree, TensorInfo) else None
