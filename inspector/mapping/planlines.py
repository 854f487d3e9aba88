"""Plan files at scale: the `templates`, `entries` and `unused` sections one row per line.

Each row is a JSON value on its own line (`  "name": {...}`, `  "name": 3` for an entry that
follows template 3 in a compact plan, and `- [...]`), and JSON is YAML, so
the file stays a YAML document any YAML tool reads, with one row per line for review and diffs.
What it buys: PyYAML's representer and resolver are Python even over libyaml, and took 9.5 s to
write and 13 s to read a plan of 20k rows; `json` does each row in microseconds.

`dump_rows` writes that layout after a YAML head; `parse_rows` reads it back, or returns None for
anything else (a plan edited by hand into block YAML, an older plan, a row written as tagged YAML
flow because JSON would say one of its floats otherwise than YAML reads it), which the caller
then reads with the bounded YAML loader: the same document either way.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any

TEMPLATES, ENTRIES, UNUSED = "templates", "entries", "unused"
INDENT = "  "
# JSON writes floats below 1e-4 or from 1e16 up with an exponent and no dot (`1e-05`), which YAML
# 1.1 reads as a string, and NaN/Infinity, which YAML does not know: a row holding one is written
# as YAML flow instead, tagged (`!!map {...}`) so that JSON never reads it.
SAFE_FLOATS = (1e-4, 1e16)
# Characters JSON leaves raw that a YAML reader refuses or reads as a line break in a quoted
# string (C1 controls, NEL, LS, PS, BOM, non-characters, lone surrogates): escaped, \uXXXX
# meaning the same in both.
_YAML_ESCAPE = re.compile("[\x7f-\x9f\u2028\u2029\ufeff\ufffe\uffff\ud800-\udfff]")


def dump_rows(
    head: str, entries: dict[str, Any], unused: list[Any], flow: Callable[[Any], str],
    templates: Sequence[Any] = (),
) -> str:
    """`head` (the YAML of the plan's other keys), then the rows (`templates` first when there
    are any); `flow` writes one value as a one-line YAML flow collection, for the rows JSON
    cannot say as YAML would read them."""
    out = [head]
    if templates:
        out.append(f"{TEMPLATES}:\n")
        out.extend(f"- {_row(row, flow)}\n" for row in templates)
    out.append(f"{ENTRIES}:\n" if entries else f"{ENTRIES}: {{}}\n")
    for name, entry in entries.items():  # an int: the number of the row's template
        out.append(f"{INDENT}{_json(name)}: {entry if type(entry) is int else _row(entry, flow)}\n")
    out.append(f"{UNUSED}:\n" if unused else f"{UNUSED}: []\n")
    out.extend(f"- {_row(row, flow)}\n" for row in unused)
    return "".join(out)


def _row(value: Any, flow: Callable[[Any], str]) -> str:
    text = _json(value)
    if _may_hold_unsafe_float(text) and not _json_floats_fit(value):
        tag = "!!map " if isinstance(value, dict) else "!!seq " if isinstance(value, list) else ""
        return tag + flow(value)
    return text


# one encoder for every row: json.dumps with arguments makes one per call
_ENCODE = json.JSONEncoder(ensure_ascii=False, separators=(", ", ": ")).encode


def _json(value: Any) -> str:
    text = _ENCODE(value)
    if text.isascii() and "\x7f" not in text:  # the only ASCII character _YAML_ESCAPE takes
        return text
    return _YAML_ESCAPE.sub(_escape, text)


def _may_hold_unsafe_float(text: str) -> bool:
    """What JSON writes for every float outside SAFE_FLOATS (`1e-05`, `1e+16`, `NaN`,
    `-Infinity`) is in `text`: a row without any is not walked (strings may hold them too; then
    `_json_floats_fit` decides)."""
    return "e-" in text or "e+" in text or "NaN" in text or "Infinity" in text


def _json_floats_fit(value: Any) -> bool:
    """Every float in `value` is one JSON writes as YAML reads it (see SAFE_FLOATS)."""
    low, high = SAFE_FLOATS
    stack = [value]
    while stack:
        x = stack.pop()
        kind = type(x)
        if kind is float:
            if x != 0 and not low <= abs(x) < high:  # NaN fails both comparisons
                return False
        elif kind is dict:
            stack.extend(x.values())
        elif kind is list:
            stack.extend(x)
    return True


def _escape(m: re.Match[str]) -> str:
    return f"\\u{ord(m.group()):04x}"


def parse_rows(text: str, head: Callable[[str], Any]) -> dict[str, Any] | None:
    """The plan `dump_rows` wrote (its head read by `head`), or None when `text` is laid out
    otherwise."""
    at = text.find(f"\n{TEMPLATES}:")
    if at < 0:
        at = text.find(f"\n{ENTRIES}:")
    if at < 0:
        return None
    lines = iter(text[at + 1 :].splitlines())
    first: str | None = next(lines)
    templates = None
    if first is not None and first.startswith(f"{TEMPLATES}:"):
        section = _items(first, lines, TEMPLATES)
        if section is None:
            return None
        templates, first = section
    entries = _entries(first or "", lines)
    if entries is None:
        return None
    rows, unused = entries
    data = head(text[: at + 1])
    if (not isinstance(data, dict) or TEMPLATES in data or ENTRIES in data or UNUSED in data
            or unused is None):
        return None
    data[ENTRIES], data[UNUSED] = rows, unused
    if templates is not None:
        data[TEMPLATES] = templates
    return data


def _entries(first: str, lines: Iterator[str]) -> tuple[dict[str, Any], list[Any] | None] | None:
    rows: dict[str, Any] = {}
    if first == f"{ENTRIES}: {{}}":
        return rows, _unused(next(lines, ""), lines)
    if first != f"{ENTRIES}:":
        return None
    # raw_decode without its Python frame (200k calls at 100k rows)
    scan = json.JSONDecoder().scan_once  # type: ignore[attr-defined]
    for line in lines:
        if not line.startswith(INDENT):
            return rows, _unused(line, lines)
        try:
            name, end = scan(line, len(INDENT))
            if not isinstance(name, str) or line[end : end + 2] != ": " or name in rows:
                return None
            rows[name], end = scan(line, end + 2)
        except (StopIteration, ValueError, RecursionError):
            return None
        if end != len(line):
            return None
    return rows, []


def _unused(first: str, lines: Iterator[str]) -> list[Any] | None:
    """The last section: nothing but blank lines may follow it."""
    section = _items(first, lines, UNUSED)
    if section is None:
        return None
    out, after = section
    blank = after is None or (not after.strip() and not any(x.strip() for x in lines))
    return out if blank else None


def _items(first: str, lines: Iterator[str], key: str) -> tuple[list[Any], str | None] | None:
    """The `key:` section that starts at line `first`, one `- JSON` row per line, and the line
    after it (None at the end)."""
    if first == f"{key}: []":
        return [], next(lines, None)
    if first != f"{key}:":
        return None
    out: list[Any] = []
    for line in lines:
        if not line.startswith("- "):
            return out, line
        try:
            out.append(json.loads(line[2:]))
        except (ValueError, RecursionError):
            return None
    return out, None
