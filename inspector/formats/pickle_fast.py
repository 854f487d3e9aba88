"""The C++ fast path for torch.save's data.pkl, in front of the restricted pickle machine.

`load` runs the compiled subset (csrc/pickle_fast.hpp: the opcodes and globals torch.save
writes, protocols 2-5) and returns the same tree the Python machine (`unpickler`) builds, or
`None` the moment the stream holds anything outside that subset or anything the Python machine
would refuse (a bound, a malformed opcode, a view past its storage). The caller then runs the
Python machine, which stays the reference: it reads everything, and every error message comes
from it. `INSPECTOR_PICKLE_FAST=0` turns the fast path off.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import cache
from typing import Any

from .. import dtypes
from .._native import core
from ..model import Record, Storage, TensorInfo
from .pickle_build import AttrDict

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
    data: Any, persistent_load: Callable[[Any], Any]
) -> tuple[bool, Any]:
    """(True, tree) when the fast path read the pickle at the start of `data`, else (False, why).
    `persistent_load` is called once per distinct storage key, in stream order."""
    handled, value = core.load_torch_pickle(data, persistent_load, _TYPES, _dtype_info)
    return bool(handled), value
