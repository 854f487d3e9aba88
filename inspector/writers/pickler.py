"""A small protocol-2 pickler that writes what `torch.save` writes, without importing torch.

It emits the opcodes of Python's own pickler at protocol 2 (memo puts in the same places, so a
state dict pickles to the same bytes as torch.save's `data.pkl`). Tensors become
`torch._utils._rebuild_tensor_v2(persistent storage id, offset, size, stride, requires_grad,
OrderedDict())`, parameters `_rebuild_parameter(tensor, requires_grad, OrderedDict())`. Values the
readers kept as `Record`s are re-emitted as the calls they came from (objects as NEWOBJ + BUILD,
as protocol 2 pickles argparse.Namespace); a record that cannot be (a numpy array, a defaultdict)
is refused with a `WriteError` naming where it is, and so is a call to a global the safe reader
did not recognise as data (`os.system(...)`) unless `keep_unknown_globals` asks for it. Records of
kind "call" are calls a writer builds itself (DCP's `.metadata`: `torch.Size(...)`,
`torch.serialization._get_layout("torch.strided")`), pickled as GLOBAL + args + REDUCE.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

from ..containers import dotted
from ..errors import WriteError
from ..formats.unpickler import AttrDict
from ..model import Record

# pickle opcodes used at protocol 2
PROTO, STOP, MARK = b"\x80", b".", b"("
NONE, NEWTRUE, NEWFALSE = b"N", b"\x88", b"\x89"
BININT, BININT1, BININT2, LONG1, BINFLOAT = b"J", b"K", b"M", b"\x8a", b"G"
BINUNICODE, GLOBAL, REDUCE, BUILD, NEWOBJ, BINPERSID = b"X", b"c", b"R", b"b", b"\x81", b"Q"
EMPTY_TUPLE, TUPLE, TUPLE1, TUPLE2, TUPLE3 = b")", b"t", b"\x85", b"\x86", b"\x87"
EMPTY_LIST, APPEND, APPENDS, EMPTY_DICT, SETITEM, SETITEMS = b"]", b"a", b"e", b"}", b"s", b"u"
BINPUT, LONG_BINPUT, BINGET, LONG_BINGET = b"q", b"r", b"h", b"j"
_TUPLE_N = {1: TUPLE1, 2: TUPLE2, 3: TUPLE3}
_BATCH = 1000  # pickle's batch size for APPENDS / SETITEMS

# Python 3 module names that protocol 2 writes under their Python 2 names (pickle fix_imports).
_PY2_MODULES = {"builtins": "__builtin__", "copyreg": "copy_reg"}

# Records kept by the readers that pickle back as a plain call: class name -> global to call.
_CALL_RECORDS = {"torch.device": "torch.device", "torch.Size": "torch.Size"}

_LATIN1 = "latin1"  # one object, so pickle's identity memo shares it as Python's pickler does

# The storage class of tensors whose dtype has no typed storage class in torch (persistent_id
# then gives the storage's size in bytes, and the tensor is rebuilt with its dtype).
UNTYPED_STORAGE = "torch.storage.UntypedStorage"

# Tensor-like output leaves are recognised by duck typing: anything with these attributes.
PersistentId = Callable[[Any], tuple[str, str, str, int]]


class TorchPickler:
    """`dumps(tree)`; `persistent_id(tensor)` returns (storage class, key, location, numel) for a
    tensor leaf (an object with `storage_offset`, `shape`, `strides`, `storage`)."""

    def __init__(self, persistent_id: PersistentId, label: str = "output", *,
                 keep_unknown_globals: bool = False):
        self.persistent_id = persistent_id
        self.label = label
        self.keep_unknown_globals = keep_unknown_globals
        self.out = bytearray()
        self.memo: dict[Any, int] = {}
        self._keep: list[Any] = []  # objects memoized by id stay alive, so ids are not reused
        self._path: list[str | int] = []

    def dumps(self, obj: Any) -> bytes:
        self.out += PROTO + b"\x02"
        self.save(obj)
        self.out += STOP
        return bytes(self.out)

    # -- memo -----------------------------------------------------------------------------------
    def _put(self, key: Any = None, obj: Any = None) -> None:
        i = len(self.memo)
        if key is None:
            key = ("fresh", i)
        if obj is not None:
            self._keep.append(obj)
        self.memo[key] = i
        self.out += BINPUT + bytes([i]) if i < 256 else LONG_BINPUT + struct.pack("<I", i)

    def _get(self, key: Any) -> bool:
        i = self.memo.get(key)
        if i is None:
            return False
        self.out += BINGET + bytes([i]) if i < 256 else LONG_BINGET + struct.pack("<I", i)
        return True

    # -- dispatch -------------------------------------------------------------------------------
    def save(self, obj: Any) -> None:
        if obj is None:
            self.out += NONE
        elif obj is True or obj is False:
            self.out += NEWTRUE if obj else NEWFALSE
        elif isinstance(obj, int):
            self._int(obj)
        elif isinstance(obj, float):
            self.out += BINFLOAT + struct.pack(">d", obj)
        elif isinstance(obj, str):
            self._str(obj)
        elif isinstance(obj, bytes):
            self._bytes(obj)
        elif hasattr(obj, "storage_offset") and hasattr(obj, "strides"):
            self._tensor(obj)
        elif isinstance(obj, AttrDict):
            self._ordered_dict(obj)
        elif isinstance(obj, dict):
            self._dict(obj)
        elif isinstance(obj, list):
            self._list(obj)
        elif isinstance(obj, tuple):
            self._tuple(obj)
        elif isinstance(obj, (set, frozenset)):
            self._reduce_global(f"builtins.{type(obj).__name__}", (list(obj),), obj)
        elif isinstance(obj, Record):
            self._record(obj)
        else:
            self._refuse(f"a {type(obj).__name__} value cannot be written into a torch pickle")

    def _refuse(self, what: str) -> None:
        where = dotted(tuple(self._path)) or "<top>"
        raise WriteError(f"{self.label}: {where!r}: {what}")

    def _int(self, x: int) -> None:
        if 0 <= x < 256:
            self.out += BININT1 + bytes([x])
        elif 0 <= x < 65536:
            self.out += BININT2 + struct.pack("<H", x)
        elif -(2**31) <= x < 2**31:
            self.out += BININT + struct.pack("<i", x)
        else:
            raw = x.to_bytes((x.bit_length() + 8) // 8, "little", signed=True)
            if x < 0 and len(raw) > 1 and raw[-1] == 0xFF and raw[-2] & 0x80:
                raw = raw[:-1]
            self.out += LONG1 + bytes([len(raw)]) + raw

    def _str(self, s: str, *, by_value: bool = False) -> None:
        """Strings of the tree are memoized by identity, as pickle does (the reader kept the
        original's sharing); the storage id's strings by value, as torch shares them."""
        key = ("str", s) if by_value else ("id", id(s))
        if self._get(key):
            return
        raw = s.encode("utf-8", "surrogatepass")
        self.out += BINUNICODE + struct.pack("<I", len(raw)) + raw
        self._put(key, s)

    def _bytes(self, b: bytes) -> None:
        if not b:
            self._reduce_global("builtins.bytes", (), b)
        else:
            self._reduce_global("_codecs.encode", (b.decode("latin1"), _LATIN1), b)

    def _global(self, qualname: str) -> None:
        if self._get(("global", qualname)):
            return
        module, _, name = qualname.rpartition(".")
        module = _PY2_MODULES.get(module, module)
        self.out += GLOBAL + module.encode() + b"\n" + name.encode() + b"\n"
        self._put(("global", qualname))

    def _tuple(self, t: tuple[Any, ...], *, fresh: bool = False) -> None:
        """`fresh`: a tuple made for this call (torch builds a new one each time): no memo get."""
        if not t:
            self.out += EMPTY_TUPLE
            return
        if not fresh and self._get(("id", id(t))):
            return
        if len(t) <= 3:
            self._items(t)
            self.out += _TUPLE_N[len(t)]
        else:
            self.out += MARK
            self._items(t)
            self.out += TUPLE
        if fresh:
            self._put()
        else:
            self._put(("id", id(t)), t)

    def _items(self, items: tuple[Any, ...] | list[Any]) -> None:
        for i, v in enumerate(items):
            self._path.append(i)
            self.save(v)
            self._path.pop()

    def _list(self, lst: list[Any]) -> None:
        if self._get(("id", id(lst))):
            return
        self.out += EMPTY_LIST
        self._put(("id", id(lst)), lst)
        for lo in range(0, len(lst), _BATCH):
            batch = lst[lo : lo + _BATCH]
            if len(batch) == 1:
                self._path.append(lo)
                self.save(batch[0])
                self._path.pop()
                self.out += APPEND
            else:
                self.out += MARK
                for i, v in enumerate(batch):
                    self._path.append(lo + i)
                    self.save(v)
                    self._path.pop()
                self.out += APPENDS

    def _dict(self, d: dict[Any, Any]) -> None:
        if self._get(("id", id(d))):
            return
        self.out += EMPTY_DICT
        self._put(("id", id(d)), d)
        self._setitems(d)

    def _setitems(self, d: dict[Any, Any]) -> None:
        items = list(d.items())
        for lo in range(0, len(items), _BATCH):
            batch = items[lo : lo + _BATCH]
            if len(batch) != 1:
                self.out += MARK
            for k, v in batch:
                self.save(k)
                self._path.append(k)
                self.save(v)
                self._path.pop()
            self.out += SETITEM if len(batch) == 1 else SETITEMS

    def _ordered_dict(self, d: AttrDict) -> None:
        if self._get(("id", id(d))):
            return
        if "default_factory" in d.attrs:
            self._refuse("a defaultdict cannot be written back (its factory is code)")
        self._global("collections.OrderedDict")
        self.out += EMPTY_TUPLE + REDUCE
        self._put(("id", id(d)), d)
        self._setitems(d)
        if d.attrs:
            self._dict(dict(d.attrs))
            self.out += BUILD

    def _reduce_global(self, func: str, args: tuple[Any, ...], obj: Any) -> None:
        if self._get(("id", id(obj))):
            return
        self._global(func)
        self._tuple(args, fresh=True)
        self.out += REDUCE
        self._put(("id", id(obj)), obj)

    def _record(self, r: Record) -> None:
        if self._get(("id", id(r))):
            return
        if r.kind == "unsupported-global" and not self.keep_unknown_globals:
            self._refuse(f"a call to {r.cls}, which the safe reader did not recognise as data, "
                         "would run on torch.load; it is written only on request "
                         "(keep_unknown_globals)")
        if r.cls in _CALL_RECORDS or r.kind in ("unsupported-global", "call"):
            self._global(_CALL_RECORDS.get(r.cls, r.cls))
            self._tuple(tuple(r.args), fresh=True)
            self.out += REDUCE
        elif r.kind == "global":
            self._global(r.cls)
            return
        elif r.kind == "object" and not r.cls.startswith("numpy."):
            self._global(r.cls)
            self._tuple(tuple(r.args), fresh=True)
            self.out += NEWOBJ
        else:
            self._refuse(f"{r.cls} values cannot be written back into a torch pickle")
        self._put(("id", id(r)), r)
        if r.state is not None and r.kind == "object" and r.cls not in _CALL_RECORDS:
            self.save(r.state)
            self.out += BUILD

    def _tensor(self, t: Any) -> None:
        if self._get(("id", id(t))):
            return
        if getattr(t, "is_parameter", False):
            self._global("torch._utils._rebuild_parameter")
            self._tensor_v2(t, requires_grad=False)
            self._put()
            self.out += NEWTRUE if t.requires_grad else NEWFALSE
            self._empty_ordered_dict()
            self.out += TUPLE3
            self._put()
            self.out += REDUCE
        else:
            self._tensor_v2(t, requires_grad=t.requires_grad)
        self._put(("id", id(t)), t)

    def _tensor_v2(self, t: Any, *, requires_grad: bool) -> None:
        """`_rebuild_tensor_v2(storage, ...)`, or for an untyped storage (dtypes without a typed
        storage class in torch: float8, uint16-64, complex32) `_rebuild_tensor_v3(..., dtype)`,
        as torch.save writes them."""
        storage_class, key, location, numel = self.persistent_id(t)
        v3 = storage_class == UNTYPED_STORAGE
        self._global("torch._utils._rebuild_tensor_v3" if v3 else "torch._utils._rebuild_tensor_v2")
        self.out += MARK
        self.out += MARK
        self._str("storage", by_value=True)
        self._global(storage_class)
        self._str(key, by_value=True)
        self._str(location, by_value=True)
        self._int(numel)
        self.out += TUPLE
        self._put()
        self.out += BINPERSID
        self._int(t.storage_offset)
        self._tuple(tuple(t.shape), fresh=True)
        self._tuple(tuple(t.strides), fresh=True)
        self.out += NEWTRUE if requires_grad else NEWFALSE
        self._empty_ordered_dict()
        if v3:
            self._global(f"torch.{t.dtype}")
        self.out += TUPLE
        self._put()
        self.out += REDUCE

    def _empty_ordered_dict(self) -> None:
        self._global("collections.OrderedDict")
        self.out += EMPTY_TUPLE + REDUCE
        self._put()
