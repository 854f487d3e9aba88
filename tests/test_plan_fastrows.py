"""Plan rows read through `planfile._entry_fast` (the inline check that builds an `Entry` without
`__init__`) are the same rows `_entry` builds, and every row `_entry` refuses is refused with its
message: the fast path only declines (None) and leaves the row to `_entry`."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
from typing import Any

import pytest

from inspector.errors import PlanError
from inspector.mapping import planfile
from inspector.mapping.entries import Entry
from inspector.mapping.plan import Plan

LABELS = {"a.pt"}
GOOD: dict[str, Any] = {
    "decision": "copy", "status": "approved", "reason": "same name", "confidence": 0.9,
    "shape": [2, 3], "dtype": "float32",
    "sources": [["a.pt", "x.w", [2, 3], "float16"]], "flags": ["heuristic", "dtype-change"],
    "evidence": [["exact-name", "same name in a.pt", 1.0], ["shape", "[2, 3]", 1]],
    "candidates": [["a.pt", "x.w", 0.9, "why"]],
}


def variants() -> list[Any]:
    out: list[Any] = [GOOD, {"decision": "keep"}, {"decision": "drop", "confidence": 1}]
    changes: list[tuple[str, Any]] = [
        ("decision", "move"), ("decision", None), ("status", "done"), ("status", ["approved"]),
        ("confidence", True), ("confidence", 1.5), ("confidence", float("nan")),
        ("confidence", "0.5"), ("reason", 3), ("dtype", None), ("shape", [2, -1]),
        ("shape", [2, True]), ("shape", (2, 3)), ("sources", [["b.pt", "x.w", [2, 3], "f"]]),
        ("sources", [["a.pt", "x.w", [2, 3]]]), ("sources", []), ("sources", "a.pt"),
        ("sources", [["a.pt", 1, [2, 3], "f"]]), ("flags", ["nope"]), ("flags", "heuristic"),
        ("flags", [["heuristic"]]), ("evidence", [["a", "b"]]), ("evidence", ["a", "b", 1]),
        ("candidates", [["a", "b", 1]]), ("candidates", {"a": 1}), ("extra", 1),
        ("transform", [{"op": "transpose"}]),
    ]
    for key, value in changes:
        row = copy.deepcopy(GOOD)
        row[key] = value
        out.append(row)
    return out


def _every_field(e: Entry) -> list[Any]:
    """Each field's value in order (an unset slot raises AttributeError)."""
    return [getattr(e, f.name) for f in dataclasses.fields(e)]


@pytest.mark.parametrize("body", variants())
def test_fast_row_is_the_checked_row_or_declines(body: Any) -> None:
    fast = planfile._entry_fast("t", body, LABELS)
    try:
        slow = planfile._entry("t", body, "plan: entries['t']", LABELS)
    except PlanError:
        assert fast is None  # a row _entry refuses never passes the fast path
        return
    assert fast is None or (fast == slow and _every_field(fast) == _every_field(slow))


def test_good_rows_take_the_fast_path() -> None:
    fast = planfile._entry_fast("t", GOOD, LABELS)
    assert fast is not None
    assert fast == planfile._entry("t", GOOD, "w", LABELS)
    assert fast.flags == frozenset({"heuristic", "dtype-change"})
    assert fast.effective == "copy"
    assert hash(fast.evidence[0]) == hash(planfile._entry("t", GOOD, "w", LABELS).evidence[0])


def test_bad_row_in_a_file_names_the_file_row_and_problem(tmp_path: Any) -> None:
    plan = {"version": 1, "sources": [{"label": "a.pt", "path": None}],
            "target": {"label": "t.pt", "path": None},
            "entries": {"good": GOOD, "bad": {**GOOD, "shape": [2, -1]}}}
    path = tmp_path / "p.yaml"
    path.write_text(planfile.dump(plan))
    assert '  "bad": {' in path.read_text()  # one row per line: the fast reader's layout
    with pytest.raises(PlanError) as e:
        Plan.load(path)
    assert str(e.value).startswith(f"{path}: entries['bad'].shape: expected a shape")


def test_rows_built_without_init_have_every_field(tmp_path: Any) -> None:
    """`entries.built` sets the fields it is given, not `__init__`: a field added to Entry but
    not to the fast paths (plan rows read, heuristic copies proposed) would be an unset slot
    (AttributeError when read); compare with __init__."""
    import numpy as np
    from safetensors.numpy import save_file

    from inspector.mapping.propose import propose

    small = np.zeros((2, 2), np.float32)
    save_file({f"layers.{i}.w": small for i in range(3)}, str(tmp_path / "s.safetensors"))
    save_file({f"model.layers.{i}.w": small for i in range(3)}, str(tmp_path / "t.safetensors"))
    plan = propose(str(tmp_path / "s.safetensors"), str(tmp_path / "t.safetensors"))
    plan.save(tmp_path / "p.yaml")
    fields = [f.name for f in dataclasses.fields(Entry)]
    for e in [*plan.entries.values(), *Plan.load(tmp_path / "p.yaml").entries.values()]:
        values = {f: getattr(e, f) for f in fields}  # an unset slot raises AttributeError
        assert e == Entry(**values)


# Every field of a row, and every key of the plan, given a value of each JSON type: the row is
# read or refused with a PlanError, never another exception (CI's fuzzer found `evidence: 1.5`
# raising TypeError), and the fast path agrees with `_entry`.
ODD_VALUES: list[Any] = [0, 0.0, 1.5, True, "", "x", {}, {"a": 1}, [], [1], [[1]], [None], None]


@pytest.mark.parametrize("key", [*GOOD, "transform"])
@pytest.mark.parametrize("value", ODD_VALUES, ids=repr)
def test_any_value_in_any_field_is_read_or_refused_with_plan_error(key: str, value: Any) -> None:
    body = {**copy.deepcopy(GOOD), key: value}
    test_fast_row_is_the_checked_row_or_declines(body)


@pytest.mark.parametrize("column", range(4))
@pytest.mark.parametrize("value", ODD_VALUES, ids=repr)
def test_any_value_in_a_row_column_is_read_or_refused(column: int, value: Any) -> None:
    for key in ("evidence", "candidates", "sources"):
        body = copy.deepcopy(GOOD)
        if column < len(body[key][0]):
            body[key][0][column] = value
            test_fast_row_is_the_checked_row_or_declines(body)


@pytest.mark.parametrize("key", ["version", "sources", "target", "rules", "entries", "unused"])
@pytest.mark.parametrize("value", ODD_VALUES, ids=repr)
def test_any_value_in_any_plan_key_is_read_or_refused(key: str, value: Any) -> None:
    plan = {"version": 1, "sources": [{"label": "a.pt", "path": None}],
            "target": {"label": "t.pt", "path": None}, "entries": {"t": GOOD},
            "unused": [["a.pt", "y", "why"]], key: value}
    with contextlib.suppress(PlanError):
        Plan.from_dict(plan)


def test_evidence_that_is_not_a_list_names_the_row() -> None:
    with pytest.raises(PlanError, match=r"entries\['t'\]\.evidence: expected a list, got 1\.5"):
        Plan.from_dict({"version": 1, "sources": [{"label": "a.pt", "path": None}],
                        "target": {"label": "t.pt", "path": None},
                        "entries": {"t": {**GOOD, "evidence": 1.5}}})
