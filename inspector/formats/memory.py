"""In-memory objects: a dict of torch tensors or numpy arrays, or an `nn.Module`.

torch is never imported here: a torch object is recognised by its type's module, and by then the
caller has imported torch already.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import dtypes
from ..errors import CheckpointError, DtypeError
from ..model import ByteSource, Record, Storage, TensorInfo, contiguous_strides
from . import Loaded

FORMAT = "memory"


def _is_torch(obj: Any, cls_name: str) -> bool:
    return any(
        c.__module__.startswith("torch") and c.__name__ == cls_name for c in type(obj).__mro__
    )


def read(obj: Any) -> Loaded:
    if _is_torch(obj, "Module"):
        children = {name: _class_name(child) for name, child in obj.named_children()}
        meta = {"object": type(obj).__name__, "module_classes": children}
        return Loaded(FORMAT, _convert(obj.state_dict(), {}), meta)
    if not isinstance(obj, (dict, list, tuple)):
        raise CheckpointError(None, f"cannot open an object of type {type(obj).__name__}")
    return Loaded(FORMAT, _convert(obj, {}))


def _class_name(obj: Any) -> str:
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


def _convert(node: Any, storages: dict[Any, Storage], done: dict[int, Any] | None = None) -> Any:
    """The tree with tensors replaced by TensorInfo; a container shared by several places is
    converted once and shared again (so a DAG stays a DAG, never an exponential tree, and a
    container holding itself stays a cycle)."""
    done = {} if done is None else done
    if isinstance(node, (dict, list, tuple)) and id(node) in done:
        return done[id(node)]
    if isinstance(node, np.ndarray):
        return _from_numpy(node)
    if _is_torch(node, "Tensor"):
        return _from_torch(node, storages)
    if isinstance(node, dict):
        out: Any = {}
        done[id(node)] = out
        out.update((k, _convert(v, storages, done)) for k, v in node.items())
        return out
    if isinstance(node, list):  # registered before its items: a list may hold itself
        done[id(node)] = out = []
        out.extend(_convert(v, storages, done) for v in node)
        return out
    if isinstance(node, tuple):
        done[id(node)] = out = tuple(_convert(v, storages, done) for v in node)
        return out
    if node is None or isinstance(node, (bool, int, float, str, bytes)):
        return node
    return Record(_class_name(node), state=repr(node)[:200])


def _from_numpy(a: np.ndarray) -> TensorInfo:
    try:
        d = dtypes.from_numpy(a.dtype)
    except KeyError:
        raise DtypeError(None, f"numpy dtype {a.dtype} is not supported") from None
    a = np.require(a, requirements="C")  # not ascontiguousarray: it makes 0-d arrays 1-d
    if a.dtype.byteorder == ">":
        a = a.astype(a.dtype.newbyteorder("<"))
    src = ByteSource(None, 0, a.nbytes, buffer=a.reshape(-1).view(np.uint8))
    storage = Storage(f"numpy:{id(a)}", d.name, a.nbytes, src)
    return TensorInfo("", d.name, tuple(a.shape), contiguous_strides(tuple(a.shape)), 0, storage)


def _from_torch(t: Any, storages: dict[Any, Storage]) -> TensorInfo:
    dtype = str(t.dtype).removeprefix("torch.")
    try:
        d = dtypes.get(dtype)
    except KeyError:
        raise DtypeError(None, f"torch dtype {t.dtype} is not supported") from None
    t = t.detach()
    if t.device.type == "meta":
        src = ByteSource(None, 0, 0, buffer=None)
        storage = Storage(f"meta:{id(t)}", d.name, 0, src)
    else:
        if t.device.type != "cpu":
            t = t.cpu()
        us = t.untyped_storage()
        key = (us.data_ptr(), us.nbytes())
        storage = storages.get(key)  # type: ignore[assignment]
        if storage is None:
            import torch  # the caller holds torch tensors: torch is imported already

            raw = torch.empty(0, dtype=torch.uint8).set_(us).numpy()
            src = ByteSource(None, 0, us.nbytes(), buffer=raw)
            storage = Storage(f"torch:{us.data_ptr():x}", d.name, us.nbytes(), src)
            storages[key] = storage
    is_param = _is_torch(t, "Parameter")
    return TensorInfo(
        "",
        d.name,
        tuple(t.shape),
        tuple(t.stride()),
        t.storage_offset(),
        storage,
        is_parameter=is_param,
        requires_grad=bool(t.requires_grad),
    )
