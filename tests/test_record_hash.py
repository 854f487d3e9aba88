"""`Record.__hash__` (issue 12): agrees with equality, tells DCP keys apart, and is bounded.

DCP's `.metadata` is a dict keyed by `MetadataIndex` records, one per tensor; a hash of the class
alone made every key collide (8k tensors: 20 s). The hash must still terminate on records that
point back at themselves (OmegaConf's `_parent`) and look at a bounded part of a record however
large or deep its state: a hash that walks everything is a denial of service.
"""

from __future__ import annotations

import random
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from inspector.model import HASH_BUDGET, Record

_LEAVES = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=5),
    st.binary(max_size=5),
)


def _values(leaves: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.recursive(
        leaves,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4),
            st.lists(inner, max_size=4).map(tuple),
            st.dictionaries(st.text(max_size=3), inner, max_size=4),
            st.builds(Record, st.sampled_from(["a.A", "b.B"]), st.sampled_from(["object"]),
                      st.lists(inner, max_size=2).map(tuple), inner),
        ),
        max_leaves=20,
    )


def _reordered(value: Any, rng: random.Random) -> Any:
    """An equal copy with every dict's insertion order shuffled (and ints as floats)."""
    if isinstance(value, Record):
        return Record(value.cls, value.kind, _reordered(value.args, rng),
                      _reordered(value.state, rng))
    if isinstance(value, dict):
        items = list(value.items())
        rng.shuffle(items)
        return {k: _reordered(v, rng) for k, v in items}
    if isinstance(value, (list, tuple)):
        return type(value)(_reordered(v, rng) for v in value)
    if type(value) is int and abs(value) < 2**52:
        return float(value)
    return value


@given(state=_values(_LEAVES), args=st.lists(_values(_LEAVES), max_size=3), seed=st.integers())
def test_equal_records_hash_alike(state: Any, args: list[Any], seed: int) -> None:
    a = Record("m.C", "object", tuple(args), state)
    b = _reordered(a, random.Random(seed))
    assert a == b
    assert hash(a) == hash(b)


def _metadata_index(fqn: str) -> Record:
    return Record(
        "torch.distributed.checkpoint.metadata.MetadataIndex",
        state={"fqn": fqn, "offset": Record("torch.Size", args=((0, 0),)), "index": 0},
    )


def test_dcp_keys_do_not_collide() -> None:
    keys = [_metadata_index(f"layers.{i}.weight") for i in range(2000)]
    assert len({hash(k) for k in keys}) > 1990
    table = dict.fromkeys(keys)
    assert len(table) == len(keys)
    assert all(_metadata_index(f"layers.{i}.weight") in table for i in range(0, 2000, 97))


def test_a_record_that_points_back_at_itself_hashes() -> None:
    parent = Record("omegaconf.DictConfig", state={"_content": {}, "_parent": None})
    child = Record("omegaconf.DictConfig", state={"_content": {"x": 1}, "_parent": parent})
    parent.state["_content"]["child"] = child
    parent.state["self"] = parent
    twin = Record("omegaconf.DictConfig", state={"_content": {}, "_parent": None})
    twin_child = Record("omegaconf.DictConfig", state={"_content": {"x": 1}, "_parent": twin})
    twin.state["_content"]["child"] = twin_child
    twin.state["self"] = twin
    assert parent == twin
    assert hash(parent) == hash(twin)
    assert hash(child) == hash(twin_child)


def test_deep_state_hashes_without_recursing_to_the_bottom() -> None:
    deep: Any = 0
    for _ in range(100_000):  # far past the interpreter's recursion limit
        deep = [deep]
    assert isinstance(hash(Record("m.C", state=deep)), int)


class _CountedInt(int):
    seen = 0

    def __hash__(self) -> int:
        _CountedInt.seen += 1
        return int.__hash__(self)


def test_wide_state_hash_looks_at_a_bounded_part() -> None:
    wide = [_CountedInt(i) for i in range(100_000)]
    keyed = {str(i): _CountedInt(i) for i in range(100_000)}
    _CountedInt.seen = 0
    hash(Record("m.C", args=(wide,), state=keyed))
    assert 0 < _CountedInt.seen <= HASH_BUDGET
