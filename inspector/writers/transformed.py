"""A plan entry's value: its source tensor(s) with the entry's transforms applied.

View-like transforms (transpose, slice, split, reshape of a contiguous view) and casts stay lazy
views that the C++ copy streams in bounded chunks. Transforms that build new values (concat, pad,
weight_norm_fuse, reshape of a non-contiguous view) materialize that one tensor: the inputs are
decoded by the C++ copy, combined with numpy, and encoded back by the C++ copy (casts round as
torch does).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from math import prod
from typing import TYPE_CHECKING

from .. import dtypes
from .._native import core
from ..errors import PlanError
from ..mapping.transforms import (
    Cast,
    Concat,
    Pad,
    Reshape,
    Select,
    Slice,
    Split,
    Squeeze,
    Transform,
    Transpose,
    Unsqueeze,
    WeightNormFuse,
)
from ..model import Checkpoint, TensorInfo, contiguous_strides
from .produce import ArrayValue, Producer, View, ViewValue, materialize

if TYPE_CHECKING:  # numpy is imported where arrays are built: plain copies do not need it
    import numpy as np


def source_value(ckpt: Checkpoint, t: TensorInfo) -> ViewValue:
    return ViewValue(ckpt, t.storage, View.of(t))


def apply_transforms(values: list[Producer], transforms: Sequence[Transform],
                     target: Producer | None = None) -> Producer:
    """The value after `transforms`; `target` is the target tensor's own value (pad init)."""
    if not transforms:
        if len(values) != 1:
            raise PlanError(f"{len(values)} sources need a transform that combines them (concat)")
        return values[0]
    current = values
    for tr in transforms:
        step = _STEPS.get(type(tr))
        if step is None:
            raise PlanError(f"transform {tr.describe()} cannot be applied")
        current = [step(tr, current, target)]
    return current[0]


# -- view steps ----------------------------------------------------------------------------------


def _single(tr: Transform, values: list[Producer]) -> Producer:
    if len(values) != 1:
        raise PlanError(f"{tr.describe()} takes one input, got {len(values)}")
    return values[0]


def _transpose(tr: Transform, values: list[Producer], target: Producer | None) -> Producer:
    import numpy as np

    assert isinstance(tr, Transpose)
    v = _single(tr, values)
    perm = _perm(tr, len(v.shape))
    if isinstance(v, ViewValue):
        w = v.view
        return v.with_view(View(w.dtype, tuple(w.shape[i] for i in perm),
                                tuple(w.strides[i] for i in perm), w.offset))
    arr = materialize(v, v.dtype, v.shape)
    return ArrayValue(np.transpose(arr, perm), v.dtype)  # made C-contiguous, 0-d kept


def _perm(tr: Transpose, ndim: int) -> tuple[int, ...]:
    if tr.perm is None:
        return (*range(ndim - 2), ndim - 1, ndim - 2)
    return tuple(tr.perm)


def _reshape(tr: Transform, values: list[Producer], target: Producer | None) -> Producer:
    """reshape, unsqueeze, squeeze: the same elements in C order, another shape."""
    assert isinstance(tr, (Reshape, Unsqueeze, Squeeze))
    v = _single(tr, values)
    shape = tr.out_shape([v.shape])
    if isinstance(v, ViewValue) and v.view.contiguous:
        return v.with_view(View(v.view.dtype, shape, contiguous_strides(shape), v.view.offset))
    arr = materialize(v, v.dtype, v.shape)
    return ArrayValue(arr.reshape(shape), v.dtype)


def _cast(tr: Transform, values: list[Producer], target: Producer | None) -> Producer:
    assert isinstance(tr, Cast)
    v = _single(tr, values)
    if isinstance(v, ViewValue):
        return v.with_view(v.view, tr.dtype)
    return _encode(_decode(v, v.dtype), v.dtype, tr.dtype)


def _axis_range(tr: Transform, v: Producer, axis: int, start: int, stop: int) -> Producer:

    shape = tr.out_shape([v.shape])
    ax = axis % len(v.shape)
    if isinstance(v, ViewValue):
        w = v.view
        return v.with_view(View(w.dtype, shape, w.strides, w.offset + start * w.strides[ax]))
    arr = materialize(v, v.dtype, v.shape)
    index = [slice(None)] * len(v.shape)
    index[ax] = slice(start, stop)
    return ArrayValue(arr[tuple(index)], v.dtype)


def _slice(tr: Transform, values: list[Producer], target: Producer | None) -> Producer:
    assert isinstance(tr, Slice)
    return _axis_range(tr, _single(tr, values), tr.axis, tr.start, tr.stop)


def _split(tr: Transform, values: list[Producer], target: Producer | None) -> Producer:
    assert isinstance(tr, Split)
    start = sum(tr.sizes[: tr.index])
    return _axis_range(tr, _single(tr, values), tr.axis, start, start + tr.sizes[tr.index])


def _select(tr: Transform, values: list[Producer], target: Producer | None) -> Producer:
    assert isinstance(tr, Select)
    v = _single(tr, values)
    shape = tr.out_shape([v.shape])
    ax = tr.axis % len(v.shape)
    if isinstance(v, ViewValue):
        w = v.view
        strides = (*w.strides[:ax], *w.strides[ax + 1:])
        return v.with_view(View(w.dtype, shape, strides, w.offset + tr.index * w.strides[ax]))
    arr = materialize(v, v.dtype, v.shape)
    return ArrayValue(arr.take(tr.index, axis=ax), v.dtype)


# -- building steps ------------------------------------------------------------------------------


def _concat(tr: Transform, values: list[Producer], target: Producer | None) -> Producer:
    import numpy as np

    assert isinstance(tr, Concat)
    shape = tr.out_shape([v.shape for v in values])
    dtype = tr.out_dtype([v.dtype for v in values])
    arrays = [materialize(v, v.dtype, v.shape) for v in values]
    out = np.concatenate(arrays, axis=tr.axis)
    assert out.shape == shape
    return ArrayValue(out, dtype)


def _pad(tr: Transform, values: list[Producer], target: Producer | None) -> Producer:
    import numpy as np

    assert isinstance(tr, Pad)
    v = _single(tr, values)
    shape = tr.out_shape([v.shape])
    ax = tr.axis % len(shape)
    inner = [slice(None)] * len(shape)
    inner[ax] = slice(tr.before, tr.before + v.shape[ax])
    if tr.init == "target":
        if target is None or tuple(target.shape) != shape:
            raise PlanError(f"{tr.describe()}: init 'target' needs a target of shape {shape}")
        out = materialize(target, v.dtype, shape).copy() if target.dtype == v.dtype else \
            _decode_to(target, v.dtype)
        out[tuple(inner)] = materialize(v, v.dtype, v.shape)
        return ArrayValue(out, v.dtype)
    values64 = _decode(v, v.dtype)
    fill = np.zeros(shape, dtype=np.float64)
    if tr.init in ("mean", "normal"):
        mean = values64.mean(axis=ax, keepdims=True)
        if tr.init == "mean":
            fill[...] = mean
        else:
            std = float(values64.std()) if values64.size else 0.0
            rng = np.random.default_rng(prod(shape))  # deterministic: same plan, same bytes
            fill[...] = rng.normal(0.0, std, size=shape)
    fill[tuple(inner)] = values64
    return _encode(fill, "float64", v.dtype)


def _weight_norm(tr: Transform, values: list[Producer], target: Producer | None) -> Producer:
    import numpy as np

    assert isinstance(tr, WeightNormFuse)
    if len(values) != 2:
        raise PlanError(f"{tr.describe()} takes [g, v], got {len(values)} inputs")
    g_val, v_val = values
    g, v = _decode(g_val, g_val.dtype), _decode(v_val, v_val.dtype)
    dim = tr.dim % v.ndim
    axes = tuple(i for i in range(v.ndim) if i != dim)
    norm = np.sqrt((v * v).sum(axis=axes, keepdims=True))
    with np.errstate(invalid="ignore", divide="ignore"):  # a zero v gives NaN, as in torch
        w = v * (g.reshape(norm.shape) / norm)
    return _encode(w, "float64", v_val.dtype)


# -- decode / encode through the core ------------------------------------------------------------


def _decode(v: Producer, dtype: str) -> np.ndarray:
    """The value as float64 (the C++ cast decodes every dtype exactly to double)."""
    import numpy as np

    raw = materialize(v, dtype, v.shape)
    out = np.empty(v.shape, dtype=np.float64)
    n = int(np.prod(v.shape))
    if n:
        flat = raw.reshape(-1).view(np.uint8)
        core.copy_cast(flat, dtype, (n,), (1,), 0, out.reshape(-1).view(np.uint8), 0, "float64")
    return out


def _decode_to(v: Producer, dtype: str) -> np.ndarray:
    return materialize(_encode(_decode(v, v.dtype), "float64", dtype), dtype, v.shape).copy()


def _encode(values: np.ndarray, from_dtype: str, dtype: str) -> ArrayValue:
    import numpy as np

    src = np.require(values, requirements="C")  # ascontiguousarray would make 0-d arrays 1-d
    item = dtypes.get(dtype).itemsize
    out = np.empty(src.size * item, dtype=np.uint8)
    if src.size:
        core.copy_cast(src.reshape(-1).view(np.uint8), from_dtype, (src.size,), (1,), 0, out, 0,
                       dtype)
    arr = out.view(dtypes.numpy_view_dtype(dtypes.get(dtype))).reshape(src.shape)
    return ArrayValue(arr, dtype)


Step = Callable[[Transform, list[Producer], Producer | None], Producer]
_STEPS: dict[type[Transform], Step] = {
    Transpose: _transpose,
    Reshape: _reshape,
    Unsqueeze: _reshape,
    Squeeze: _reshape,
    Cast: _cast,
    Slice: _slice,
    Select: _select,
    Split: _split,
    Concat: _concat,
    Pad: _pad,
    WeightNormFuse: _weight_norm,
}
