"""What torch writes into its pickles, rebuilt as data: tensors, parameters, storages, dtypes.

Shared by the zip and legacy readers. Builders turn `torch._utils._rebuild_tensor_v2(storage,
offset, size, stride, ...)` into a `TensorInfo` (a strided view of a `Storage` that the reader's
persistent_load made), validating the view against the storage it claims.
"""

from __future__ import annotations

import functools
from dataclasses import replace
from typing import Any

from .. import dtypes
from ..errors import DtypeError, PickleError, ShapeError
from ..model import Record, Storage, TensorInfo, element_span
from .pickle_build import Builder, BuildError

MAX_DIMS = 64

# Storage classes that carry no dtype of their own (their tensors name it): bytes.
_UNTYPED_STORAGES = frozenset({"torch.UntypedStorage", "torch.storage.UntypedStorage"})
_STORAGE_MODULES = ("torch.", "torch.cuda.")
PARAMETER_CLASSES = frozenset({"torch.nn.parameter.Parameter", "torch.nn.Parameter"})


@functools.cache
def storage_classes() -> dict[str, tuple[str, int]]:
    """Every storage class name a pickle may name -> (dtype, itemsize): the one table of them,
    for `storage_dtype` and for the compiled fast path."""
    table = {name: ("uint8", 1) for name in _UNTYPED_STORAGES}
    for prefix in _STORAGE_MODULES:
        for short, d in dtypes.BY_STORAGE.items():
            table.setdefault(prefix + short, (d.name, d.itemsize))
    return table


def storage_dtype(storage_type: Any, *, path: str | None, key: str) -> str:
    """The dtype of a pickled storage class (`torch.FloatStorage`, `torch.UntypedStorage`, ...)."""
    if not isinstance(storage_type, Record) or storage_type.kind != "global":
        raise PickleError(path, f"storage type is a {type(storage_type).__name__}", key=key)
    found = storage_classes().get(storage_type.cls)
    if found is None:
        raise DtypeError(path, f"unknown storage type {storage_type.cls}", key=key)
    return found[0]


def _torch_dtype(value: Any) -> str:
    if isinstance(value, Record) and value.kind == "global" and value.cls.startswith("torch."):
        try:
            return dtypes.get(value.cls.removeprefix("torch.")).name
        except KeyError:
            pass
    raise BuildError(f"unknown tensor dtype {value}", DtypeError)


def _ints(value: Any, what: str) -> tuple[int, ...]:
    if not isinstance(value, (tuple, list)) or len(value) > MAX_DIMS:
        raise BuildError(f"tensor {what} is not a tuple of at most {MAX_DIMS} ints", ShapeError)
    for v in value:
        if type(v) is not int or v < 0:
            raise BuildError(
                f"tensor {what} {value!r} has a negative or non-integer entry", ShapeError
            )
    return tuple(value)


def tensor_view(
    storage: Any, offset: Any, size: Any, stride: Any, dtype: str | None, requires_grad: Any = False
) -> TensorInfo:
    """A TensorInfo viewing `storage`, checked to stay inside it."""
    if not isinstance(storage, Storage):
        raise BuildError(f"tensor storage is a {type(storage).__name__}, not a storage record")
    shape, strides = _ints(size, "shape"), _ints(stride, "stride")
    if len(shape) != len(strides):
        raise BuildError(f"tensor shape {shape} and stride {strides} differ in length", ShapeError)
    if type(offset) is not int or offset < 0:
        raise BuildError(f"tensor storage offset {offset!r} is not a non-negative int", ShapeError)
    dtype = dtype or storage.dtype
    itemsize = dtypes.get(dtype).itemsize
    lo, hi = element_span(shape, strides, offset)
    if hi > lo and hi * itemsize > storage.nbytes:
        raise BuildError(
            f"tensor of shape {list(shape)}, stride {list(strides)}, offset {offset} ({dtype}) "
            f"reaches byte {hi * itemsize} of storage {storage.key!r} holding {storage.nbytes}",
            ShapeError,
        )
    return TensorInfo("", dtype, shape, strides, offset, storage, requires_grad=bool(requires_grad))


def rebuild_tensor(storage: Any, offset: Any, size: Any, stride: Any) -> TensorInfo:
    return tensor_view(storage, offset, size, stride, None)


def rebuild_tensor_v2(
    storage: Any,
    offset: Any,
    size: Any,
    stride: Any,
    requires_grad: Any = False,
    hooks: Any = None,
    metadata: Any = None,
) -> TensorInfo:
    return tensor_view(storage, offset, size, stride, None, requires_grad)


def rebuild_tensor_v3(
    storage: Any,
    offset: Any,
    size: Any,
    stride: Any,
    requires_grad: Any,
    hooks: Any,
    dtype: Any,
    metadata: Any = None,
) -> TensorInfo:
    """torch >= 2.1 for dtypes without a typed storage class: an untyped storage and a dtype."""
    return tensor_view(storage, offset, size, stride, _torch_dtype(dtype), requires_grad)


def rebuild_parameter(
    data: Any, requires_grad: Any = True, hooks: Any = None, state: Any = None
) -> TensorInfo:
    if not isinstance(data, TensorInfo):
        raise BuildError(f"parameter data is a {type(data).__name__}, not a tensor")
    return replace(data, is_parameter=True, requires_grad=bool(requires_grad))


def rebuild_from_type_v2(func: Any, new_type: Any, args: Any, state: Any = None) -> Any:
    """Tensor subclasses (Parameter saved by newer torch): rebuild the tensor, keep the class."""
    rebuild = _TENSOR_REBUILDERS.get(func.cls) if isinstance(func, Record) else None
    if rebuild is None or not isinstance(args, tuple):
        raise BuildError(f"_rebuild_from_type_v2 with unsupported function {func}")
    t = rebuild(*args)
    if isinstance(new_type, Record) and new_type.cls in PARAMETER_CLASSES:
        t = replace(t, is_parameter=True)
    return t


def rebuild_meta_tensor(dtype: Any, size: Any, stride: Any, requires_grad: Any = False) -> Record:
    """A tensor on the meta device has no bytes: shown as a record with its dtype and shape."""
    state = {
        "dtype": _torch_dtype(dtype),
        "shape": _ints(size, "shape"),
        "stride": _ints(stride, "stride"),
    }
    return Record("torch.Tensor", kind="object", args=("meta",), state=state)


def torch_size(dims: Any = ()) -> tuple[int, ...]:
    return _ints(dims, "size")


def torch_device(*args: Any) -> Record:
    return Record("torch.device", kind="object", args=args)


_TENSOR_REBUILDERS: dict[str, Builder] = {
    "torch._utils._rebuild_tensor": rebuild_tensor,
    "torch._utils._rebuild_tensor_v2": rebuild_tensor_v2,
    "torch._utils._rebuild_tensor_v3": rebuild_tensor_v3,
    "torch._utils._rebuild_parameter": rebuild_parameter,
    "torch._utils._rebuild_parameter_with_state": rebuild_parameter,
}

TORCH_BUILDERS: dict[str, Builder] = {
    **_TENSOR_REBUILDERS,
    "torch._tensor._rebuild_from_type_v2": rebuild_from_type_v2,
    "torch._utils._rebuild_meta_tensor_no_storage": rebuild_meta_tensor,
    "torch.Size": torch_size,
    "torch.device": torch_device,
}


def check_root(tree: Any, *, path: str | None, key: str) -> None:
    """Refuse a top-level object built by calling a global outside the allow-list (data.pkl's
    dict made by a REDUCE of builtins.dict, say): torch.load(weights_only=True) refuses such a
    file, and the tensors it holds would be hidden inside an opaque record (a listing of none)."""
    if isinstance(tree, Record) and tree.kind == "unsupported-global":
        raise PickleError(
            path,
            f"the top-level object is built by calling {tree.cls} (REDUCE), which "
            "torch.load(weights_only=True) refuses; its tensors cannot be listed",
            key=key,
        )


def parse_storage_id(pid: Any, *, length: int, path: str | None, key: str) -> tuple[Any, ...]:
    """Check the shape of a ('storage', type, key, location, numel, ...) persistent id."""
    if not isinstance(pid, tuple) or len(pid) != length or pid[0] != "storage":
        raise PickleError(path, f"unsupported persistent id {str(pid)[:120]}", key=key)
    if not isinstance(pid[2], str) or type(pid[4]) is not int or pid[4] < 0:
        raise PickleError(path, f"malformed storage id {str(pid)[:120]}", key=key)
    return pid
