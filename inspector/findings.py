"""Findings of the CI gates (`ckpt check`, `ckpt scan`) and the formats they are printed in.

A `Finding` is one violation or observation: a stable `code`, a `severity`, the `file` it is
about, the `key` inside it (tensor name, archive member, pickle) and a `message` that does not
repeat the key, so that findings differing only in a layer index fold into one line
(`encoder.layers.{0..15}.fc.weight`). The JSON form is documented in docs/ci.md and
docs/findings.schema.json.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import IO, Any
from xml.etree import ElementTree as ET

from ._version import __version__
from .io.atomic import write_text_atomic
from .tree import fold_names

SCHEMA_ID = "ckpt-findings/1"

ERROR, WARNING, INFO = "error", "warning", "info"
SEVERITIES = (ERROR, WARNING, INFO)
# The gate could not run: an input is missing or unreadable (the report says which, exit code 2).
INPUT_ERROR = "input-error"


@dataclass(frozen=True)
class Finding:
    code: str  # stable, kebab-case: "shape-mismatch", "global-dangerous", "zip-overlap", ...
    severity: str  # "error" | "warning" | "info"
    file: str
    key: str | None
    message: str  # what is wrong, without the key (it is printed beside it)
    details: dict[str, Any] = field(default_factory=dict, compare=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "severity": self.severity,
            "file": self.file,
            "key": self.key,
            "message": self.message,
            "details": self.details,
        }


@dataclass
class Report:
    """What a gate found. `passed` is False on any error, or on any warning when `strict`."""

    command: str  # "check" | "scan"
    targets: list[str]
    findings: list[Finding] = field(default_factory=list)
    checked: int = 0  # tensors compared (check) or pickles and archives examined (scan)
    strict: bool = False

    def count(self, severity: str) -> int:
        return sum(1 for f in self.findings if f.severity == severity)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == ERROR]

    @property
    def failing(self) -> list[Finding]:
        """The findings that make the gate fail."""
        bad = (ERROR, WARNING) if self.strict else (ERROR,)
        return [f for f in self.findings if f.severity in bad]

    @property
    def passed(self) -> bool:
        return not self.failing

    @property
    def exit_code(self) -> int:
        if any(f.code == INPUT_ERROR for f in self.findings):
            return 2
        return 0 if self.passed else 1

    def summary(self) -> str:
        verdict = "passed" if self.passed else "FAILED"
        counts = ", ".join(
            f"{self.count(s)} {s}{'s' if self.count(s) != 1 and s != INFO else ''}"
            for s in SEVERITIES
        )
        what = "tensors" if self.command == "check" else "items"
        return f"ckpt {self.command} {verdict}: {counts} ({self.checked} {what} examined)"

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA_ID,
            "tool": "ckpt-inspector",
            "version": __version__,
            "command": self.command,
            "targets": list(self.targets),
            "passed": self.passed,
            "strict": self.strict,
            "exit_code": self.exit_code,
            "summary": {**{s: self.count(s) for s in SEVERITIES}, "checked": self.checked},
            "findings": [f.to_json() for f in self.findings],
        }


# Folding -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Group:
    """Findings equal but for their key, with the keys folded into layer-range form."""

    code: str
    severity: str
    file: str
    message: str
    keys: list[str]  # folded
    count: int

    @property
    def key_text(self) -> str:
        return ", ".join(self.keys)


def group_findings(findings: Iterable[Finding]) -> list[Group]:
    keyed: dict[tuple[str, str, str, str], list[str]] = {}
    counts: dict[tuple[str, str, str, str], int] = {}
    for f in findings:
        k = (f.code, f.severity, f.file, f.message)
        keyed.setdefault(k, [])
        counts[k] = counts.get(k, 0) + 1
        if f.key is not None:
            keyed[k].append(f.key)
    return [
        Group(
            code, sev, file, msg, fold_names(keys) if keys else [], counts[(code, sev, file, msg)]
        )
        for (code, sev, file, msg), keys in keyed.items()
    ]


def _shown(report: Report, verbose: bool) -> list[Finding]:
    return [f for f in report.findings if verbose or f.severity != INFO]


# Formats ---------------------------------------------------------------------------------------


def to_text(report: Report, verbose: bool = False) -> str:
    lines = []
    for g in group_findings(_shown(report, verbose)):
        where = f"{g.file}: {g.key_text}" if g.keys else g.file
        lines.append(f"{where}: {g.severity}: {g.message} [{g.code}]")
    lines.append(report.summary())
    return "\n".join(lines) + "\n"


def to_json(report: Report, verbose: bool = False) -> str:
    return json.dumps(report.to_json(), indent=2, default=str) + "\n"


def to_junit(report: Report, verbose: bool = False) -> str:
    """JUnit XML: one test case per failing finding (or one passing case), for CI test tabs."""
    suite = ET.Element(
        "testsuite",
        name=f"ckpt {report.command}",
        tests="0",
        failures=str(len(report.failing)),
        errors="0",
        skipped="0",
    )
    failing = set(map(id, report.failing))
    cases = 0
    for f in report.findings:
        if id(f) not in failing:
            continue
        case = ET.SubElement(
            suite,
            "testcase",
            classname=f"ckpt.{report.command}.{f.file}",
            name=f"{f.code}: {f.key or f.file}",
        )
        fail = ET.SubElement(case, "failure", type=f.code, message=f.message)
        fail.text = f"{f.file}: {f.key or ''}: {f.severity}: {f.message}"
        cases += 1
    if not cases:
        for target in report.targets or ["(no input)"]:
            ET.SubElement(suite, "testcase", classname=f"ckpt.{report.command}", name=target)
            cases += 1
    suite.set("tests", str(cases))
    out = ET.SubElement(suite, "system-out")
    out.text = report.summary()
    root = ET.Element("testsuites", name="ckpt-inspector")
    root.append(suite)
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


_GITHUB_LEVEL = {ERROR: "error", WARNING: "warning", INFO: "notice"}


def _gh_data(s: str) -> str:
    return s.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _gh_prop(s: str) -> str:
    return _gh_data(s).replace(":", "%3A").replace(",", "%2C")


def to_github(report: Report, verbose: bool = False) -> str:
    """GitHub Actions workflow commands: `::error file=F,title=CODE::KEY: MESSAGE`."""
    lines = []
    for g in group_findings(_shown(report, verbose)):
        text = f"{g.key_text}: {g.message}" if g.keys else g.message
        level = _GITHUB_LEVEL[g.severity]
        lines.append(
            f"::{level} file={_gh_prop(g.file)},title={_gh_prop(g.code)}::{_gh_data(text)}"
        )
    lines.append(report.summary())
    return "\n".join(lines) + "\n"


def _md(s: str) -> str:
    return s.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def to_markdown(report: Report, verbose: bool = False) -> str:
    """A Markdown summary for PR comments and `$GITHUB_STEP_SUMMARY`."""
    verdict = "passed" if report.passed else "failed"
    lines = [f"### ckpt {report.command} {verdict}", "", report.summary(), ""]
    groups = group_findings(_shown(report, verbose))
    if groups:
        lines += ["| severity | code | file | key | message |", "|---|---|---|---|---|"]
        for g in groups:
            keys = f"`{_md(g.key_text)}`" if g.keys else ""
            lines.append(
                f"| {g.severity} | {g.code} | `{_md(g.file)}` | {keys} | {_md(g.message)} |"
            )
    return "\n".join(lines) + "\n"


FORMATS: dict[str, Callable[[Report, bool], str]] = {
    "text": to_text,
    "json": to_json,
    "junit": to_junit,
    "github": to_github,
    "markdown": to_markdown,
}


def render(report: Report, fmt: str = "text", *, verbose: bool = False) -> str:
    try:
        formatter = FORMATS[fmt]
    except KeyError:
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}") from None
    return formatter(report, verbose)


def write_report(
    report: Report,
    fmt: str,
    *,
    output: str | None,
    verbose: bool,
    stream: IO[str],
    inputs: Iterable[str | os.PathLike[str]] = (),
) -> None:
    """The report in `fmt` to `output` (a file: the text summary still goes to `stream`) or to
    `stream` itself. The file is written atomically and never over one of `inputs` (the files
    the gate read) nor of `report.targets`. Used by the gates' CLI."""
    text = render(report, fmt, verbose=verbose)
    if output is None:
        stream.write(text)
        return
    write_text_atomic(output, text, [*inputs, *report.targets])
    stream.write(render(report, "text", verbose=verbose))
