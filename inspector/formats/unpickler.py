"""A restricted pickle machine: reads a pickle stream as data, never imports or calls anything.

The opcode loop is written here from scratch (protocols 0-5). A global is never imported: it
becomes `Record(cls="module.name", kind="global")`. Calling it (REDUCE, INST, OBJ) runs a
pure-Python *builder* from an allow-list when there is one (OrderedDict, set, torch's tensor
rebuild functions, ...: `allowlist.py` composes it), and otherwise yields
`Record(kind="unsupported-global")` (an `UnsafePickleError` in strict mode). Instantiating a
class without calling it (NEWOBJ, BUILD) yields `Record(kind="object")` holding the arguments and
state, which is how argparse.Namespace, OmegaConf containers and dataclasses appear.

Every malformed stream raises `PickleError` naming the file, the byte position and the opcode.
"""

from __future__ import annotations

import _compat_pickle
import codecs
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from ..errors import CheckpointError, PickleError, UnsafePickleError
from ..model import Record
from .allowlist import default_builders
from .pickle_build import AttrDict, Builder, BuildError

MAX_DEPTH = 256  # containers nested deeper than this are refused (consumers may recurse)
MAX_MEMO = 1 << 24  # memo entries
# Leaves and containers the tree has when shared containers are counted at every place they appear
# (what every consumer walking the tree will see): 60 lists of [x, x] would otherwise be 2**60.
MAX_EXPANDED = 1 << 24
MAX_LONG_BYTES = 1 << 16  # LONG1/LONG4 payload: far beyond any real integer

PersistentLoad = Callable[[Any], Any]


@dataclass(frozen=True)
class GlobalRef:
    """A global the stream would import: where and with which opcode."""

    module: str
    name: str
    opcode: str
    position: int

    @property
    def qualname(self) -> str:
        return f"{self.module}.{self.name}"


_UINTS = {
    1: struct.Struct("<B"),
    2: struct.Struct("<H"),
    4: struct.Struct("<I"),
    8: struct.Struct("<Q"),
}
_I32 = struct.Struct("<i")
_BOOL_LINES = {b"00": False, b"01": True}  # protocol 0 writes bools as INT 00 / 01
_MARK = object()  # sentinel in `items` of a Record built by SETITEMS/APPENDS


class Unpickler:
    """One run of the machine over `data`. `unsupported` lists the callables it refused."""

    _handlers: ClassVar[dict[int, Callable[[Unpickler], bool | None]]]  # see _handler_table

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._handlers = _handler_table(cls)

    def __init__(
        self,
        data: bytes | bytearray | memoryview | Any,
        *,
        path: str | None,
        key: str | None = None,
        persistent_load: PersistentLoad | None = None,
        strict: bool = False,
        builders: Mapping[str, Builder] | None = None,
    ):
        # bytes or an mmap: both slice to bytes and support find()
        self.data: Any = bytes(data) if isinstance(data, (memoryview, bytearray)) else data
        self.end = len(self.data)
        self.path = path
        self.key = key
        self.persistent_load = persistent_load
        self.strict = strict
        self.builders = default_builders() if builders is None else builders
        self.unsupported: list[str] = []
        self.globals: list[GlobalRef] = []

    # Entry points --------------------------------------------------------------------------------
    def load_at(self, pos: int = 0) -> tuple[Any, int]:
        """Run one pickle starting at `pos`; return its value and the position after STOP."""
        value, end = self._run(pos)
        _check_nesting(value, self)
        return value, end

    def _run(self, pos: int) -> tuple[Any, int]:
        self.pos, self.op_pos = pos, pos
        self.stack: list[Any] = []
        self.metastack: list[list[Any]] = []
        self.memo: dict[int, Any] = {}
        self.proto = 0
        ops, data = self._handlers, self.data
        try:
            while True:
                if self.pos >= self.end:
                    raise self.error("stream ends without STOP")
                self.op_pos = self.pos
                code = data[self.pos]
                self.pos += 1
                handler = ops.get(code)
                if handler is None:
                    raise self.error(f"unknown opcode 0x{code:02x}")
                if handler(self):
                    return self.stack.pop() if self.stack else None, self.pos
        except CheckpointError:
            raise
        except BuildError as e:
            what = f"{e.what} (pickle byte {self.op_pos})"
            raise e.error(self.path, what, key=self.key) from None
        except (IndexError, struct.error):
            raise self.error("stream ends inside an opcode's argument") from None
        except (TypeError, ValueError, OverflowError, KeyError, RecursionError) as e:
            raise self.error(f"malformed: {type(e).__name__}: {e}") from None

    def error(self, what: str) -> PickleError:
        code = self.data[self.op_pos] if self.op_pos < self.end else None
        name = _OPNAMES.get(code, "") if code is not None else "end of data"
        return PickleError(self.path, f"{what} (pickle byte {self.op_pos}, {name})", key=self.key)

    # Reading the stream ---------------------------------------------------------------------------
    def _take(self, n: int) -> bytes:
        pos = self.pos
        if n < 0 or pos + n > self.end:
            raise self.error(f"declares {n} bytes but only {self.end - pos} remain")
        self.pos = pos + n
        chunk: bytes = self.data[pos : pos + n]
        return chunk

    def _uint(self, n: int) -> int:
        fmt = _UINTS[n]
        value: int = fmt.unpack_from(self.data, self.pos)[0]
        self.pos += fmt.size
        return value

    def _line(self) -> bytes:
        nl = self.data.find(b"\n", self.pos)
        if nl < 0:
            raise self.error("line without a newline")
        line = bytes(self.data[self.pos : nl])
        self.pos = nl + 1
        return line

    def _push(self, value: Any) -> None:
        self.stack.append(value)

    def _pop(self) -> Any:
        if not self.stack:
            raise self.error("stack underflow")
        return self.stack.pop()

    def _top(self) -> Any:
        if not self.stack:
            raise self.error("stack underflow")
        return self.stack[-1]

    def _pop_mark(self) -> list[Any]:
        if not self.metastack:
            raise self.error("no MARK to pop to")
        items = self.stack
        self.stack = self.metastack.pop()
        return items

    # Opcodes: control -----------------------------------------------------------------------------
    def op_stop(self) -> bool:
        if len(self.stack) != 1 or self.metastack:
            raise self.error(f"STOP with {len(self.stack)} values on the stack")
        return True

    def op_proto(self) -> None:
        self.proto = self._uint(1)
        if self.proto > 5:
            raise self.error(f"unsupported protocol {self.proto}")

    def op_frame(self) -> None:
        n = self._uint(8)
        if self.pos + n > self.end:
            raise self.error(f"frame of {n} bytes runs past the end")

    def op_mark(self) -> None:
        if len(self.metastack) >= MAX_DEPTH:
            raise self.error(f"more than {MAX_DEPTH} nested MARKs")
        self.metastack.append(self.stack)
        self.stack = []

    def op_pop(self) -> None:
        if self.stack:
            self.stack.pop()
        else:
            self._pop_mark()

    def op_pop_mark(self) -> None:
        self._pop_mark()

    def op_dup(self) -> None:
        self._push(self._top())

    # Opcodes: scalars -----------------------------------------------------------------------------
    def op_none(self) -> None:
        self._push(None)

    def op_newtrue(self) -> None:
        self._push(True)

    def op_newfalse(self) -> None:
        self._push(False)

    def op_int(self) -> None:
        line = self._line()
        self._push(_BOOL_LINES[line] if line in _BOOL_LINES else int(line))

    def op_long(self) -> None:
        self._push(int(self._line().rstrip(b"L")))

    def op_binint(self) -> None:
        self.stack.append(_I32.unpack_from(self.data, self.pos)[0])
        self.pos += 4

    def op_binint1(self) -> None:
        self.stack.append(self.data[self.pos])
        self.pos += 1

    def op_binint2(self) -> None:
        self._push(self._uint(2))

    def _long(self, n: int) -> None:
        if n < 0 or n > MAX_LONG_BYTES:
            raise self.error(f"integer of {n} bytes")
        self._push(int.from_bytes(self._take(n), "little", signed=True))

    def op_long1(self) -> None:
        self._long(self._uint(1))

    def op_long4(self) -> None:
        self._long(int.from_bytes(self._take(4), "little", signed=True))

    def op_float(self) -> None:
        self._push(float(self._line()))

    def op_binfloat(self) -> None:
        self._push(struct.unpack(">d", self._take(8))[0])

    # Opcodes: strings and bytes -------------------------------------------------------------------
    def _text(self, raw: bytes) -> str:
        return raw.decode("utf-8", "surrogatepass")

    def _py2str(self, raw: bytes) -> str | bytes:
        # Python 2 `str`: torch.load decodes these as UTF-8; bytes that are not text stay bytes.
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return raw

    def op_string(self) -> None:
        line = self._line()
        if len(line) < 2 or line[0] != line[-1] or line[:1] not in (b"'", b'"'):
            raise self.error("STRING argument is not quoted")
        self._push(self._py2str(codecs.escape_decode(line[1:-1])[0]))

    def op_binstring(self) -> None:
        n = int.from_bytes(self._take(4), "little", signed=True)
        self._push(self._py2str(self._take(n)))

    def op_short_binstring(self) -> None:
        self._push(self._py2str(self._take(self._uint(1))))

    def op_unicode(self) -> None:
        self._push(self._line().decode("raw-unicode-escape"))

    def op_binunicode(self) -> None:
        self.stack.append(self._take(self._uint(4)).decode("utf-8", "surrogatepass"))

    def op_short_binunicode(self) -> None:
        self.stack.append(self._take(self._uint(1)).decode("utf-8", "surrogatepass"))

    def op_binunicode8(self) -> None:
        self._push(self._text(self._take(self._uint(8))))

    def op_binbytes(self) -> None:
        self._push(self._take(self._uint(4)))

    def op_short_binbytes(self) -> None:
        self._push(self._take(self._uint(1)))

    def op_binbytes8(self) -> None:
        self._push(self._take(self._uint(8)))

    def op_bytearray8(self) -> None:
        self._push(bytearray(self._take(self._uint(8))))

    def op_next_buffer(self) -> None:
        raise self.error("out-of-band buffers are not supported")

    def op_readonly_buffer(self) -> None:
        self._top()

    # Opcodes: containers --------------------------------------------------------------------------
    def op_empty_tuple(self) -> None:
        self._push(())

    def op_tuple(self) -> None:
        self._push(tuple(self._pop_mark()))

    def _tuple_n(self, n: int) -> None:
        if len(self.stack) < n:
            raise self.error("stack underflow")
        items = tuple(self.stack[-n:])
        del self.stack[-n:]
        self._push(items)

    def op_tuple1(self) -> None:
        self._tuple_n(1)

    def op_tuple2(self) -> None:
        self._tuple_n(2)

    def op_tuple3(self) -> None:
        self._tuple_n(3)

    def op_empty_list(self) -> None:
        self._push([])

    def op_list(self) -> None:
        self._push(self._pop_mark())

    def op_empty_dict(self) -> None:
        self._push({})

    def op_dict(self) -> None:
        self._push(dict(self._pairs(self._pop_mark())))

    def op_empty_set(self) -> None:
        self._push(set())

    def op_frozenset(self) -> None:
        self._push(frozenset(self._pop_mark()))

    def _pairs(self, items: list[Any]) -> list[tuple[Any, Any]]:
        if len(items) % 2:
            raise self.error("odd number of items for a dict")
        return list(zip(items[::2], items[1::2], strict=True))

    def op_append(self) -> None:
        value = self._pop()
        self._extend(self._top(), [value])

    def op_appends(self) -> None:
        items = self._pop_mark()
        self._extend(self._top(), items)

    def _extend(self, target: Any, items: list[Any]) -> None:
        if isinstance(target, list):
            target.extend(items)
        elif isinstance(target, Record):
            _record_items(target, list).extend(items)
        else:
            raise self.error(f"APPEND to a {type(target).__name__}")

    def op_setitem(self) -> None:
        value = self._pop()
        key = self._pop()
        self._update(self._top(), [(key, value)])

    def op_setitems(self) -> None:
        pairs = self._pairs(self._pop_mark())
        self._update(self._top(), pairs)

    def _update(self, target: Any, pairs: list[tuple[Any, Any]]) -> None:
        if isinstance(target, dict):
            target.update(pairs)
        elif isinstance(target, Record):
            _record_items(target, dict).update(pairs)
        else:
            raise self.error(f"SETITEM on a {type(target).__name__}")

    def op_additems(self) -> None:
        items = self._pop_mark()
        target = self._top()
        if isinstance(target, set):
            target.update(items)
        elif isinstance(target, Record):
            _record_items(target, list).extend(items)
        else:
            raise self.error(f"ADDITEMS on a {type(target).__name__}")

    # Opcodes: memo --------------------------------------------------------------------------------
    def _put(self, index: int) -> None:
        memo = self.memo
        if len(memo) >= MAX_MEMO and index not in memo:
            raise self.error(f"more than {MAX_MEMO} memo entries")
        memo[index] = self._top()

    def _get(self, index: int) -> None:
        value = self.memo.get(index, _MARK)
        if value is _MARK:
            raise self.error(f"memo entry {index} was never stored")
        self.stack.append(value)

    def op_put(self) -> None:
        self._put(int(self._line()))

    def op_binput(self) -> None:
        self._put(self.data[self.pos])
        self.pos += 1

    def op_long_binput(self) -> None:
        self._put(_UINTS[4].unpack_from(self.data, self.pos)[0])
        self.pos += 4

    def op_memoize(self) -> None:
        self._put(len(self.memo))

    def op_get(self) -> None:
        self._get(int(self._line()))

    def op_binget(self) -> None:
        self._get(self.data[self.pos])
        self.pos += 1

    def op_long_binget(self) -> None:
        self._get(_UINTS[4].unpack_from(self.data, self.pos)[0])
        self.pos += 4

    def op_ext(self) -> None:
        raise self.error("extension registry codes are not supported")

    # Opcodes: globals, calls, objects -------------------------------------------------------------
    def _global(self, module: str, name: str) -> Record:
        if self.proto < 3:  # Python 2 names, as pickle's fix_imports maps them
            if (module, name) in _compat_pickle.NAME_MAPPING:
                module, name = _compat_pickle.NAME_MAPPING[(module, name)]
            module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        opname = _OPNAMES[self.data[self.op_pos]]
        self.globals.append(GlobalRef(module, name, opname, self.op_pos))
        return Record(f"{module}.{name}", kind="global")

    def op_global(self) -> None:
        module = self._text(self._line())
        name = self._text(self._line())
        self._push(self._global(module, name))

    def op_stack_global(self) -> None:
        name = self._pop()
        module = self._pop()
        if not isinstance(module, str) or not isinstance(name, str):
            raise self.error("STACK_GLOBAL needs two strings")
        self._push(self._global(module, name))

    def op_reduce(self) -> None:
        args = self._pop()
        func = self._pop()
        if not isinstance(args, tuple):
            raise self.error(f"REDUCE arguments are a {type(args).__name__}, not a tuple")
        self._push(self.call(func, args))

    def call(self, func: Any, args: tuple[Any, ...]) -> Any:
        """What calling `func(*args)` yields: a builder's data, or an unsupported-global record."""
        name = func.cls if isinstance(func, Record) else type(func).__name__
        builder = self.builders.get(name) if _is_global(func) else None
        if builder is None:
            if self.strict:
                raise UnsafePickleError(
                    self.path,
                    f"pickle calls {name} (pickle byte {self.op_pos}), which is not on the "
                    "allow-list of data-only globals",
                    key=self.key,
                )
            if name not in self.unsupported:
                self.unsupported.append(name)
            return Record(name, kind="unsupported-global", args=args)
        try:
            return builder(*args)
        except (TypeError, ValueError, OverflowError) as e:
            raise BuildError(f"bad arguments for {name}: {e}") from None

    def _instantiate(self, cls: Any, args: tuple[Any, ...]) -> Any:
        if not _is_global(cls):
            raise self.error(f"instantiating a {type(cls).__name__}, not a class")
        builder = self.builders.get(cls.cls) if cls.cls in _CLASS_BUILDERS else None
        if builder is not None:
            return builder(*args)
        return Record(cls.cls, kind="object", args=args)

    def op_newobj(self) -> None:
        args = self._pop()
        cls = self._pop()
        if not isinstance(args, tuple):
            raise self.error("NEWOBJ arguments are not a tuple")
        self._push(self._instantiate(cls, args))

    def op_newobj_ex(self) -> None:
        kwargs = self._pop()
        args = self._pop()
        cls = self._pop()
        if not isinstance(args, tuple) or not isinstance(kwargs, dict):
            raise self.error("NEWOBJ_EX needs a tuple and a dict")
        self._push(self._instantiate(cls, (*args, kwargs) if kwargs else args))

    def op_inst(self) -> None:
        module = self._text(self._line())
        name = self._text(self._line())
        cls = self._global(module, name)
        args = tuple(self._pop_mark())
        # INST calls the class when it has arguments: the same rules as REDUCE apply.
        self._push(self.call(cls, args) if args else self._instantiate(cls, ()))

    def op_obj(self) -> None:
        items = self._pop_mark()
        if not items:
            raise self.error("OBJ without a class")
        cls, args = items[0], tuple(items[1:])
        self._push(self.call(cls, args) if args else self._instantiate(cls, ()))

    def op_build(self) -> None:
        state = self._pop()
        target = self._top()
        if isinstance(target, Record):
            _set_state(target, state)
        elif isinstance(target, AttrDict) and isinstance(state, dict):
            target.attrs.update(state)
        elif isinstance(target, AttrDict) and isinstance(state, tuple) and len(state) == 2:
            target.attrs.update(state[0] or {})
            target.attrs.update(state[1] or {})
        else:
            raise self.error(f"BUILD on a {type(target).__name__}")

    def op_persid(self) -> None:
        self._push(self._persistent(self._text(self._line())))

    def op_binpersid(self) -> None:
        self._push(self._persistent(self._pop()))

    def _persistent(self, pid: Any) -> Any:
        if self.persistent_load is None:
            raise self.error("persistent id in a pickle that has no external records")
        return self.persistent_load(pid)


def _is_global(value: Any) -> bool:
    return isinstance(value, Record) and value.kind == "global"


def _record_items(rec: Record, kind: type) -> Any:
    """Items added to an object record (dict or list subclasses): kept in its state."""
    state = rec.state if isinstance(rec.state, dict) else {}
    if "__items__" not in state:
        state = {**state, "__items__": kind()}
        if rec.state is not None and not isinstance(rec.state, dict):
            state["__state__"] = rec.state
        _set_raw_state(rec, state)
    items = state["__items__"]
    if not isinstance(items, kind):
        raise BuildError(f"{rec.cls} gets both list and dict items")
    return items


def _set_state(rec: Record, state: Any) -> None:
    if isinstance(rec.state, dict) and "__items__" in rec.state:
        merged = dict(rec.state)
        if isinstance(state, dict):
            merged.update(state)
        else:
            merged["__state__"] = state
        state = merged
    _set_raw_state(rec, state)


def _set_raw_state(rec: Record, state: Any) -> None:
    # BUILD updates an object that the memo may already share: it must keep its identity, so
    # the frozen record is updated in place (no other code path mutates a Record).
    object.__setattr__(rec, "state", state)


# Nesting and cycles ------------------------------------------------------------------------------


def _children(node: Any) -> list[Any] | None:
    if isinstance(node, dict):
        kids = [*node.keys(), *node.values()]
        if isinstance(node, AttrDict) and node.attrs:
            kids.append(node.attrs)
        return kids
    if isinstance(node, (list, tuple, set, frozenset)):
        return list(node)
    if isinstance(node, Record) and (node.args or node.state is not None):
        return [*node.args, node.state]
    return None


def _check_nesting(root: Any, machine: Unpickler) -> None:
    """Refuse containers nested deeper than MAX_DEPTH, or shared so that the tree expands past
    MAX_EXPANDED nodes (iteratively; each container is visited once). A container reached again
    while inside itself is a back-reference (legal in pickles: OmegaConf nodes point at their
    `_parent`); it counts as one leaf, as every consumer shows it as a reference."""
    height: dict[int, int] = {}
    size: dict[int, int] = {}  # nodes below and including a container, sharing expanded
    on_path: set[int] = set()
    kids = _children(root)
    if kids is None:
        return
    # frame: [container, children iterator, height below, expanded size below]
    stack: list[list[Any]] = [[root, iter(kids), 0, 0]]
    on_path.add(id(root))
    atoms = _ATOMS
    while stack:
        frame = stack[-1]
        for child in frame[1]:  # leaves (most of a tree) counted without leaving this loop
            if type(child) not in atoms:
                break
            frame[3] += 1
        else:
            child = _MARK
        if child is _MARK:
            stack.pop()
            on_path.discard(id(frame[0]))
            height[id(frame[0])] = frame[2] + 1
            size[id(frame[0])] = frame[3] + 1
            _grow(frame, 0, machine)  # its leaves were counted without a check
            if stack:
                stack[-1][2] = max(stack[-1][2], frame[2] + 1)
                _grow(stack[-1], frame[3] + 1, machine)
            continue
        cid = id(child)
        if cid in on_path:  # a back-reference (OmegaConf's `_parent`): shown as a reference
            _grow(frame, 1, machine)
            continue
        if cid in height:
            h = height[cid]
            _grow(frame, size[cid], machine)
        else:
            grandkids = _children(child)
            if grandkids is None:
                _grow(frame, 1, machine)
                continue
            if len(stack) >= MAX_DEPTH:
                raise PickleError(
                    machine.path, f"containers nested deeper than {MAX_DEPTH}", key=machine.key
                )
            stack.append([child, iter(grandkids), 0, 0])
            on_path.add(cid)
            continue
        if len(stack) + h > MAX_DEPTH:
            raise PickleError(
                machine.path, f"containers nested deeper than {MAX_DEPTH}", key=machine.key
            )
        frame[2] = max(frame[2], h)


# Values with no children, by exact type: counted as one node each, never looked into.
_ATOMS = frozenset({str, int, float, bool, bytes, type(None), complex})


def _grow(frame: list[Any], n: int, machine: Unpickler) -> None:
    frame[3] += n
    if frame[3] > MAX_EXPANDED:
        raise PickleError(
            machine.path,
            f"the pickle shares containers so that its tree expands past {MAX_EXPANDED} entries",
            key=machine.key,
        )


# Opcode table: byte -> handler method name (pickletools' names for messages). -------------------

_OPCODE_TABLE = [
    (b"(", "MARK", "op_mark"),
    (b".", "STOP", "op_stop"),
    (b"0", "POP", "op_pop"),
    (b"1", "POP_MARK", "op_pop_mark"),
    (b"2", "DUP", "op_dup"),
    (b"F", "FLOAT", "op_float"),
    (b"I", "INT", "op_int"),
    (b"J", "BININT", "op_binint"),
    (b"K", "BININT1", "op_binint1"),
    (b"L", "LONG", "op_long"),
    (b"M", "BININT2", "op_binint2"),
    (b"N", "NONE", "op_none"),
    (b"P", "PERSID", "op_persid"),
    (b"Q", "BINPERSID", "op_binpersid"),
    (b"R", "REDUCE", "op_reduce"),
    (b"S", "STRING", "op_string"),
    (b"T", "BINSTRING", "op_binstring"),
    (b"U", "SHORT_BINSTRING", "op_short_binstring"),
    (b"V", "UNICODE", "op_unicode"),
    (b"X", "BINUNICODE", "op_binunicode"),
    (b"a", "APPEND", "op_append"),
    (b"b", "BUILD", "op_build"),
    (b"c", "GLOBAL", "op_global"),
    (b"d", "DICT", "op_dict"),
    (b"}", "EMPTY_DICT", "op_empty_dict"),
    (b"e", "APPENDS", "op_appends"),
    (b"g", "GET", "op_get"),
    (b"h", "BINGET", "op_binget"),
    (b"i", "INST", "op_inst"),
    (b"j", "LONG_BINGET", "op_long_binget"),
    (b"l", "LIST", "op_list"),
    (b"]", "EMPTY_LIST", "op_empty_list"),
    (b"o", "OBJ", "op_obj"),
    (b"p", "PUT", "op_put"),
    (b"q", "BINPUT", "op_binput"),
    (b"r", "LONG_BINPUT", "op_long_binput"),
    (b"s", "SETITEM", "op_setitem"),
    (b"t", "TUPLE", "op_tuple"),
    (b")", "EMPTY_TUPLE", "op_empty_tuple"),
    (b"u", "SETITEMS", "op_setitems"),
    (b"G", "BINFLOAT", "op_binfloat"),
    (b"\x80", "PROTO", "op_proto"),
    (b"\x81", "NEWOBJ", "op_newobj"),
    (b"\x82", "EXT1", "op_ext"),
    (b"\x83", "EXT2", "op_ext"),
    (b"\x84", "EXT4", "op_ext"),
    (b"\x85", "TUPLE1", "op_tuple1"),
    (b"\x86", "TUPLE2", "op_tuple2"),
    (b"\x87", "TUPLE3", "op_tuple3"),
    (b"\x88", "NEWTRUE", "op_newtrue"),
    (b"\x89", "NEWFALSE", "op_newfalse"),
    (b"\x8a", "LONG1", "op_long1"),
    (b"\x8b", "LONG4", "op_long4"),
    (b"B", "BINBYTES", "op_binbytes"),
    (b"C", "SHORT_BINBYTES", "op_short_binbytes"),
    (b"\x8c", "SHORT_BINUNICODE", "op_short_binunicode"),
    (b"\x8d", "BINUNICODE8", "op_binunicode8"),
    (b"\x8e", "BINBYTES8", "op_binbytes8"),
    (b"\x8f", "EMPTY_SET", "op_empty_set"),
    (b"\x90", "ADDITEMS", "op_additems"),
    (b"\x91", "FROZENSET", "op_frozenset"),
    (b"\x92", "NEWOBJ_EX", "op_newobj_ex"),
    (b"\x93", "STACK_GLOBAL", "op_stack_global"),
    (b"\x94", "MEMOIZE", "op_memoize"),
    (b"\x95", "FRAME", "op_frame"),
    (b"\x96", "BYTEARRAY8", "op_bytearray8"),
    (b"\x97", "NEXT_BUFFER", "op_next_buffer"),
    (b"\x98", "READONLY_BUFFER", "op_readonly_buffer"),
]


def _handler_table(cls: type[Unpickler]) -> dict[int, Callable[[Unpickler], bool | None]]:
    """The handlers of `cls` by opcode: one table per class, shared by its machines (a table of
    bound methods per machine made each machine a reference cycle, freed only by the cycle
    collector, and cost a dict per pickle)."""
    return {code[0]: getattr(cls, method) for code, _, method in _OPCODE_TABLE}


Unpickler._handlers = _handler_table(Unpickler)
_OPNAMES = {code[0]: name for code, name, _ in _OPCODE_TABLE}

# Builders that NEWOBJ may use (classes whose __new__ makes plain data); all others give records.
_CLASS_BUILDERS = frozenset({"collections.OrderedDict", "builtins.set", "builtins.frozenset"})


# Public API --------------------------------------------------------------------------------------


def load(
    data: bytes | bytearray | memoryview | Any,
    *,
    path: str | None,
    persistent_load: PersistentLoad | None = None,
    strict: bool = False,
    key: str | None = None,
) -> Any:
    """The value of the pickle at the start of `data`, built as data (see the module docstring).

    `persistent_load` receives each persistent id and returns the leaf to put in the tree.
    """
    machine = Unpickler(data, path=path, key=key, persistent_load=persistent_load, strict=strict)
    return machine.load_at(0)[0]


@dataclass(frozen=True)
class GlobalScan:
    """What `scan_pickle` found: the globals in stream order, where the pickle ends (after STOP,
    or where the walk stopped) and, for a broken stream, why it stopped."""

    globals: list[GlobalRef]
    end: int
    error: CheckpointError | None = None


def scan_pickle(
    data: bytes | bytearray | memoryview | Any,
    *,
    path: str | None,
    offset: int = 0,
    end: int | None = None,
    key: str | None = None,
) -> GlobalScan:
    """Every global the pickle at `offset` would import, for `ckpt scan`; never raises for bad
    data. `end` bounds the stream (a member inside a larger mapped file). A broken stream gives
    the globals before the break and the error."""
    machine = _GlobalLister(
        data,
        path=path,
        key=key,
        persistent_load=lambda pid: Record("persistent-id", args=(pid,)),
        builders={},
    )
    if end is not None:
        machine.end = min(end, machine.end)
    try:
        _, stop = machine._run(offset)
    except CheckpointError as e:
        return GlobalScan(machine.globals, machine.pos, e)
    return GlobalScan(machine.globals, stop)


def scan_globals(
    data: bytes | bytearray | memoryview | Any,
    *,
    path: str | None,
    offset: int = 0,
    key: str | None = None,
) -> list[GlobalRef]:
    """Every global the pickle at `offset` would import; PickleError for a broken stream."""
    found = scan_pickle(data, path=path, offset=offset, key=key)
    if found.error is not None:
        raise found.error
    return found.globals


_SKIPPED_BYTES = 1 << 16  # longer strings are stepped over: a global's name is never that long


class _GlobalLister(Unpickler):
    """The same opcode loop, run to list globals. It builds no containers (items are dropped,
    so hostile sizes cost nothing), steps over long strings, and accepts what real pickle
    accepts but the reader refuses (non-string STACK_GLOBAL operands, extension codes, NEWOBJ
    or BUILD on what a call returned, STOP over extra values): a payload can hide behind any
    of those, so the walk must go on past them."""

    def _take(self, n: int) -> bytes:
        if n <= _SKIPPED_BYTES:
            return super()._take(n)
        if self.pos + n > self.end:
            raise self.error(f"declares {n} bytes but only {self.end - self.pos} remain")
        self.pos += n
        return b""

    def _line(self) -> bytes:
        if self.data.find(b"\n", self.pos, self.end) < 0:
            raise self.error("line without a newline")
        return super()._line()

    def op_stop(self) -> bool:
        return True

    def op_dict(self) -> None:
        self._pairs(self._pop_mark())
        self._push({})

    def op_frozenset(self) -> None:
        self._pop_mark()
        self._push(frozenset())

    def op_additems(self) -> None:
        self._pop_mark()
        self._top()

    def _extend(self, target: Any, items: list[Any]) -> None:
        pass

    def _update(self, target: Any, pairs: list[tuple[Any, Any]]) -> None:
        pass

    def op_build(self) -> None:
        self._pop()
        self._top()

    def _instantiate(self, cls: Any, args: tuple[Any, ...]) -> Any:
        return Record(cls.cls if _is_global(cls) else "?", kind="object")

    def op_stack_global(self) -> None:
        name = self._pop()
        module = self._pop()
        if isinstance(module, str) and isinstance(name, str):
            self._push(self._global(module, name))
            return
        # computed at load time (a call's result): "?" names what cannot be known here
        self.globals.append(GlobalRef("?", "?", "STACK_GLOBAL", self.op_pos))
        self._push(Record("?.?", kind="global"))

    def op_ext(self) -> None:
        opname = _OPNAMES[self.data[self.op_pos]]
        code = self._uint({"EXT1": 1, "EXT2": 2, "EXT4": 4}[opname])
        name = f"_extension_registry[{code}]"
        self.globals.append(GlobalRef("copyreg", name, opname, self.op_pos))
        self._push(Record(f"copyreg.{name}", kind="global"))
