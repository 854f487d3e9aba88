"""Malformed safetensors files as data: each case builds its file and names its error.

Shared by tests/test_bad_input_archives.py (through inspector.open) and tests/test_st_header.py
(through the signature fast path and the pure-Python reference parser), so that every parser is
held to the same cases.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from inspector import errors


@dataclass(frozen=True)
class Case:
    id: str
    make: Callable[[Path], Path]  # builds the file in the given folder
    error: type[errors.CheckpointError]
    key: str | None = None  # the tensor the error names
    says: str | None = None  # text the message contains


def st_file(
    header: object, data: bytes = b"", *, raw: bytes | None = None
) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        text = raw if raw is not None else json.dumps(header).encode()
        path = folder / "m.safetensors"
        path.write_bytes(struct.pack("<Q", len(text)) + text + data)
        return path

    return make


def raw_file(content: bytes) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        path = folder / "m.safetensors"
        path.write_bytes(content)
        return path

    return make


def entry(dtype: str, shape: list[object], begin: int, end: int) -> dict[str, object]:
    return {"dtype": dtype, "shape": shape, "data_offsets": [begin, end]}


def truncated(where: str) -> Callable[[Path], Path]:
    """A file written by safetensors itself, cut short."""

    def make(folder: Path) -> Path:
        import torch
        from safetensors.torch import save_file

        good_path = folder / "good.safetensors"
        save_file({"a": torch.ones(4, 4), "b": torch.zeros(8)}, str(good_path))
        good = good_path.read_bytes()
        n = struct.unpack("<Q", good[:8])[0]
        cut = {"length": 5, "header": 8 + n // 2, "data": 8 + n + 10, "last-byte": len(good) - 1}
        path = folder / "cut.safetensors"
        path.write_bytes(good[: cut[where]])
        return path

    return make


_DUPLICATE = (
    b'{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},'
    b' "a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}'
)
_INVALID_JSON = {
    "cut": b'{"a": {"dtype": "F32",',
    "garbage": b"not json at all",
    "extra": b'{"a": 1} trailing',
    "utf8": b"\xff\xfe{}",
    "5000-digit-int": b'{"a": {"dtype": "F32", "shape": ['
    + b"9" * 5000
    + b'], "data_offsets": [0, 4]}}',
}

E = errors
CASES: list[Case] = [
    Case(
        "header-longer-than-file", raw_file(struct.pack("<Q", 1000) + b"{}"), E.TruncatedFileError
    ),
    Case(
        "header-over-cap",
        raw_file(struct.pack("<Q", 100_000_001) + b"{}"),
        E.HeaderError,
        says="cap",
    ),
    Case("header-size-u64-max", raw_file(struct.pack("<Q", 2**64 - 1) + b"{}"), E.HeaderError),
    *(
        Case(f"invalid-json-{k}", st_file(None, raw=v), E.HeaderError)
        for k, v in _INVALID_JSON.items()
    ),
    *(
        Case(f"not-an-object-{i}", st_file(h), E.HeaderError, says="not an object")
        for i, h in enumerate([[1, 2], "text", 3, None])
    ),
    Case("deeply-nested", st_file(None, raw=b"[" * 100_000 + b"]" * 100_000), E.HeaderError),
    Case(
        "overlapping-offsets",
        st_file({"a": entry("F32", [2], 0, 8), "b": entry("F32", [2], 4, 12)}, bytes(12)),
        E.OffsetError,
        "b",
        "overlaps",
    ),
    Case(
        "gap-between-tensors",
        st_file({"a": entry("F32", [1], 0, 4), "b": entry("F32", [1], 8, 12)}, bytes(12)),
        E.OffsetError,
        "b",
        "gap",
    ),
    Case(
        "first-not-at-zero", st_file({"a": entry("F32", [1], 4, 8)}, bytes(8)), E.OffsetError, "a"
    ),
    Case(
        "trailing-bytes",
        st_file({"a": entry("F32", [1], 0, 4)}, bytes(7)),
        E.OffsetError,
        says="3 trailing bytes",
    ),
    Case("numel-mismatch", st_file({"a": entry("F32", [3], 0, 8)}, bytes(8)), E.ShapeError, "a"),
    Case(
        "unknown-dtype", st_file({"a": entry("F31", [1], 0, 4)}, bytes(4)), E.DtypeError, "a", "F31"
    ),
    *(
        Case(
            f"bad-shape-{shape}",
            st_file({"a": entry("F32", shape, 0, 4)}, bytes(4)),
            E.ShapeError,
            "a",
        )
        for shape in ([-1], [2, -3], [1.5], ["2"], [True])
    ),
    Case(
        "shape-overflows",
        st_file({"a": entry("F32", [2**32, 2**32], 0, 4)}, bytes(4)),
        E.ShapeError,
        "a",
        "overflow",
    ),
    Case("duplicate-name", st_file(None, bytes(8), raw=_DUPLICATE), E.DuplicateKeyError, "a"),
    Case(
        "metadata-not-strings",
        st_file({"__metadata__": {"format": 1}}),
        E.HeaderError,
        "__metadata__",
    ),
    Case(
        "entry-lacks-offsets",
        st_file({"a": {"dtype": "F32", "shape": [1]}}, bytes(4)),
        E.HeaderError,
        "a",
    ),
    Case("offsets-reversed", st_file({"a": entry("F32", [1], 4, 0)}, bytes(4)), E.OffsetError, "a"),
    *(
        Case(f"truncated-{w}", truncated(w), E.TruncatedFileError)
        for w in ("length", "header", "data", "last-byte")
    ),
]
