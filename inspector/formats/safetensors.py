"""safetensors single files, validated like the reference implementation (safetensors `tensor.rs`).

Layout: an 8-byte little-endian header length N, N bytes of UTF-8 JSON (an object: tensor name ->
{dtype, shape, data_offsets}, plus an optional `__metadata__` str -> str map), then the tensor
bytes. Offsets are relative to the end of the header; sorted by offset the tensors must tile the
data section exactly: no gap, no overlap, no trailing bytes.

The header is parsed and validated in the C++ core (csrc/st_header.cpp), which fills columns
without building a Python object per JSON value: a 1M-tensor header takes a fraction of what
json.loads alone takes. It is checked against a pure-Python parser kept in the tests
(tests/st_reference.py); docs/formats.md says why there is one implementation here, not two.
"""

from __future__ import annotations

import functools
import os
import struct
from pathlib import Path
from typing import Any

from .. import dtypes
from .._native import core, core_error
from ..errors import (
    DuplicateKeyError,
    HeaderError,
)
from ..model import ByteSource, Signature, Storage, TensorInfo, contiguous_strides
from ..sources import Source, opened, storage_name
from . import Loaded, ReadOptions, check_names

FORMAT = "safetensors"

MAX_HEADER_SIZE = 100_000_000  # the reference implementation's cap (also in csrc/st_header.hpp)

# What the core needs of each dtype: (safetensors name, itemsize, the name our columns hold).
_DTYPE_TABLE = tuple((st, d.itemsize, d.name) for st, d in dtypes.BY_SAFETENSORS.items())


def sniff(path: Path, head: bytes) -> bool:
    return path.is_file() and looks_like(path.name, head)


def sniff_source(name: str, head: bytes) -> bool:
    return looks_like(name, head)


def looks_like(name: str, head: bytes) -> bool:
    """A safetensors file, by its suffix or its first bytes: a header length in range, then the
    `{` the format says the header begins with. One test for `open` and `scan` alike."""
    if name.endswith(".safetensors"):
        return True
    if len(head) < 9 or head[8:9] != b"{":
        return False
    (n,) = struct.unpack("<Q", head[:8])
    return 2 <= n <= MAX_HEADER_SIZE


def read(path: Path | Source, options: ReadOptions) -> Loaded:
    tensors, metadata = read_tensors(path)
    meta: dict[str, Any] = {"safetensors_metadata": metadata}
    return Loaded(FORMAT, tensors, meta, root=())


def signature(path: Path) -> Signature:
    """Names, shapes and dtypes only, straight from the parsed columns (no per-tensor objects)."""
    h = read_header(path, offsets=False)
    return Signature(h["names"], h["shapes"], h["dtypes"])


def read_tensors(path: Path | Source) -> tuple[dict[str, TensorInfo], dict[str, str]]:
    """The validated tensors of one file (flat, in file order) and its `__metadata__`."""
    # Storages name their source: a local file by its absolute path, any other by its name.
    abspath = storage_name(path)
    h = read_header(path, tensors=(TensorInfo, Storage, ByteSource, abspath))
    if "tensors" in h:  # made by the core, as _tensor_info makes them (then no offset columns)
        return h["tensors"], h["metadata"]
    start = h["data_start"]
    tensors = {
        name: _tensor_info(abspath, name, dtype, shape, start + b, e - b)
        for name, shape, dtype, b, e in zip(
            h["names"], h["shapes"], h["dtypes"], h["begins"], h["ends"], strict=True
        )
    }
    return tensors, h["metadata"]


def read_header(
    path: str | os.PathLike[str] | Source, *, offsets: bool = True,
    tensors: tuple[Any, ...] | None = None,
) -> dict[str, Any]:
    """The header's columns, parsed and validated in the C++ core (csrc/st_header.cpp).

    Keys: names, shapes, dtypes (canonical names), begins/ends (offsets into the data section,
    when `offsets`), metadata, data_start. Tensors are in file order. `tensors`: see
    `_core.parse_safetensors_header` (read_tensors' objects made in the core).
    """
    with opened(path) as src:
        return parse_header(src.name, _header_bytes(src), src.size, offsets=offsets,
                            tensors=tensors)


def _header_bytes(src: Source) -> bytes:
    """The length field and the header, read in one go when the length is plausible; else the
    first bytes alone, for the core to say what is wrong with them."""
    first = src.read(0, min(8, src.size))
    if len(first) == 8:
        (n,) = struct.unpack("<Q", first)
        if n <= MAX_HEADER_SIZE and 8 + n <= src.size:
            return src.read(0, 8 + n)
    return first


def parse_header(
    label: str, file: bytes, file_size: int, *, offsets: bool = True,
    tensors: tuple[Any, ...] | None = None,
) -> dict[str, Any]:
    """read_header() on the first bytes of a file held in memory."""
    try:
        header: dict[str, Any] = core.parse_safetensors_header(
            file, file_size, _DTYPE_TABLE, offsets, tensors
        )
    except core.CoreError as e:
        raise core_error(e, label, default=HeaderError) from None
    _check_opening(label, bytes(file[8:9]))
    check_names(header["names"], Path(label))
    return header


def _check_opening(label: str, first: bytes) -> None:
    """The header begins with `{` (the format says so; the core's JSON parser, like json.loads,
    would skip leading whitespace): what other parsers may not sniff as safetensors is refused."""
    if first != b"{":
        raise HeaderError(
            label, f"header begins with {first!r}, not '{{': the safetensors format requires it"
        )


def parse_json_object(label: str, text: bytes, what: str) -> dict[str, Any]:
    """A UTF-8 JSON object; duplicate names anywhere in it raise DuplicateKeyError."""
    import json  # here: the header itself goes through the core's parser, not json

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


def _tensor_info(
    abspath: str, name: str, dtype: str, shape: tuple[int, ...], at: int, n: int
) -> TensorInfo:
    # Every tensor is its own storage, keyed by its name (unique in the file, and in the folder
    # of shards it may be one of): one string less per tensor than "file:name".
    storage = Storage(name, dtype, n, ByteSource(abspath, at, n))
    # Named already: the tree is flat, so open() keeps the name (and skips a copy per tensor).
    return TensorInfo(name, dtype, shape, _strides(shape), 0, storage)


_strides = functools.lru_cache(maxsize=1024)(contiguous_strides)  # shapes repeat per layer
