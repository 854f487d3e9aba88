"""A slow pure-Python safetensors header parser: the reference the C++ one is tested against.

This is the reader inspector/formats/safetensors.py had before the header moved to the C++ core
(csrc/st_header.cpp), built on Python's json module, plus the limits the core adds to match
the Rust reference implementation (dimensions and offsets are 64-bit, nesting stops at 128,
names are valid Unicode: no lone surrogates).
"""

from __future__ import annotations

import json
import struct
from typing import Any, NamedTuple

from inspector import dtypes
from inspector.errors import (
    DtypeError,
    DuplicateKeyError,
    HeaderError,
    OffsetError,
    ShapeError,
    TruncatedFileError,
)

MAX_HEADER_SIZE = 100_000_000
MAX_DEPTH = 128
U64_MAX = 2**64 - 1
_ENTRY_FIELDS = ("dtype", "shape", "data_offsets")


class Entry(NamedTuple):
    name: str
    dtype: str  # canonical name
    shape: tuple[int, ...]
    begin: int
    end: int


def parse(label: str, file: bytes, file_size: int) -> tuple[list[Entry], dict[str, str]]:
    """The entries in file order and the metadata; the same errors as the C++ parser."""
    if len(file) < 8:
        raise TruncatedFileError(
            label, f"file is {file_size} bytes, shorter than the 8-byte header length"
        )
    (n,) = struct.unpack("<Q", file[:8])
    if n > MAX_HEADER_SIZE:
        raise HeaderError(label, f"header length {n} exceeds the {MAX_HEADER_SIZE}-byte cap")
    if 8 + n > file_size:
        raise TruncatedFileError(
            label, f"header of {n} bytes declared, the file has {file_size - 8} after the length"
        )
    header = _json_object(label, file[8 : 8 + n])
    metadata = _metadata(label, header.pop("__metadata__", None))
    entries = sorted((_entry(label, k, v) for k, v in header.items()), key=lambda e: e[3:5])
    _check_layout(label, entries, file_size - 8 - n)
    if file[8:9] != b"{":  # the format: the header begins with "{" (no leading whitespace)
        raise HeaderError(label, "header does not begin with '{'")
    for e in entries:  # names must be valid Unicode (the Rust reference refuses lone surrogates)
        try:
            e.name.encode("utf-8")
        except UnicodeEncodeError as err:
            key = e.name.encode("utf-8", "backslashreplace").decode("utf-8")
            raise HeaderError(label, f"tensor name is not valid Unicode ({err.reason})",
                              key=key) from None
    return entries, metadata


def _json_object(label: str, text: bytes) -> dict[str, Any]:
    try:
        decoded = text.decode("utf-8")
    except UnicodeDecodeError as e:
        raise HeaderError(label, f"header is not valid UTF-8 ({e.reason})") from None
    too_deep = _depth_exceeded_at(decoded)
    doc = _loads(label, decoded if too_deep is None else decoded[:too_deep])
    if (
        too_deep is not None
    ):  # what comes before the too-deep bracket parsed: the depth is the fault
        raise HeaderError(label, "header is nested too deeply")
    if not isinstance(doc, dict):
        raise HeaderError(label, f"header is a JSON {type(doc).__name__}, not an object")
    return doc


def _loads(label: str, text: str) -> Any:
    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in pairs:
            if k in out:
                raise DuplicateKeyError(label, "name appears twice in the header", key=k)
            out[k] = v
        return out

    try:
        return json.loads(text, object_pairs_hook=no_duplicates)
    except json.JSONDecodeError as e:
        if e.pos >= len(text):  # a cut prefix (see _json_object): not an error of its own
            return None
        raise HeaderError(label, f"header is not valid JSON: {e.msg}") from None
    except (RecursionError, ValueError) as e:
        raise HeaderError(label, f"header is not valid JSON: {e}") from None


def _depth_exceeded_at(text: str) -> int | None:
    """Index of the first bracket nested deeper than MAX_DEPTH (outside strings), or None."""
    depth, in_string, escaped = 0, False, False
    for i, c in enumerate(text):
        if in_string:
            if escaped:
                escaped = False
            elif c == "\\":
                escaped = True
            elif c == '"':
                in_string = False
        elif c == '"':
            in_string = True
        elif c in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return i
        elif c in "]}":
            depth -= 1
    return None


def _metadata(label: str, value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise HeaderError(label, "must be a map of strings to strings", key="__metadata__")
    return value


def _is_int(x: Any) -> bool:
    return type(x) is int


def _entry(label: str, name: str, info: Any) -> Entry:
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
    if any(s > U64_MAX for s in shape):
        raise ShapeError(label, f"shape {shape} has a dimension beyond 64 bits", key=name)
    offsets = info["data_offsets"]
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_int(o) for o in offsets)):
        raise OffsetError(label, f"data_offsets {offsets!r} is not a pair of integers", key=name)
    begin, end = offsets
    if begin < 0 or end < begin:
        raise OffsetError(label, f"data_offsets {offsets} is not a valid range", key=name)
    if end > U64_MAX:
        raise OffsetError(label, f"data_offsets {offsets} are beyond 64 bits", key=name)
    return Entry(name, d.name, tuple(shape), begin, end)


def _check_layout(label: str, entries: list[Entry], data_size: int) -> None:
    expected = 0
    for e in entries:
        if e.begin != expected:
            what = "overlaps the previous tensor" if e.begin < expected else "leaves a gap"
            raise OffsetError(label, f"data_offsets [{e.begin}, {e.end}] {what}", key=e.name)
        n = 1
        for s in (*e.shape, dtypes.get(e.dtype).itemsize):
            n *= s
            if n > U64_MAX:
                raise ShapeError(label, f"shape {list(e.shape)} overflows", key=e.name)
        if e.end - e.begin != n:
            raise ShapeError(label, f"shape {list(e.shape)} needs {n} bytes", key=e.name)
        expected = e.end
    if expected > data_size:
        cut = next(e for e in entries if e.end > data_size)
        raise TruncatedFileError(label, "data_offsets run past the end of the data", key=cut.name)
    if expected < data_size:
        raise OffsetError(label, f"{data_size - expected} trailing bytes after the last tensor")
