"""Fuzz: the C++ torch pickle fast path (formats.pickle_fast) against the Python machine.

On any bytes the fast path either declines, or builds exactly the tree the Python machine
builds (same types, values, sharing, storages asked for); it never accepts what the Python
machine refuses, and never crashes. Both modes: torch.save's data.pkl (`try_load`, the strict
machine with storages) and records (`try_load_records`, a DCP `.metadata`: the machine not
strict, no persistent ids). `check` is also what tests/test_pickle_fast.py runs.
"""

from collections.abc import Callable
from typing import Any

import common

with common.instrumented():
    from inspector import dtypes
    from inspector.errors import CheckpointError
    from inspector.formats import dcp
    from inspector.formats.pickle_build import AttrDict
    from inspector.formats.pickle_fast import read_dcp_metadata, try_load, try_load_records
    from inspector.formats.torch_pickle import parse_storage_id, storage_dtype
    from inspector.formats.unpickler import load
    from inspector.model import ByteSource, Record, Storage, TensorInfo


class Storages:
    """persistent_load for a bare data.pkl: one Storage per key, as torch_zip's table makes."""

    def __init__(self) -> None:
        self.by_key: dict[str, Storage] = {}

    def load(self, pid: Any) -> Storage:
        _, stype, key, _, numel = parse_storage_id(pid, length=5, path="fuzz.pkl", key="data.pkl")
        found = self.by_key.get(key)
        if found is None:
            dtype = storage_dtype(stype, path="fuzz.pkl", key=key)
            nbytes = numel * dtypes.get(dtype).itemsize
            found = Storage(key, dtype, nbytes, ByteSource("fuzz.bin", 0, nbytes))
            self.by_key[key] = found
        return found


def check(data: bytes) -> bool:
    """Both modes against the Python machine; True when the fast path read `data` in either
    (and agreed with the Python machine)."""
    torch_mode = check_torch(data)
    records_mode = check_records(data)
    return check_dcp_columns(data) or records_mode or torch_mode


def check_dcp_columns(data: bytes) -> bool:
    """The DCP columns against what the DCP reader makes of the Python machine's tree: read
    only where the tree is a Metadata the reader accepts, and then saying the same."""
    handled, columns = read_dcp_metadata(data)
    try:
        meta = load(data, path="fuzz.pkl", strict=False)
        if not (isinstance(meta, Record) and meta.cls.startswith("torch.distributed.checkpoint.")):
            raise CheckpointError("fuzz.pkl", "not a Metadata record")
        reference: Any = dcp.from_tree("fuzz", meta)
    except CheckpointError as e:
        reference = e
    if not handled:
        return False
    try:
        got: Any = dcp.from_columns("fuzz", columns)
    except CheckpointError as e:  # a dtype the table lacks: the tree's path says the same
        got = e
    if isinstance(got, CheckpointError):
        assert isinstance(reference, CheckpointError), (got, reference)
        assert type(got) is type(reference)
        assert str(got) == str(reference)
        return True
    refused = isinstance(reference, CheckpointError)
    assert not refused, f"the columns read what the tree refuses: {reference}"
    assert got[0] == reference[0]  # specs: values (the columns share equal tuples)
    assert got[1] == reference[1]
    assert_same(got[2], reference[2], {}, {})
    return True


def check_records(data: bytes) -> bool:
    """Records mode against the Python machine, not strict; True when the fast path read it."""
    handled, fast = try_load_records(data)
    return _agrees(handled, fast, lambda: load(data, path="fuzz.pkl", strict=False))


def check_torch(data: bytes) -> bool:
    """torch.save mode; True when the fast path read `data` (and agreed)."""
    fast_storages, slow_storages = Storages(), Storages()
    handled, fast = try_load(data, fast_storages.load)
    slow = lambda: load(data, path="fuzz.pkl", persistent_load=slow_storages.load)  # noqa: E731
    if not _agrees(handled, fast, slow):
        return False
    assert list(fast_storages.by_key.items()) == list(slow_storages.by_key.items())
    return True


def _agrees(handled: bool, fast: Any, slow_load: Callable[[], Any]) -> bool:
    """The Python machine's verdict on the stream against the fast path's: never accepted where
    it refuses, the same tree where both read it. True when the fast path read it."""
    try:
        slow = slow_load()
    except CheckpointError as e:
        refused: CheckpointError | None = e
    else:
        refused = None
    if refused is not None:
        assert not handled, f"the fast path accepted what the Python machine refuses: {refused}"
        return False
    if handled:
        assert_same(fast, slow, {}, {})
    return handled


_SHARED = (dict, list, tuple, TensorInfo, Storage, Record)


def assert_same(a: Any, b: Any, a_to_b: dict[int, Any], b_to_a: dict[int, Any]) -> None:
    """`a` and `b` are the same tree field by field: exact types, equal leaves, and an object
    shared in one is shared, at the same places, in the other."""
    assert type(a) is type(b), (type(a), type(b))
    if isinstance(a, _SHARED):
        seen = a_to_b.get(id(a))
        if seen is not None:
            assert seen is b, "sharing differs"
            return
        assert id(b) not in b_to_a, "sharing differs"
        a_to_b[id(a)], b_to_a[id(b)] = b, a  # keeps both alive: ids stay unique
    if isinstance(a, dict):
        assert list(a.keys()) == list(b.keys())
        for (ka, va), (kb, vb) in zip(a.items(), b.items(), strict=True):
            assert_same(ka, kb, a_to_b, b_to_a)
            assert_same(va, vb, a_to_b, b_to_a)
        if isinstance(a, AttrDict):
            assert_same(a.attrs, b.attrs, a_to_b, b_to_a)
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            assert_same(x, y, a_to_b, b_to_a)
    elif isinstance(a, Record):
        assert (a.cls, a.kind) == (b.cls, b.kind), (a, b)
        assert_same(a.args, b.args, a_to_b, b_to_a)
        assert_same(a.state, b.state, a_to_b, b_to_a)
    elif isinstance(a, TensorInfo):
        for field in ("name", "dtype", "shape", "strides", "storage_offset", "is_parameter",
                      "requires_grad"):
            x, y = getattr(a, field), getattr(b, field)
            assert type(x) is type(y), (field, x, y)
            assert x == y, (field, x, y)
        assert_same(a.storage, b.storage, a_to_b, b_to_a)
    elif isinstance(a, float) and a != a:
        assert b != b  # NaN
    else:
        assert a == b, (a, b)


def TestOneInput(data: bytes) -> None:
    check(data)


if __name__ == "__main__":
    common.main(TestOneInput)
