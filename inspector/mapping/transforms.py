"""Transform specs attached to rules and plan entries: what happens to a tensor on its way.

A transform is a description, not a computation: it knows its output shape and dtype from its
inputs' shapes and dtypes, whether it can be undone, and its inverse. The byte work is done by the
apply step (numpy or the C++ kernels). In YAML a transform is a mapping with an `op` key:

    - {op: transpose, perm: [1, 0]}
    - {op: pad, axis: 0, before: 0, after: 996, init: target}

`TRANSFORMS` maps each op name to its class: extend the table, not the code that reads it.

Validation has two steps, both before any byte is touched: a transform checks its parameters
(types, ranges) when it is constructed, and `check(shapes, dtypes)` checks it against its inputs
(axes, sizes, element types the byte kernels handle). `check_chain` runs a whole chain and caps
every step's result (`max_bytes`), so a `pad` by two billion rows is refused, not allocated.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from math import prod
from typing import Any, ClassVar

from .. import dtypes
from ..errors import PlanError

Shape = tuple[int, ...]

# Element kinds (dtypes.DType.kind) the byte kernels move and decode to float64 (casts, pad
# fills, weight-norm), and those they encode back from it: floats to integers would lose values;
# complex and the quantized q* types have no kernel at all.
_DECODES = "fiub"
_ENCODES = "fb"


def decodable(name: str) -> bool:
    return name in dtypes.DTYPES and dtypes.get(name).kind in _DECODES and name[0] != "q"


def encodable(name: str) -> bool:
    return name in dtypes.DTYPES and dtypes.get(name).kind in _ENCODES


# Parameter types by field name: how a YAML value or a constructor argument is checked.
_INT_FIELDS = ("axis", "start", "stop", "before", "after", "index", "dim")
_INT_TUPLE_FIELDS = ("perm", "shape", "sizes")
_STR_FIELDS = ("dtype", "init")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


# How new rows of a `pad` are filled: zeros, the mean of the copied rows, N(0, std of the copied
# rows), or the target's own initialised values (the usual choice when a vocabulary grows).
PAD_INITS = ("zeros", "mean", "normal", "target")


@dataclass(frozen=True)
class Transform:
    """Base class. Subclasses are frozen dataclasses whose fields are the YAML parameters."""

    op: ClassVar[str] = ""
    n_inputs: ClassVar[int] = 1  # 0 means "one or more"

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in _INT_FIELDS and not _is_int(value):
                raise PlanError(f"{self.op}: {f.name} must be an integer, not {value!r}")
            if f.name in _STR_FIELDS and not isinstance(value, str):
                raise PlanError(f"{self.op}: {f.name} must be a string, not {value!r}")
            optional = value is None and f.default is None  # perm, concat's sizes
            if f.name in _INT_TUPLE_FIELDS and not optional and not (
                isinstance(value, tuple) and all(_is_int(v) for v in value)
            ):
                raise PlanError(f"{self.op}: {f.name} must be a list of integers, not {value!r}")
        self._validate()

    def _validate(self) -> None:
        """Ranges of the parameters, on their own (types are checked before)."""

    def check(
        self, shapes: list[Shape], in_dtypes: list[str], target: tuple[Shape, str] | None = None
    ) -> tuple[Shape, str]:
        """This transform's (shape, dtype) for these inputs, or a PlanError saying why it cannot
        be applied to them. `target`: the target tensor's (shape, dtype), where one is known."""
        self._check_inputs(shapes)
        if len(in_dtypes) != len(shapes):
            raise PlanError(f"{self.describe()}: {len(shapes)} shapes but {len(in_dtypes)} dtypes")
        out = self.out_shape(shapes)
        dtype = self.out_dtype(in_dtypes)
        self._check_dtypes(in_dtypes, target)
        return out, dtype

    def _check_dtypes(self, in_dtypes: list[str], target: tuple[Shape, str] | None) -> None:
        unknown = [d for d in in_dtypes if d not in dtypes.DTYPES]
        if unknown:
            raise PlanError(f"{self.describe()}: unknown dtype {unknown[0]!r}")
        # the byte kernels that move elements (copy_cast) handle the same types they decode
        for d in in_dtypes:
            if not decodable(d):
                raise PlanError(f"{self.describe()}: transforms of {d} tensors are not supported "
                                "(complex and quantized types have no kernel)")

    def _needs_kernel(self, decode: list[str], encode: str) -> None:
        """Refuse dtypes the float64 decode/encode kernels do not handle."""
        for d in decode:
            if not decodable(d):
                raise PlanError(f"{self.describe()}: cannot compute on {d} values")
        if not encodable(encode):
            raise PlanError(f"{self.describe()}: cannot produce {encode} values (computed values "
                            "are float or bool: float to integer would lose values, complex and "
                            "quantized types have no kernel)")

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

    def _validate(self) -> None:
        if self.perm is not None and sorted(self.perm) != list(range(len(self.perm))):
            n = len(self.perm)
            raise PlanError(f"{self.describe()}: perm is not a permutation of 0..{n - 1}")

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

    def _validate(self) -> None:
        if self.shape.count(-1) > 1 or any(d < -1 for d in self.shape):
            raise PlanError(f"{self.describe()}: at most one -1 and no other negative size")

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
class Unsqueeze(Transform):
    """A new axis of size 1 at `axis` (a position table [n, d] stored as [1, n, d]: WeNet)."""

    op: ClassVar[str] = "unsqueeze"
    axis: int = 0

    def out_shape(self, shapes: list[Shape]) -> Shape:
        self._check_inputs(shapes)
        shape = shapes[0]
        ax = _axis(self.axis, len(shape) + 1, self.describe())
        return (*shape[:ax], 1, *shape[ax:])

    def invertible(self, shapes: list[Shape], in_dtypes: list[str]) -> bool:
        return True

    def inverse(self, shapes: list[Shape], in_dtypes: list[str]) -> Transform:
        return Squeeze(_axis(self.axis, len(shapes[0]) + 1, self.describe()))


@dataclass(frozen=True)
class Squeeze(Transform):
    """Remove the axis `axis`, which must have size 1 (the inverse of `unsqueeze`)."""

    op: ClassVar[str] = "squeeze"
    axis: int = 0

    def out_shape(self, shapes: list[Shape]) -> Shape:
        self._check_inputs(shapes)
        shape = shapes[0]
        ax = _axis(self.axis, len(shape), self.describe())
        if shape[ax] != 1:
            raise PlanError(f"{self.describe()}: axis {self.axis} has size {shape[ax]}, not 1")
        return (*shape[:ax], *shape[ax + 1 :])

    def invertible(self, shapes: list[Shape], in_dtypes: list[str]) -> bool:
        return True

    def inverse(self, shapes: list[Shape], in_dtypes: list[str]) -> Transform:
        return Unsqueeze(_axis(self.axis, len(shapes[0]), self.describe()))


@dataclass(frozen=True)
class Cast(Transform):
    """Convert the element type. Invertible only when widening (no value can change)."""

    op: ClassVar[str] = "cast"
    dtype: str = "float32"

    def _validate(self) -> None:
        if self.dtype not in dtypes.DTYPES:
            raise PlanError(f"cast: unknown dtype {self.dtype!r}")

    def _check_dtypes(self, in_dtypes: list[str], target: tuple[Shape, str] | None) -> None:
        super()._check_dtypes(in_dtypes, target)
        if in_dtypes[0] != self.dtype:
            self._needs_kernel([in_dtypes[0]], self.dtype)

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

    def _validate(self) -> None:
        if self.sizes is None or not self.sizes or any(n < 0 for n in self.sizes):
            raise PlanError(f"{self.describe()}: sizes must be a non-empty list of sizes >= 0")
        if not 0 <= self.index < len(self.sizes):
            raise PlanError(f"{self.describe()}: index out of range for {len(self.sizes)} parts")

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

    def _validate(self) -> None:
        if self.sizes is not None and any(n < 0 for n in self.sizes):
            raise PlanError(f"{self.describe()}: sizes must be >= 0")

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

    def _validate(self) -> None:
        if not 0 <= self.start <= self.stop:
            raise PlanError(f"{self.describe()}: needs 0 <= start <= stop")

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
class Select(Transform):
    """Take entry `index` along `axis`, which goes away (one of stacked per-adapter tensors:
    `W[0]`). Loses the other entries: not invertible."""

    op: ClassVar[str] = "select"
    axis: int = 0
    index: int = 0

    def _validate(self) -> None:
        if self.index < 0:
            raise PlanError(f"{self.describe()}: index must be >= 0")

    def out_shape(self, shapes: list[Shape]) -> Shape:
        self._check_inputs(shapes)
        shape = shapes[0]
        ax = _axis(self.axis, len(shape), self.describe())
        if self.index >= shape[ax]:
            raise PlanError(f"{self.describe()}: index out of range for size {shape[ax]}")
        return (*shape[:ax], *shape[ax + 1 :])


@dataclass(frozen=True)
class Pad(Transform):
    """Add `before`/`after` rows along `axis` (a vocabulary grew), filled per `init`."""

    op: ClassVar[str] = "pad"
    axis: int = 0
    before: int = 0
    after: int = 0
    init: str = "target"

    def _validate(self) -> None:
        if self.init not in PAD_INITS:
            raise PlanError(f"pad: init must be one of {', '.join(PAD_INITS)}, not {self.init!r}")
        if self.before < 0 or self.after < 0:
            raise PlanError("pad: before and after must be >= 0")

    def out_shape(self, shapes: list[Shape]) -> Shape:
        self._check_inputs(shapes)
        shape = shapes[0]
        ax = _axis(self.axis, len(shape), self.describe())
        return (*shape[:ax], shape[ax] + self.before + self.after, *shape[ax + 1 :])

    def check(
        self, shapes: list[Shape], in_dtypes: list[str], target: tuple[Shape, str] | None = None
    ) -> tuple[Shape, str]:
        out, dtype = super().check(shapes, in_dtypes, target)
        if self.init == "target" and target is not None and tuple(target[0]) != out:
            raise PlanError(f"{self.describe()}: init 'target' needs a target of shape "
                            f"{list(out)}, the target has {list(target[0])}")
        return out, dtype

    def _check_dtypes(self, in_dtypes: list[str], target: tuple[Shape, str] | None) -> None:
        super()._check_dtypes(in_dtypes, target)
        if self.init != "target":
            self._needs_kernel([in_dtypes[0]], in_dtypes[0])
        elif target is not None and target[1] != in_dtypes[0]:
            self._needs_kernel([target[1]], in_dtypes[0])

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

    def _check_dtypes(self, in_dtypes: list[str], target: tuple[Shape, str] | None) -> None:
        super()._check_dtypes(in_dtypes, target)
        self._needs_kernel(in_dtypes, in_dtypes[1])


TRANSFORMS: dict[str, type[Transform]] = {
    cls.op: cls
    for cls in (
        Transpose, Reshape, Unsqueeze, Squeeze, Cast, Split, Concat, Slice, Select, Pad,
        WeightNormFuse,
    )
}


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
    if key in _INT_TUPLE_FIELDS:
        if value is None:
            return None
        if not isinstance(value, list) or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in value
        ):
            raise PlanError(f"{where}.{key}: expected a list of integers, got {value!r}")
        return tuple(value)
    if key in _INT_FIELDS and not _is_int(value):
        raise PlanError(f"{where}.{key}: expected an integer, got {value!r}")
    if key in _STR_FIELDS and not isinstance(value, str):
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
    return check_chain(transforms, shapes, in_dtypes)


def nbytes(shape: Shape, dtype: str) -> int:
    return prod(shape) * dtypes.get(dtype).itemsize


def check_chain(
    transforms: list[Transform] | tuple[Transform, ...],
    shapes: list[Shape],
    in_dtypes: list[str],
    *,
    target: tuple[Shape, str] | None = None,
    max_bytes: int | None = None,
) -> tuple[Shape, str]:
    """Check a chain against its inputs before any work: every step's `check`, and no step's
    result larger than `max_bytes`. Returns the chain's (shape, dtype); `target` is the target
    tensor's (shape, dtype), where it is known (a `pad` filled from the target's values)."""
    if not transforms:
        if len(shapes) != 1:
            raise PlanError(f"{len(shapes)} sources need a transform that combines them (concat)")
        return shapes[0], in_dtypes[0]
    cur_shapes, cur_dtypes = list(shapes), list(in_dtypes)
    for i, t in enumerate(transforms):
        try:
            out, dtype = t.check(cur_shapes, cur_dtypes, target)
        except PlanError as e:
            raise PlanError(f"transform[{i}] {e}") from None
        if max_bytes is not None and nbytes(out, dtype) > max_bytes:
            raise PlanError(f"transform[{i}] {t.describe()}: its result ({list(out)} {dtype}, "
                            f"{nbytes(out, dtype)} bytes) exceeds the limit of {max_bytes} bytes")
        cur_shapes, cur_dtypes = [out], [dtype]
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
    "Squeeze",
    "Transform",
    "Transpose",
    "Unsqueeze",
    "WeightNormFuse",
    "chain_inverse",
    "chain_shape",
    "check_chain",
    "decodable",
    "encodable",
    "transform_from_dict",
]
