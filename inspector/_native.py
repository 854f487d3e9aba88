"""The compiled core, imported once, with an error that says how to build it when missing; and
the one function that turns the core's errors into the project's.

The core raises `core.CoreError` (a ValueError) for bad input, with its parts as attributes:
`kind` (which error class), `problem` (the sentence), `where` (the argument), `key` (the name in
the input) and `job` (the index in a batch call); and `core.MappedFileFault` (an OSError) when a
mapped file was truncated while it was read (csrc/bindings/errors.cpp).
"""

from __future__ import annotations

from .errors import (
    CheckpointError,
    DtypeError,
    DuplicateKeyError,
    FileChangedError,
    HeaderError,
    OffsetError,
    ShapeError,
    TensorDataError,
    TruncatedFileError,
)

try:
    from . import _core as core
except ImportError as e:  # pragma: no cover - exercised only on a broken install
    e.msg = (
        f"{e.msg}\n\nckpt-inspector's compiled core (inspector._core) is missing or broken. "
        "Build it with `pip install .` (or `pip install -e . --no-build-isolation` for "
        "development) from the repository root; a C++17 compiler and CMake are needed."
    )
    raise

# CoreError.kind -> class; "value" (a bad view, an unsupported cast) is the caller's `default`.
_KINDS: dict[str, type[CheckpointError]] = {
    "header": HeaderError,
    "offset": OffsetError,
    "dtype": DtypeError,
    "shape": ShapeError,
    "duplicate_key": DuplicateKeyError,
    "truncated": TruncatedFileError,
    "io": CheckpointError,
}


def core_error(
    e: Exception,
    path: str | None,
    *,
    key: str | None = None,
    context: str = "",
    default: type[CheckpointError] = TensorDataError,
) -> Exception:
    """The project's error for an exception the core raised, naming `path` and `key` (the
    error's own key, a header's tensor, wins). `context` goes before the problem ("cannot
    compare with b.pt:x"). Any other exception is returned as it is."""
    if isinstance(e, core.MappedFileFault):
        return FileChangedError(path, "the file changed while it was read (truncated)", key=key)
    if not isinstance(e, core.CoreError):
        return e
    cls = _KINDS.get(e.kind, default)
    what = e.problem if e.where is None else f"{e.where}: {e.problem}"
    what = f"{context}: {what}" if context else what
    return cls(path, what, key=e.key if e.key is not None else key)


__all__ = ["core", "core_error"]
