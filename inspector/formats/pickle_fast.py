"""The C++ fast path for torch.save's data.pkl, in front of the restricted pickle machine.

`load` runs the compiled subset (csrc/pickle_fast.hpp: the opcodes and globals torch.save
writes, protocols 2-5) and returns the same tree the Python machine (`unpickler`) builds, or
`None` the moment the stream holds anything outside that subset or anything the Python machine
would refuse (a bound, a malformed opcode, a view past its storage). The caller then runs the
Python machine, which stays the reference: it reads everything, and every error message comes
from it. `INSPECTOR_PICKLE_FAST=0` turns the fast path off.

`try_load_records` is the same path for pickles of torch's data classes (a DCP `.metadata`):
NEWOBJ gives a `Record` with the state BUILD set, and a call of any other torch global gives
what the Python machine's non-strict `call` gives (its builder's value, or an
"unsupported-global" record), through `_call`, that machine's twin.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import cache
from typing import Any

from .. import dtypes
from .._native import core
from ..model import Record, Storage, TensorInfo
from .allowlist import default_builders
from .pickle_build import AttrDict, Builder

ENV = "INSPECTOR_PICKLE_FAST"
_TYPES = (Record, Storage, TensorInfo, AttrDict)


def enabled() -> bool:
    """False when INSPECTOR_PICKLE_FAST=0 (to compare with, or to rule out, the fast path)."""
    return os.environ.get(ENV, "1").strip() != "0"


@cache
def _dtype_info(name: str) -> tuple[str, int] | None:
    try:
        d = dtypes.get(name)
    except KeyError:
        return None
    return d.name, d.itemsize


def try_load(
    data: Any, persistent_load: Callable[[Any], Any], stored: tuple[Any, ...] | None = None,
    *, columns: bool = False,
) -> tuple[bool, Any]:
    """(True, tree) when the fast path read the pickle at the start of `data`, else (False, why).
    `persistent_load` is called once per distinct storage key, in stream order, but for the
    storages `stored` describes (torch_zip's `_StorageTable.stored_records`), made in the core.

    `columns` (with `stored`): a state dict whose storages are all made in the core comes back
    as `StateColumns`, no object per tensor yet: `tree(value)` makes the tree. Its caller lets
    go of `data` and the zip's table first, so that they are never alive beside the objects
    (a 100k-tensor `.pt`: ~60 MB of them, ~60 MB of pickle, its tape and the table)."""
    handled, value = core.load_torch_pickle(data, persistent_load, _TYPES, _dtype_info,
                                            stored=stored, columns=columns)
    return bool(handled), value


StateColumns = core.StateColumns


def tree(value: Any) -> Any:
    """The tree of what `try_load` returned: `value` itself, or the tree a `StateColumns` makes."""
    return value.build() if isinstance(value, StateColumns) else value


def try_load_records(data: Any) -> tuple[bool, Any]:
    """(True, tree) when the fast path read the pickle (no persistent ids; objects and calls
    as data: any global at protocol 3 or later, torch's and collections' before, each call
    answered by `_call`, which only ever runs the allow-list's builders), else (False, why)."""
    handled, value = core.load_torch_pickle(
        data, _no_persistent_ids, _TYPES, _dtype_info, _caller(default_builders()))
    return bool(handled), value


def read_dcp_metadata(data: Any) -> tuple[bool, Any]:
    """(True, (entries, stored, planner_data)) when a DCP `.metadata` has the plain layout
    `dcp.save` writes, read into columns with no object per chunk (`_core.read_dcp_metadata`),
    else (False, why): the caller then reads the tree (`try_load_records`, or the Python
    machine)."""
    handled, value = core.read_dcp_metadata(data, _TYPES, _dtype_info, _caller(default_builders()))
    return bool(handled), value


def _no_persistent_ids(pid: Any) -> Any:
    raise ValueError("a persistent id: the Python machine reads it")


def _caller(builders: dict[str, Builder]) -> Callable[[str, tuple[Any, ...]], Any]:
    """unpickler.Unpickler.call, not strict: its builder's value, else an unsupported-global
    record (any error: the fast path falls back, and the Python machine says what is wrong)."""

    def call(name: str, args: tuple[Any, ...]) -> Any:
        builder = builders.get(name)
        if builder is None:
            return Record(name, kind="unsupported-global", args=args)
        return builder(*args)

    return call
