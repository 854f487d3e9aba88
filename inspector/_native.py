"""The compiled core, imported once, with an error that says how to build it when missing."""

from __future__ import annotations

try:
    from . import _core as core
except ImportError as e:  # pragma: no cover - exercised only on a broken install
    e.msg = (
        f"{e.msg}\n\nckpt-inspector's compiled core (inspector._core) is missing or broken. "
        "Build it with `pip install .` (or `pip install -e . --no-build-isolation` for "
        "development) from the repository root; a C++17 compiler and CMake are needed."
    )
    raise

__all__ = ["core"]
