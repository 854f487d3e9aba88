"""safetensors single files, validated like the reference implementation (safetensors `tensor.rs`).

Layout: an 8-byte little-endian header length N, N bytes of UTF-8 JSON (an object: tensor name ->
{dtype, shape, data_offsets}, plus an optional `__metadata__` str -> str map), then the tensor
bytes. Offsets are relative to the end of the header; sorted by offset the tensors must tile the
data section exactly: no gap, no overlap, no trailing bytes.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Any, NamedTuple

from .. import dtypes
from ..errors import (
    DtypeError,
    DuplicateKeyError,
    HeaderError,
    OffsetError,
    ShapeError,
    TruncatedFileError,
)
from ..model import ByteSource, Storage, TensorInfo, contiguous_strides
from . import Loaded, ReadOptions

FORMAT = "safetensors"

MAX_HEADER_SIZE = 100_000_000  # the reference implementation's cap
_U64_MAX = 2**64 - 1  # sizes are usize in the reference: overflow past 64 bits is an error
_METADATA_KEY = "__metadata__"
_ENTRY_FIELDS = ("dtype", "shape", "data_offsets")


class _Entry(NamedTuple):
    name: str
    dtype: dtypes.DType
    shape: tuple[int, ...]
    begin: int
    end: int


def sniff(path: Path, head: bytes) -> bool:
    if path.suffix == ".safetensors" and path.is_file():
        return True
    if len(head) < 9 or head[8:9] != b"{":
        return False
    (n,) = struct.unpack("<Q", head[:8])
    return 2 <= n <= MAX_HEADER_SIZE


def read(path: Path, options: ReadOptions) -> Loaded:
    tensors, metadata = read_tensors(path)
    meta: dict[str, Any] = {"safetensors_metadata": metadata}
    return Loaded(FORMAT, tensors, meta, root=())


def read_tensors(path: Path) -> tuple[dict[str, TensorInfo], dict[str, str]]:
    """The validated tensors of one file (flat, in file order) and its `__metadata__`."""
    label = os.fspath(path)
    with open(path, "rb") as f:
        file_size = os.fstat(f.fileno()).st_size
        raw = f.read(8)
        if len(raw) < 8:
            raise TruncatedFileError(
                label, f"file is {file_size} bytes, shorter than the 8-byte header length"
            )
        (n,) = struct.unpack("<Q", raw)
        if n > MAX_HEADER_SIZE:
            raise HeaderError(label, f"header length {n} exceeds the {MAX_HEADER_SIZE}-byte cap")
        if 8 + n > file_size:
            raise TruncatedFileError(
                label,
                f"header of {n} bytes declared, the file has {file_size - 8} after the length",
            )
        text = f.read(n)
    header = parse_json_object(label, text, "header")
    metadata = _metadata(label, header.pop(_METADATA_KEY, None))
    entries = sorted(
        (_entry(label, k, v) for k, v in header.items()), key=lambda e: (e.begin, e.end)
    )
    data_start = 8 + n
    _check_layout(label, entries, file_size - data_start)
    abspath, filename = os.path.abspath(label), path.name
    tensors = {e.name: _tensor_info(abspath, filename, data_start, e) for e in entries}
    return tensors, metadata


def parse_json_object(label: str, text: bytes, what: str) -> dict[str, Any]:
    """A UTF-8 JSON object; duplicate names anywhere in it raise DuplicateKeyError."""
    try:
        decoded = text.decode("utf-8")
    except UnicodeDecodeError as e:
        raise HeaderError(
            label, f"{what} is not valid UTF-8 ({e.reason} at byte {e.start})"
        ) from None
    try:
        header = json.loads(decoded, object_pairs_hook=_no_duplicates(label))
    except json.JSONDecodeError as e:
        raise HeaderError(label, f"{what} is not valid JSON: {e.msg} at char {e.pos}") from None
    except RecursionError:
        raise HeaderError(label, f"{what} is nested too deeply") from None
    except ValueError as e:  # e.g. an integer literal beyond Python's digit limit
        raise HeaderError(label, f"{what} is not valid JSON: {e}") from None
    if not isinstance(header, dict):
        raise HeaderError(label, f"{what} is a JSON {type(header).__name__}, not an object")
    return header


def _no_duplicates(label: str) -> Any:
    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in pairs:
            if k in out:
                raise DuplicateKeyError(label, "name appears twice in the header", key=k)
            out[k] = v
        return out

    return hook


def _metadata(label: str, value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise HeaderError(label, "must be a map of strings to strings", key=_METADATA_KEY)
    return value


def _entry(label: str, name: str, info: Any) -> _Entry:
    if not isinstance(info, dict):
        raise HeaderError(label, f"entry is a JSON {type(info).__name__}, not an object", key=name)
    missing = [f for f in _ENTRY_FIELDS if f not in info]
    if missing:
        raise HeaderError(label, f"entry lacks {', '.join(missing)}", key=name)
    dtype_name = info["dtype"]
    d = dtypes.BY_SAFETENSORS.get(dtype_name) if isinstance(dtype_name, str) else None
    if d is None:
        raise DtypeError(label, f"unknown dtype {dtype_name!r}", key=name)
    shape = info["shape"]
    if not isinstance(shape, list) or not all(_is_int(s) for s in shape):
        raise ShapeError(label, f"shape {shape!r} is not a list of integers", key=name)
    if any(s < 0 for s in shape):
        raise ShapeError(label, f"shape {shape} has a negative dimension", key=name)
    offsets = info["data_offsets"]
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_int(o) for o in offsets)):
        raise OffsetError(label, f"data_offsets {offsets!r} is not a pair of integers", key=name)
    begin, end = offsets
    if begin < 0 or end < begin:
        raise OffsetError(label, f"data_offsets [{begin}, {end}] is not a valid range", key=name)
    return _Entry(name, d, tuple(shape), begin, end)


def _is_int(x: Any) -> bool:
    return type(x) is int  # JSON gives plain ints; bool (true/false) is refused


def _check_layout(label: str, entries: list[_Entry], data_size: int) -> None:
    expected = 0
    for e in entries:
        if e.begin != expected:
            what = (
                "overlaps the previous tensor"
                if e.begin < expected
                else "leaves a gap after the previous tensor"
            )
            raise OffsetError(
                label,
                f"data_offsets [{e.begin}, {e.end}] {what} (expected start {expected})",
                key=e.name,
            )
        nbytes = _checked_nbytes(label, e)
        if e.end - e.begin != nbytes:
            raise ShapeError(
                label,
                f"shape {list(e.shape)} of {e.dtype.itemsize}-byte elements needs {nbytes} bytes, "
                f"data_offsets [{e.begin}, {e.end}] hold {e.end - e.begin}",
                key=e.name,
            )
        expected = e.end
    if expected > data_size:
        cut = next(e for e in entries if e.end > data_size)
        raise TruncatedFileError(
            label,
            f"data_offsets [{cut.begin}, {cut.end}] run past the end of the data "
            f"({data_size} bytes after the header)",
            key=cut.name,
        )
    if expected < data_size:
        raise OffsetError(label, f"{data_size - expected} trailing bytes after the last tensor")


def _checked_nbytes(label: str, e: _Entry) -> int:
    n = 1
    for s in (*e.shape, e.dtype.itemsize):
        n *= s
        if n > _U64_MAX:
            raise ShapeError(
                label, f"shape {list(e.shape)} overflows a 64-bit byte count", key=e.name
            )
    return n


def _tensor_info(abspath: str, filename: str, data_start: int, e: _Entry) -> TensorInfo:
    nbytes = e.end - e.begin
    source = ByteSource(abspath, data_start + e.begin, nbytes)
    storage = Storage(f"{filename}:{e.name}", e.dtype.name, nbytes, source)
    # Named already: the tree is flat, so open() keeps the name (and skips a copy per tensor).
    return TensorInfo(e.name, e.dtype.name, e.shape, contiguous_strides(e.shape), 0, storage)
