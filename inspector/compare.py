"""Value comparison of two tensors and per-tensor statistics, computed by the C++ core.

Both read the tensors' bytes in place (memory-mapped storages, strided views, big-endian files)
and decode every dtype exactly to double, float16/bfloat16/float8 and integers included. No
torch import.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from . import dtypes
from ._native import core, core_error
from .errors import DtypeError, ShapeError, TensorDataError
from .model import Checkpoint, TensorInfo

# Dtypes the core decodes (complex and quantized types are not compared).
SUPPORTED = frozenset(
    name for name, d in dtypes.DTYPES.items() if d.kind in "fiub" and not name.startswith("q")
)


@dataclass(frozen=True)
class Comparison:
    """How two equally shaped tensors differ. See `_core.compare` for the exact definitions.

    NaN pairs are left out of the difference figures; |a-b| is 0 where a == b (also inf == inf);
    rel_l2 = ||a-b|| / ||b|| (0 when both are 0, inf when only b is); cosine is over finite pairs
    (1.0 when both norms are 0, 0.0 when only one is); n_diff counts elements whose values differ
    (two NaNs are equal, -0.0 == 0.0); allclose follows numpy.isclose(rtol, atol, equal_nan).
    """

    numel: int
    max_abs_diff: float
    mean_abs_diff: float
    rel_l2: float
    cosine: float
    n_diff: int
    n_not_close: int
    allclose: bool
    nan_a: int
    nan_b: int
    inf_a: int
    inf_b: int
    rtol: float = 1e-5
    atol: float = 1e-8

    @property
    def equal(self) -> bool:
        return self.n_diff == 0

    def to_json(self) -> dict[str, Any]:
        """A JSON-safe dict (non-finite floats as strings "inf", "-inf", "nan")."""
        return {k: _json_float(v) for k, v in asdict(self).items()}


@dataclass(frozen=True)
class TensorStats:
    """Summary of one tensor's values. min/max/mean/std are over finite values (None when there
    are none; std is the population std); hist counts finite values in equal bins whose edges are
    hist_edges (len(hist) + 1 of them, the last bin closed, as numpy.histogram)."""

    numel: int
    finite: int
    min: float | None
    max: float | None
    mean: float | None
    std: float | None
    zeros: int
    nan: int
    inf: int
    hist: list[int] = field(default_factory=list)
    hist_edges: list[float] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {k: _json_float(v) for k, v in asdict(self).items()}


def compare_tensors(
    ckpt_a: Checkpoint,
    name_a: str,
    ckpt_b: Checkpoint,
    name_b: str,
    *,
    rtol: float = 1e-5,
    atol: float = 1e-8,
    equal_nan: bool = False,
    threads: int = 0,
) -> Comparison:
    """Compare tensor `name_a` of `ckpt_a` with `name_b` of `ckpt_b` element by element.

    Shapes must be equal (ShapeError otherwise); dtypes may differ.
    """
    ta, tb = ckpt_a[name_a], ckpt_b[name_b]
    if ta.shape != tb.shape:
        raise ShapeError(
            ckpt_b.label,
            f"shape {list(tb.shape)} differs from {list(ta.shape)} in {ckpt_a.label}",
            key=name_b,
        )
    raw_a = _tensor_bytes(ckpt_a, ta)
    raw_b = _tensor_bytes(ckpt_b, tb)
    try:
        r = core.compare(
            raw_a,
            _dtype(ta),
            ta.shape,
            ta.strides,
            ta.storage_offset,
            raw_b,
            _dtype(tb),
            tb.shape,
            tb.strides,
            tb.storage_offset,
            rtol=rtol,
            atol=atol,
            equal_nan=equal_nan,
            threads=threads,
            a_byteswap=_swapped(ta),
            b_byteswap=_swapped(tb),
        )
    except core.CoreError as e:
        raise core_error(
            e, ckpt_a.label, key=name_a, context=f"cannot compare with {ckpt_b.label}:{name_b}"
        ) from e
    return Comparison(**r, rtol=rtol, atol=atol)


def tensor_stats(ckpt: Checkpoint, name: str, bins: int = 16, *, threads: int = 0) -> TensorStats:
    """min/max/mean/std, zero/NaN/Inf counts and a `bins`-bin histogram of tensor `name`."""
    t = ckpt[name]
    raw = _tensor_bytes(ckpt, t)
    try:
        r = core.stats(
            raw,
            _dtype(t),
            t.shape,
            t.strides,
            t.storage_offset,
            bins=bins,
            byteswap=_swapped(t),
            threads=threads,
        )
    except core.CoreError as e:
        raise core_error(e, ckpt.label, key=name) from e
    return TensorStats(**r)


def _tensor_bytes(ckpt: Checkpoint, t: TensorInfo) -> memoryview:
    if dtypes.get(t.dtype).name not in SUPPORTED:
        raise DtypeError(ckpt.label, f"values of dtype {t.dtype} cannot be compared", key=t.name)
    src = t.storage.source
    if src.path is None and src.buffer is None:
        raise TensorDataError(ckpt.label, "tensor has no data (meta tensor)", key=t.name)
    return ckpt.storage_bytes(t.storage)


def _swapped(t: TensorInfo) -> bool:
    return t.storage.byteorder == "big" and t.itemsize > 1


def _json_float(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    return v


def _dtype(t: TensorInfo) -> str:
    return dtypes.get(t.dtype).name
