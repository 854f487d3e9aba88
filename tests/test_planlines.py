"""Plan files one row per line (mapping/planlines.py): the same document for `json` and for any
YAML reader, written and read without PyYAML's Python representer and resolver."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from inspector import yamlload
from inspector.mapping import planfile
from inspector.mapping.planlines import parse_rows

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**63),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=30),
    st.sampled_from(["0e0", "1E5", "1e-05", "NaN", "Infinity", "-.inf", "true", "null", "~",
                     "yes", "0x1f", "1_000", "12:30", "2001-12-14", "'", '"', "#", "- a"]))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12)
plans = st.fixed_dictionaries({
    "version": st.just(1),
    "sources": st.lists(st.dictionaries(st.text(max_size=8), scalars, max_size=3), max_size=2),
    "entries": st.dictionaries(st.text(max_size=20), values, max_size=8),
    "unused": st.lists(st.lists(st.text(max_size=10), max_size=3), max_size=4),
})


@settings(max_examples=500, deadline=None)
@given(plans)
def test_a_plan_reads_back_the_same_through_json_and_through_yaml(data: dict[str, Any]) -> None:
    text = planfile.dump(data)
    assert planfile.parse(text) == data
    assert yamlload.load(text) == data  # any YAML reader sees the same document


def test_rows_are_one_per_line_and_read_with_json() -> None:
    data = {"version": 1, "sources": [{"label": "a"}],
            "entries": {"x.w": {"decision": "copy", "confidence": 0.5, "shape": [2, 2]},
                        "y\n\u2028\x85": {"reason": "tiny 1e-05", "score": 1e-05}},
            "unused": [["a", "z", "no target"]]}
    text = planfile.dump(data)
    lines = text.splitlines()
    assert '  "x.w": {"decision": "copy", "confidence": 0.5, "shape": [2, 2]}' in lines
    assert lines[-1] == '- ["a", "z", "no target"]'
    # 1e-05 is a string to YAML 1.1 as JSON writes it: that row is tagged YAML flow, and the file
    # is then read by the YAML loader as a whole (the same document)
    assert '  "y\\n\\u2028\\u0085": !!map {reason: tiny 1e-05, score: 1.0e-05}' in lines
    assert parse_rows(text, yamlload.load) is None
    assert planfile.parse(text) == data
    del data["entries"]["y\n\u2028\x85"]
    assert parse_rows(planfile.dump(data), yamlload.load) == data


def test_a_plan_edited_into_block_yaml_still_loads() -> None:
    data = {"version": 1, "entries": {"a.w": {"decision": "keep", "flags": ["user"]}},
            "unused": []}
    block = "version: 1\nentries:\n  a.w:\n    decision: keep\n    flags: [user]\nunused: []\n"
    assert parse_rows(block, yamlload.load) is None
    assert planfile.parse(block) == data
    text = planfile.dump(data).replace('"keep"', "keep")  # a hand edit that is YAML, not JSON
    assert parse_rows(text, yamlload.load) is None
    assert planfile.parse(text) == data
