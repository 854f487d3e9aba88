"""Transform specs attached to rules and plan entries: what happens to a tensor on its way.

A transform is a description, not a computation: it knows its output shape and dtype from its
inputs' shapes and dtypes, whether it can be undone, and its inverse. The byte work is done by the
apply step (numpy or the C++ kernels). In YAML a transform is a mapping with an `op` key:

    - {op: transpose, perm: [1, 0]}
    - {op: pad, axis: 0, before: 0, after: 996, init: target}

`TRANSFORMS` maps each op name to its class: extend the table, not the code that reads it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from math import prod
from typing import Any, ClassVar

from .. import dtypes
from ..errors import PlanError

Shape = tuple[int, ...]

# How new rows of a `pad` are filled: zeros, the mean of the copied rows, N(0, std of the copied
# rows), or the target's own initialised values (the usual choice when a vocabulary grows).
PAD_INITS = ("zeros", "mean", "normal", "target")


@dataclass(frozen=True)
class Transform:
    """Base class. Subclasses are frozen dataclasses whose fields are the YAML parameters."""

    op: ClassVar[str] = ""
    n_inputs: ClassVar[int] = 1  # 0 means "one or more"

    def out_shape(self, shapes: list[Shape]) -> Shape:
        raise NotImplementedError

    def out_dtype(self, in_dtypes: list[str]) -> str:
        return in_dtypes[0]

    def invertible(self, shapes: list[Shape], in_dtypes: list[str]) -> bool:
        return False

    def inverse(self, shapes: list[Shape], in_dtypes: list[str]) -> Transform:
        """The transform that undoes this one, given this one's input shapes and dtypes."""
        raise PlanError(f"transform {self.describe()} cannot be inverted")

    def describe(self) -> str:
        params = ", ".join(f"{k}={v}" for k, v in self.params().items())
        return f"{self.op}({params})"

    def params(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is not None:
                out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"op": self.op, **self.params()}

    def _check_inputs(self, shapes: list[Shape]) -> None:
        if self.n_inputs and len(shapes) != self.n_inputs:
            raise PlanError(f"{self.describe()} takes {self.n_inputs} input(s), got {len(shapes)}")
        if not shapes:
            raise PlanError(f"{self.describe()} needs at least one input")


def _axis(axis: int, ndim: int, what: str) -> int:
    if not -ndim <= axis < ndim:
        raise PlanError(f"{what}: axis {axis} out of range for a {ndim}-d tensor")
    return axis % ndim


@dataclass(frozen=True)
class Transpose(Transform):
    """Permute axes; `perm` None swaps the last two (a Linear weight stored the other way)."""

    op: ClassVar[str] = "transpose"
    perm: tuple[int, ...] | None = None

    def _perm(self, ndim: int) -> tuple[int, ...]:
        if self.perm is None:
            if ndim < 2:
                raise PlanError(f"{self.describe()}: needs at least 2 axes, got {ndim}")
            return (*range(ndim - 2), ndim - 1, ndim - 2)
        if sorted(self.perm) != list(range(ndim)):
            raise PlanError(f"{self.describe()}: not a permutation of {ndim} axes")
        return self.perm

    def out_shape(self, shapes: list[Shape]) -> Shape:
        self._check_inputs(shapes)
        return tuple(shapes[0][i] for i in self._perm(len(shapes[0])))

    def invertible(self, shapes: list[Shape], in_dtypes: list[str]) -> bool:
        return True

    def inverse(self, shapes: list[Shape], in_dtypes: list[str]) -> Transform:
        perm = self._perm(len(shapes[0]))
        return Transpose(tuple(sorted(range(len(perm)), key=perm.__getitem__)))


@dataclass(frozen=True)
class Reshape(Transform):
    """Same elements in C order, another shape; one -1 is inferred."""

    op: ClassVar[str] = "reshape"
    shape: tuple[int, ...] = ()

    def out_shape(self, shapes: list[Shape]) -> Shape:
        self._check_inputs(shapes)
        n = prod(shapes[0])
        known = prod(d for d in self.shape if d != -1)
        if self.shape.count(-1) > 1 or any(d < -1 for d in self.shape):
            raise PlanError(f"{self.describe()}: at most one -1 and no other negative size")
        if -1 in self.shape:
            if known == 0 or n % known:
                raise PlanError(f"{self.describe()}: cannot infer -1 for {n} elements")
            return tuple(n // known if d == -1 else d for d in self.shape)
        if known != n:
            raise PlanError(f"{self.describe()}: {n} elements do not fit shape {self.shape}")
        return self.shape

    def invertible(self, shapes: list[Shape], in_dtypes: list[str]) -> bool:
        return True

    def inverse(self, shapes: list[Shape], in_dtypes: list[str]) -> Transform:
        return Reshape(tuple(shapes[0]))


@dataclass(frozen=True)
class Cast(Transform):
    """Convert the element type. Invertible only when widening (no value can change)."""

    op: ClassVar[str] = "cast"
    dtype: str = "float32"

    def __post_init__(self) -> None:
        if self.dtype not in dtypes.DTYPES:
            raise PlanError(f"cast: unknown dtype {self.dtype!r}")

    def out_shape(self, shapes: list[Shape]) -> Shape:
        self._check_inputs(shapes)
        return shapes[0]

    def out_dtype(self, in_dtypes: list[str]) -> str:
        return self.dtype

    def invertible(self, shapes: list[Shape], in_dtypes: list[str]) -> bool:
        a, b = dtypes.get(in_dtypes[0]), dtypes.get(self.dtype)
        return a.name == b.name or (a.kind == b.kind and b.itemsize > a.itemsize)

    def inverse(self, shapes: list[Shape], in_dtypes: list[str]) -> Transform:
        if not self.invertible(shapes, in_dtypes):
            raise PlanError(f"{self.describe()} from {in_dtypes[0]} loses values: not invertible")
        return Cast(in_dtypes[0])


@dataclass(frozen=True)
class Split(Transform):
    """Take part `index` of a tensor cut along `axis` into `sizes` (a fused qkv into q, k, v)."""

    op: ClassVar[str] = "split"
    axis: int = 0
    sizes: tuple[int, ...] = ()
    index: int = 0

    def out_shape(self, shapes: list[Shape]) -> Shape:
        self._check_inputs(shapes)
        shape = shapes[0]
        ax = _axis(self.axis, len(shape), self.describe())
        if sum(self.sizes) != shape[ax]:
            raise PlanError(
                f"{self.describe()}: sizes sum to {sum(self.sizes)}, axis has {shape[ax]}"
            )
        if not 0 <= self.index < len(self.sizes):
            raise PlanError(f"{self.describe()}: index out of range")
        return (*shape[:ax], self.sizes[self.index], *shape[ax + 1 :])

    def invertible(self, shapes: list[Shape], in_dtypes: list[str]) -> bool:
        return True  # together with the other parts: Plan.invert groups them into a concat

    def inverse(self, shapes: list[Shape], in_dtypes: list[str]) -> Transform:
        return Concat(self.axis, self.sizes)


@dataclass(frozen=True)
class Concat(Transform):
    """Concatenate the entry's sources along `axis` (separate q, k, v into a fused qkv)."""

    op: ClassVar[str] = "concat"
    n_inputs: ClassVar[int] = 0
    axis: int = 0
    sizes: tuple[int, ...] | None = None  # filled by propose/validation: needed to invert

    def out_shape(self, shapes: list[Shape]) -> Shape:
        self._check_inputs(shapes)
        first = shapes[0]
        ax = _axis(self.axis, len(first), self.describe())
        for s in shapes[1:]:
            if len(s) != len(first) or any(
                a != b for i, (a, b) in enumerate(zip(s, first, strict=True)) if i != ax
            ):
                raise PlanError(f"{self.describe()}: shapes {shapes} differ off the concat axis")
        if self.sizes is not None and tuple(s[ax] for s in shapes) != tuple(self.sizes):
            raise PlanError(f"{self.describe()}: input sizes {[s[ax] for s in shapes]} differ")
        return (*first[:ax], sum(s[ax] for s in shapes), *first[ax + 1 :])

    def out_dtype(self, in_dtypes: list[str]) -> str:
        if len(set(in_dtypes)) > 1:
            raise PlanError(f"{self.describe()}: inputs have different dtypes {in_dtypes}")
        return in_dtypes[0]

    def invertible(self, shapes: list[Shape], in_dtypes: list[str]) -> bool:
        return True

    def inverse(self, shapes: list[Shape], in_dtypes: list[str]) -> Transform:
        ax = _axis(self.axis, len(shapes[0]), self.describe())
        return Split(self.axis, tuple(s[ax] for s in shapes), 0)  # Plan.invert sets the index


@dataclass(frozen=True)
class Slice(Transform):
    """Keep rows [start, stop) along `axis` (a vocabulary shrank). Loses rows: not invertible."""

    op: ClassVar[str] = "slice"
    axis: int = 0
    start: int = 0
    stop: int = 0

    def out_shape(self, shapes: list[Shape]) -> Shape:
        self._check_inputs(shapes)
        shape = shapes[0]
        ax = _axis(self.axis, len(shape), self.describe())
        if not 0 <= self.start <= self.stop <= shape[ax]:
            raise PlanError(f"{self.describe()}: outside [0, {shape[ax]}]")
        return (*shape[:ax], self.stop - self.start, *shape[ax + 1 :])

    def invertible(self, shapes: list[Shape], in_dtypes: list[str]) -> bool:
        ax = _axis(self.axis, len(shapes[0]), self.describe())
        return self.start == 0 and self.stop == shapes[0][ax]

    def inverse(self, shapes: list[Shape], in_dtypes: list[str]) -> Transform:
        if not self.invertible(shapes, in_dtypes):
            raise PlanError(f"{self.describe()} drops rows: not invertible")
        return Slice(self.axis, 0, self.stop)


@dataclass(frozen=True)
class Pad(Transform):
    """Add `before`/`after` rows along `axis` (a vocabulary grew), filled per `init`."""

    op: ClassVar[str] = "pad"
    axis: int = 0
    before: int = 0
    after: int = 0
    init: str = "target"

    def __post_init__(self) -> None:
        if self.init not in PAD_INITS:
            raise PlanError(f"pad: init must be one of {', '.join(PAD_INITS)}, not {self.init!r}")
        if self.before < 0 or self.after < 0:
            raise PlanError("pad: before and after must be >= 0")

    def out_shape(self, shapes: list[Shape]) -> Shape:
        self._check_inputs(shapes)
        shape = shapes[0]
        ax = _axis(self.axis, len(shape), self.describe())
        return (*shape[:ax], shape[ax] + self.before + self.after, *shape[ax + 1 :])

    def invertible(self, shapes: list[Shape], in_dtypes: list[str]) -> bool:
        return True

    def inverse(self, shapes: list[Shape], in_dtypes: list[str]) -> Transform:
        ax = _axis(self.axis, len(shapes[0]), self.describe())
        return Slice(self.axis, self.before, self.before + shapes[0][ax])


@dataclass(frozen=True)
class WeightNormFuse(Transform):
    """weight = g * v / ||v|| (norm over every axis but `dim`): sources are [g, v]."""

    op: ClassVar[str] = "weight_norm_fuse"
    n_inputs: ClassVar[int] = 2
    dim: int = 0

    def out_shape(self, shapes: list[Shape]) -> Shape:
        self._check_inputs(shapes)
        g, v = shapes
        if len(g) != len(v) or prod(g) != v[_axis(self.dim, len(v), self.describe())]:
            raise PlanError(f"{self.describe()}: g {g} does not fit v {v}")
        return v

    def out_dtype(self, in_dtypes: list[str]) -> str:
        return in_dtypes[1]


TRANSFORMS: dict[str, type[Transform]] = {
    cls.op: cls for cls in (Transpose, Reshape, Cast, Split, Concat, Slice, Pad, WeightNormFuse)
}

_FIELD_TYPES: dict[str, type] = {"perm": tuple, "shape": tuple, "sizes": tuple}


def transform_from_dict(data: Any, where: str) -> Transform:
    """Build a transform from its YAML mapping; errors name `where` ('rules[2].transforms[0]')."""
    if isinstance(data, str):
        data = {"op": data}
    if not isinstance(data, dict) or "op" not in data:
        raise PlanError(f"{where}: a transform is a mapping with an 'op' key, got {data!r}")
    op = data["op"]
    cls = TRANSFORMS.get(op)
    if cls is None:
        raise PlanError(f"{where}: unknown transform op {op!r} (known: {', '.join(TRANSFORMS)})")
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key == "op":
            continue
        if key not in names:
            raise PlanError(
                f"{where}.{key}: unknown parameter of {op} (known: {', '.join(sorted(names))})"
            )
        kwargs[key] = _convert(value, key, where)
    try:
        return cls(**kwargs)
    except PlanError as e:
        raise PlanError(f"{where}: {e}") from None


def _convert(value: Any, key: str, where: str) -> Any:
    if _FIELD_TYPES.get(key) is tuple:
        if value is None:
            return None
        if not isinstance(value, list) or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in value
        ):
            raise PlanError(f"{where}.{key}: expected a list of integers, got {value!r}")
        return tuple(value)
    if key in ("axis", "start", "stop", "before", "after", "index", "dim") and (
        not isinstance(value, int) or isinstance(value, bool)
    ):
        raise PlanError(f"{where}.{key}: expected an integer, got {value!r}")
    if key in ("dtype", "init") and not isinstance(value, str):
        raise PlanError(f"{where}.{key}: expected a string, got {value!r}")
    return value


def chain_shape(
    transforms: list[Transform] | tuple[Transform, ...], shapes: list[Shape], in_dtypes: list[str]
) -> tuple[Shape, str]:
    """Output (shape, dtype) of a transform chain; the first transform takes every input."""
    if not transforms:
        if len(shapes) != 1:
            raise PlanError(f"{len(shapes)} sources need a transform that combines them (concat)")
        return shapes[0], in_dtypes[0]
    cur_shapes, cur_dtypes = shapes, in_dtypes
    for t in transforms:
        out = t.out_shape(cur_shapes)
        cur_shapes, cur_dtypes = [out], [t.out_dtype(cur_dtypes)]
    return cur_shapes[0], cur_dtypes[0]


def chain_inverse(
    transforms: list[Transform] | tuple[Transform, ...], shapes: list[Shape], in_dtypes: list[str]
) -> list[Transform]:
    """Inverse chain of a single-input chain (raises PlanError when a step is not invertible)."""
    steps: list[Transform] = []
    cur_shapes, cur_dtypes = shapes, in_dtypes
    for t in transforms:
        if not t.invertible(cur_shapes, cur_dtypes):
            raise PlanError(f"transform {t.describe()} cannot be inverted")
        steps.append(t.inverse(cur_shapes, cur_dtypes))
        cur_shapes, cur_dtypes = [t.out_shape(cur_shapes)], [t.out_dtype(cur_dtypes)]
    return list(reversed(steps))


__all__ = [
    "PAD_INITS",
    "TRANSFORMS",
    "Cast",
    "Concat",
    "Pad",
    "Reshape",
    "Slice",
    "Split",
    "Transform",
    "Transpose",
    "WeightNormFuse",
    "chain_inverse",
    "chain_shape",
    "transform_from_dict",
]
