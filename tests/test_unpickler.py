"""The restricted pickle machine: plain data round-trips, objects become records, nothing runs."""

from __future__ import annotations

import argparse
import collections
import json
import pickle
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inspector.errors import PickleError, UnsafePickleError
from inspector.formats.unpickler import AttrDict, load, scan_globals
from inspector.model import Record

PROTOCOLS = range(pickle.HIGHEST_PROTOCOL + 1)

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**200), max_value=2**200)
    | st.floats(allow_nan=False)
    | st.text()
    | st.binary()
)
keys = st.text(max_size=8) | st.integers()
data = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.dictionaries(keys, inner, max_size=5)
        | st.tuples(inner, inner)
        | st.lists(inner, max_size=5).map(tuple)
        | st.frozensets(keys, max_size=4)
        | st.sets(keys, max_size=4)
    ),
    max_leaves=30,
)


@settings(max_examples=150, deadline=None)
@given(value=data, protocol=st.sampled_from(list(PROTOCOLS)))
def test_plain_data_round_trips(value: object, protocol: int) -> None:
    assert load(pickle.dumps(value, protocol=protocol), path="p") == value


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_shared_references_stay_shared(protocol: int) -> None:
    inner = [1, 2]
    out = load(pickle.dumps({"a": inner, "b": inner}, protocol=protocol), path="p")
    assert out["a"] is out["b"]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_builtin_types_from_the_allow_list(protocol: int) -> None:
    value = {
        "od": collections.OrderedDict([("x", 1), ("y", [2])]),
        "slice": slice(1, 10, 2),
        "complex": complex(1.5, -2),
        "bytearray": bytearray(b"\x00\xffab"),
        "range": range(3, 9, 2),
        "counter": collections.Counter("aab"),
    }
    out = load(pickle.dumps(value, protocol=protocol), path="p")
    assert out == value
    assert isinstance(out["od"], AttrDict)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_state_only_classes_become_object_records(protocol: int) -> None:
    ns = argparse.Namespace(lr=0.1, layers=[1, 2], name="x")
    out = load(pickle.dumps({"args": ns}, protocol=protocol), path="p")["args"]
    assert out == Record("argparse.Namespace", kind="object", state=vars(ns))


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_numpy_scalars_are_numbers_and_arrays_records(protocol: int) -> None:
    value = {"f": np.float32(1.5), "i": np.int64(-7), "a": np.arange(4, dtype=np.int16)}
    out = load(pickle.dumps(value, protocol=protocol), path="p")
    assert out["f"] == 1.5
    assert out["i"] == -7
    arr = out["a"]
    assert isinstance(arr, Record)
    assert arr.cls == "numpy.ndarray"
    assert arr.state[1] == (4,)
    assert bytes(arr.state[4]) == np.arange(4, dtype=np.int16).tobytes()


class Evil:
    def __reduce__(self):  # type: ignore[no-untyped-def]
        import os

        return (os.system, ("echo pwned",))


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_unknown_callable_becomes_a_record_or_strict_error(protocol: int) -> None:
    blob = pickle.dumps({"x": Evil()}, protocol=protocol)
    out = load(blob, path="evil.pkl")
    assert out["x"].kind == "unsupported-global"
    assert out["x"].cls in ("posix.system", "os.system")
    assert out["x"].args == ("echo pwned",)
    with pytest.raises(UnsafePickleError, match=r"evil\.pkl.*system"):
        load(blob, path="evil.pkl", strict=True)


def test_persistent_load_receives_the_id() -> None:
    class P(pickle.Pickler):
        def persistent_id(self, obj):  # type: ignore[no-untyped-def]
            return ("storage", obj.decode()) if isinstance(obj, bytes) else None

    import io

    buf = io.BytesIO()
    P(buf, protocol=2).dump({"w": b"abc"})
    out = load(buf.getvalue(), path="p", persistent_load=lambda pid: ("got", pid))
    assert out == {"w": ("got", ("storage", "abc"))}
    with pytest.raises(PickleError, match="persistent id"):
        load(buf.getvalue(), path="p")


def test_scan_globals_resolves_stack_global_through_the_memo() -> None:
    def s(text: str) -> bytes:
        return b"\x8c" + bytes([len(text)]) + text.encode()

    blob = (
        b"\x80\x04" + s("os") + b"\x94" + s("system") + b"\x94" + b"\x93"  # os.system
        + b"\x94" + b"0" + b"h\x00h\x01\x93" + b"0"  # again from memo strings, then popped
        + b"N."
    )  # fmt: skip
    refs = scan_globals(blob, path="p")
    assert [(r.module, r.name, r.opcode) for r in refs] == [
        ("os", "system", "STACK_GLOBAL"),
        ("os", "system", "STACK_GLOBAL"),
    ]
    assert refs[0].position == 16  # 2 (PROTO) + 4 + 1 + 8 + 1


def test_scan_globals_sees_py2_names_mapped() -> None:
    refs = scan_globals(b"c__builtin__\neval\n.", path="p")
    assert refs[0].qualname == "builtins.eval"
    assert refs[0].opcode == "GLOBAL"


@pytest.mark.parametrize(
    ("blob", "what"),
    [
        (b"", "without STOP"),
        (b"\x80\x02]q\x00(K\x01", "without STOP"),
        (b"\x80\x02X\xff\xff\xff\x7fabc.", "declares 2147483647 bytes"),
        (b"\x80\x02\xff.", "unknown opcode 0xff"),
        (b"\x80\x02h\x05.", "memo entry 5"),
        (b"\x80\x02a.", "stack underflow"),
        (b"\x80\x02K\x01K\x02.", "STOP with 2 values"),
        (b"\x80\x021.", "no MARK"),
        (b"\x80\x09N.", "protocol 9"),
        (b"\x80\x02}(K\x01u.", "odd number"),
        (b"\x80\x02K\x01K\x02b.", "BUILD on a int"),
        (b"\x80\x02\x8b" + struct.pack("<i", 10**8) + b".", "integer of"),
        (b"\x80\x02}]K\x01s.", "unhashable"),
        (b"\x80\x05\x97.", "out-of-band"),
        (b"\x80\x02\x82\x01.", "extension registry"),
        (b"\x80\x02NN\x93.", "STACK_GLOBAL needs two strings"),
        (b"Ixyz\n.", "malformed"),
    ],
)
def test_malformed_streams_raise_pickle_error(blob: bytes, what: str) -> None:
    with pytest.raises(PickleError, match=what) as e:
        load(blob, path="bad.pkl", key="archive/data.pkl")
    assert "bad.pkl" in str(e.value)
    assert "archive/data.pkl" in str(e.value)


def test_deep_nesting_is_refused_and_cycles_are_loaded() -> None:
    deep = b"\x80\x02" + b"]" * 100_000 + b"a" * 99_999 + b"."
    with pytest.raises(PickleError, match="nested deeper"):
        load(deep, path="p")
    marks = b"\x80\x02" + b"(" * 100_000 + b"."
    with pytest.raises(PickleError, match="nested MARK"):
        load(marks, path="p")
    cycle = load(b"\x80\x02]q\x00h\x00a.", path="p")  # l = [l]: legal, as in pickle
    assert cycle[0] is cycle
    wide_dag = b"\x80\x02]" + b"\x94\x85" * 200 + b"."  # 200 nested tuples of one: fine
    assert load(wide_dag, path="p") is not None


# d = {'cfg': DictConfig-like object whose state points back at d and at itself}
_RECORD_CYCLE = (
    b"\x80\x02}q\x00"  # d = {}, memo 0
    b"X\x03\x00\x00\x00cfg"
    b"comegaconf.dictconfig\nDictConfig\n)\x81q\x01"  # NEWOBJ, memo 1
    b"}q\x02X\x07\x00\x00\x00_parenth\x00s"  # state = {'_parent': d,
    b"X\x04\x00\x00\x00selfh\x01s"  # 'self': the record}
    b"b"  # BUILD
    b"s."  # d['cfg'] = rec
)


def test_a_record_pointing_back_up_the_tree_loads_with_its_back_references() -> None:
    tree = load(_RECORD_CYCLE, path="p")
    rec = tree["cfg"]
    assert isinstance(rec, Record)
    assert rec.cls == "omegaconf.dictconfig.DictConfig"
    assert rec.state["_parent"] is tree
    assert rec.state["self"] is rec


def test_back_references_do_not_lift_the_sharing_bound() -> None:
    top: list[object] = []
    x: object = top  # the innermost list is a back-reference to the top
    for _ in range(30):
        x = [x, x]  # shared: 2**30 places once expanded
    top.append(x)
    with pytest.raises(PickleError, match="expands past"):
        load(pickle.dumps(top, protocol=2), path="p")


def _shape(root: object) -> list[tuple[object, ...]]:
    """A canonical listing of a graph of dicts and lists: per container in first-visit order its
    kind and items, containers named by their visit index (so sharing and cycles compare)."""
    index: dict[int, int] = {}
    order: list[object] = []

    def ref(x: object) -> object:
        if isinstance(x, (dict, list)):
            if id(x) not in index:
                index[id(x)] = len(order)
                order.append(x)
            return ("#", index[id(x)])
        return x

    ref(root)
    out: list[tuple[object, ...]] = []
    i = 0
    while i < len(order):
        node = order[i]
        if isinstance(node, dict):
            out.append(("dict", *((k, ref(v)) for k, v in node.items())))
        else:
            assert isinstance(node, list)
            out.append(("list", *(ref(v) for v in node)))
        i += 1
    return out


@st.composite
def _graphs(draw: st.DrawFn) -> object:
    """Up to 12 dicts/lists whose items are ints or any of the containers (cycles included)."""
    n = draw(st.integers(1, 12))
    nodes: list[dict[str, object] | list[object]] = [
        {} if draw(st.booleans()) else [] for _ in range(n)
    ]
    for node in nodes:
        targets = draw(st.lists(st.one_of(st.integers(-3, 3), st.integers(0, n - 1).map(
            lambda j: ("node", j))), max_size=4))
        items = [nodes[t[1]] if isinstance(t, tuple) else t for t in targets]
        if isinstance(node, dict):
            node.update((f"k{i}", v) for i, v in enumerate(items))
        else:
            node.extend(items)
    return nodes[0]


@settings(max_examples=200, deadline=None)
@given(_graphs(), st.integers(0, 5))
def test_shared_and_cyclic_containers_load_as_pickle_builds_them(graph: object, proto: int) -> None:
    from inspector.plaintree import to_plain

    blob = pickle.dumps(graph, protocol=proto)
    ours = load(blob, path="p")
    assert _shape(ours) == _shape(pickle.loads(blob))
    json.dumps(to_plain(ours))  # finite, whatever the cycles


def test_records_pointing_back_at_themselves_compare_without_recursing() -> None:
    a, b = load(_RECORD_CYCLE, path="p"), load(_RECORD_CYCLE, path="p")
    assert a["cfg"] == b["cfg"]
    assert a == b
    c = load(_RECORD_CYCLE.replace(b"DictConfig", b"ListConfig"), path="p")
    assert a["cfg"] != c["cfg"]
