"""Output formats of the CI gates: JSON against docs/findings.schema.json, JUnit XML, GitHub
workflow commands, Markdown, text; folding of layer ranges."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import pytest

from inspector.findings import ERROR, INFO, WARNING, Finding, Report, group_findings, render

SCHEMA = json.loads((Path(__file__).parent.parent / "docs" / "findings.schema.json").read_text())
_TYPES: dict[str, Any] = {
    "object": dict,
    "array": list,
    "string": str,
    "boolean": bool,
    "null": type(None),
    "integer": int,
}


def validate(value: Any, schema: dict[str, Any], where: str = "$") -> None:
    """The subset of JSON Schema that docs/findings.schema.json uses (no dependency)."""
    if "const" in schema:
        assert value == schema["const"], f"{where}: {value!r} != {schema['const']!r}"
    if "enum" in schema:
        assert value in schema["enum"], f"{where}: {value!r} not in {schema['enum']}"
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        ok = any(
            isinstance(value, _TYPES[t]) and not (t == "integer" and isinstance(value, bool))
            for t in types
        )
        assert ok, f"{where}: {value!r} is not {types}"
    if "minimum" in schema:
        assert value >= schema["minimum"], f"{where}: {value} < {schema['minimum']}"
    if "pattern" in schema:
        assert re.search(schema["pattern"], value), f"{where}: {value!r} !~ {schema['pattern']}"
    if isinstance(value, dict):
        for key in schema.get("required", []):
            assert key in value, f"{where}: missing {key!r}"
        props = schema.get("properties", {})
        for key, item in value.items():
            if key in props:
                validate(item, props[key], f"{where}.{key}")
            else:
                assert schema.get("additionalProperties", True), f"{where}: unexpected {key!r}"
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            validate(item, schema["items"], f"{where}[{i}]")


def _report(strict: bool = False) -> Report:
    findings = [
        Finding("shape-mismatch", ERROR, "a.pt", f"enc.layers.{i}.w", "shape [4], ref has [5]")
        for i in range(12)
    ]
    findings += [
        Finding("dtype-cast", WARNING, "a.pt", "x", "dtype float16, ref has float32"),
        Finding("global-safe", INFO, "a.pt", "archive/data.pkl", "imports torch.Size: safe"),
        Finding("odd", ERROR, "we|ird,file:1.pt", None, "line1\nline2 100% | pipe", {"n": 1}),
    ]
    return Report("check", ["a.pt", "ref.pt"], findings, checked=14, strict=strict)


def test_validator_rejects_bad_documents() -> None:
    doc = json.loads(render(_report(), "json"))
    validate(doc, SCHEMA)
    for broken in (
        {**doc, "passed": "no"},
        {**doc, "extra": 1},
        {**doc, "findings": [{**doc["findings"][0], "severity": "fatal"}]},
    ):
        with pytest.raises(AssertionError):
            validate(broken, SCHEMA)


def test_json_is_unfolded_and_complete() -> None:
    doc = json.loads(render(_report(), "json"))
    assert doc["summary"] == {"error": 13, "warning": 1, "info": 1, "checked": 14}
    assert len(doc["findings"]) == 15
    assert doc["passed"] is False
    assert doc["exit_code"] == 1
    assert doc["findings"][-1]["details"] == {"n": 1}


def test_text_folds_layers_and_hides_info() -> None:
    text = render(_report(), "text")
    assert "a.pt: enc.layers.{0..11}.w: error: shape [4], ref has [5] [shape-mismatch]" in text
    assert "global-safe" not in text
    assert "global-safe" in render(_report(), "text", verbose=True)
    assert text.rstrip().endswith("(14 tensors examined)")


def test_junit_parses_with_one_case_per_failure() -> None:
    root = ET.fromstring(render(_report(), "junit"))
    suite = root.find("testsuite")
    assert suite is not None
    assert suite.get("failures") == "13"
    cases = suite.findall("testcase")
    assert len(cases) == int(suite.get("tests", "0")) == 13
    assert all(c.find("failure") is not None for c in cases)
    strict = ET.fromstring(render(_report(strict=True), "junit")).find("testsuite")
    assert strict is not None
    assert strict.get("failures") == "14"
    passing = Report("scan", ["ok.pt"], [], checked=1)
    ok = ET.fromstring(render(passing, "junit")).find("testsuite")
    assert ok is not None
    assert ok.get("failures") == "0"
    assert [c.get("name") for c in ok.findall("testcase")] == ["ok.pt"]


def test_github_annotations_escape_properties_and_data() -> None:
    lines = render(_report(), "github").splitlines()
    annotations = [line for line in lines if line.startswith("::")]
    assert annotations[0] == (
        "::error file=a.pt,title=shape-mismatch::enc.layers.{0..11}.w: shape [4], ref has [5]"
    )
    assert annotations[1].startswith("::warning file=a.pt,title=dtype-cast::x: ")
    odd = annotations[2]
    assert odd.startswith("::error file=we|ird%2Cfile%3A1.pt,title=odd::")
    assert "line1%0Aline2 100%25" in odd
    assert all(
        re.match(r"^::(error|warning|notice) file=[^:]+,title=[^:]+::", a) for a in annotations
    )


def test_markdown_table_escapes_pipes() -> None:
    md = render(_report(), "markdown")
    rows = [line for line in md.splitlines() if line.startswith("|")]
    assert rows[0] == "| severity | code | file | key | message |"
    assert rows[1] == "|---|---|---|---|---|"
    assert len(rows) == 2 + 3
    assert all(line.count("|") - line.count("\\|") == 6 for line in rows)
    assert "`enc.layers.{0..11}.w`" in md


def test_group_findings_keeps_distinct_messages_apart() -> None:
    findings = [
        Finding("shape-mismatch", ERROR, "a", f"l.{i}.w", "shape [4]" if i < 3 else "shape [8]")
        for i in range(6)
    ]
    groups = group_findings(findings)
    assert [(g.keys, g.count) for g in groups] == [(["l.{0..2}.w"], 3), (["l.{3..5}.w"], 3)]


def test_unknown_format() -> None:
    with pytest.raises(ValueError, match="unknown format"):
        render(_report(), "yaml")
