"""Output formats of the CI gates: JSON against docs/findings.schema.json, JUnit XML, GitHub
workflow commands, Markdown, text; folding of layer ranges."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import jsonschema
import pytest

from inspector.findings import ERROR, INFO, WARNING, Finding, Report, group_findings, render

SCHEMA = json.loads((Path(__file__).parent.parent / "docs" / "findings.schema.json").read_text())
# The schema declares its draft ($schema); the validator is chosen by it and checked to be 2020-12.
VALIDATOR = jsonschema.validators.validator_for(SCHEMA)


def validate(value: Any, schema: dict[str, Any] = SCHEMA) -> None:
    """Validate a JSON document with the jsonschema package (raises ValidationError)."""
    jsonschema.validate(value, schema, cls=jsonschema.validators.validator_for(schema))


def test_schema_is_a_valid_draft_2020_12_schema() -> None:
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert VALIDATOR is jsonschema.Draft202012Validator
    VALIDATOR.check_schema(SCHEMA)


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
        with pytest.raises(jsonschema.ValidationError):
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
