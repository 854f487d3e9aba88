"""The plan file: the YAML schema of a plan, read and written (see docs/mapping.md).

`to_dict`/`from_dict` convert between a plan's parts (sources, target, rules, entries, unused)
and the mapping a plan file holds, checking every field and naming it in errors; `dump`/`parse`
turn that mapping into text and back. Relative checkpoint paths are rebased by `rebase_ref`.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable
from itertools import chain
from pathlib import Path
from typing import Any

import yaml

from .. import yamlload
from ..bulk import rare_gc
from ..errors import PlanError, WriteError
from ..io.atomic import write_text_atomic
from .entries import (
    DECISIONS,
    FLAGS,
    STATUSES,
    Candidate,
    Entry,
    Evidence,
    PlanData,
    PlanParts,
    Shape,
    SourceRef,
    Unused,
    built,
)
from .planlines import ENTRIES, TEMPLATES, UNUSED, dump_rows, parse_rows
from .plantemplates import COMPACT_FROM, FillBudget, Template, compact, template_entry
from .rules import rules_from_list
from .transforms import transform_from_dict

PLAN_VERSION = 1  # one full row per entry
COMPACT_VERSION = 2  # rows may follow templates (plantemplates)


def to_dict(plan: PlanData) -> dict[str, Any]:
    with rare_gc():  # a row is several small containers: 5x faster at 100k rows
        return _to_dict(plan)


def _to_dict(plan: PlanData, entries: bool = True) -> dict[str, Any]:
    return {
        "version": PLAN_VERSION,
        "sources": [_ref_dict(s) for s in plan.sources],
        "target": _ref_dict(plan.target),
        "rules": [r.to_dict() for r in plan.rules],
        "entries": {n: _entry_dict(e) for n, e in plan.entries.items()} if entries else {},
        "unused": [[u.label, u.name, u.reason] for u in plan.unused],
    }


def dump_plan(plan: PlanData, compact_rows: bool | None = None) -> str:
    """The plan file's text: compact (rows that differ only in their name's indices through a
    template, see plantemplates) when `compact_rows`, or when None from COMPACT_FROM rows up;
    else one full row per entry. A plan no two rows of which share a template is written full."""
    if compact_rows is None:
        compact_rows = len(plan.entries) >= COMPACT_FROM
    if not compact_rows:
        return dump(to_dict(plan))
    with rare_gc():
        keys, refs = compact(plan.entries)
        if not keys:
            return dump(_to_dict(plan))
        data = _to_dict(plan, entries=False)
        data["version"] = COMPACT_VERSION
        data[TEMPLATES] = [_entry_dict(template_entry(k)) for k in keys]
        data[ENTRIES] = {n: _entry_dict(e) if refs[n] is None else refs[n]
                         for n, e in plan.entries.items()}
        return dump(data)


def dump(data: dict[str, Any]) -> str:
    """The plan's YAML: its small keys in block style, then its rows one per line (planlines)."""
    head = _Block((k, v) for k, v in data.items() if k not in (TEMPLATES, ENTRIES, UNUSED))
    return dump_rows(_yaml(head), data.get(ENTRIES) or {}, data.get(UNUSED) or [], _flow,
                     data.get(TEMPLATES) or [])


def _yaml(data: Any) -> str:
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)


def _flow(value: Any) -> str:
    return yaml.dump(value, Dumper=yaml.SafeDumper, default_flow_style=True,
                     width=float("inf"), allow_unicode=False).rstrip("\n").removesuffix("\n...")


def from_dict(data: Any, where: str = "plan") -> PlanParts:
    if not isinstance(data, dict):
        raise PlanError(f"{where}: a plan is a mapping with sources, target, rules, entries")
    version = data.get("version")
    if version not in (PLAN_VERSION, COMPACT_VERSION) or type(version) is not int:
        raise PlanError(f"{where}: version: expected {PLAN_VERSION} or {COMPACT_VERSION}, got "
                        f"{version!r}")
    unknown = set(data) - {"version", "sources", "target", "rules", "entries", "unused",
                           *((TEMPLATES,) if version == COMPACT_VERSION else ())}
    if unknown:
        raise PlanError(f"{where}: unknown key {sorted(unknown, key=repr)[0]!r}"
                        + (f" (a plan with {TEMPLATES} says version: {COMPACT_VERSION})"
                           if TEMPLATES in unknown else ""))
    if not isinstance(data.get("sources"), list) or not data["sources"]:
        raise PlanError(f"{where}: sources: expected a non-empty list")
    sources = [_ref(s, f"{where}: sources[{i}]") for i, s in enumerate(data["sources"])]
    labels = [s.label for s in sources]
    if len(set(labels)) != len(labels):
        raise PlanError(f"{where}: sources: labels must be unique, got {labels}")
    target = _ref(data.get("target"), f"{where}: target")
    rules = rules_from_list(data.get("rules") or [], f"{where}: rules")
    raw_entries = data.get("entries") or {}
    if not isinstance(raw_entries, dict):
        raise PlanError(f"{where}: entries: expected a mapping target name -> entry")
    known = set(labels)
    with rare_gc():  # an entry is several small objects that all live on
        made = _from_templates(raw_entries, _templates(data, where, known), where)
        entries = {
            str(n): made[str(n)] if type(b) is int else _entry_fast(str(n), b, known)
            or _entry(str(n), b, f"{where}: entries[{n!r}]", known)
            for n, b in raw_entries.items()
        }
    unused = [
        _unused(u, f"{where}: unused[{i}]")
        for i, u in enumerate(_list(data, "unused", f"{where}: unused"))
    ]
    return sources, target, rules, entries, unused


def _templates(data: dict[str, Any], where: str, labels: set[str]) -> list[Template]:
    out = []
    for i, body in enumerate(_list(data, TEMPLATES, f"{where}: {TEMPLATES}")):
        at = f"{where}: {TEMPLATES}[{i}]"
        if not isinstance(body, dict):
            raise PlanError(f"{at}: expected a mapping with decision, status, reason (a row "
                            "whose strings say {0}, {1}, ... for the indices of the name)")
        out.append(Template(_entry_fast("", body, labels) or _entry("", body, at, labels), at))
    return out


def _from_templates(raw: dict[Any, Any], templates: list[Template], where: str
                    ) -> dict[str, Entry]:
    """The entries that name a template (an int), made a template at a time."""
    following: dict[int, list[str]] = {}
    for name, body in raw.items():
        if type(body) is int:
            if not 0 <= body < len(templates):
                raise PlanError(f"{where}: entries[{str(name)!r}]: no template {body} (the plan "
                                f"has {len(templates)}; an entry is a row or its template's "
                                "number)")
            following.setdefault(body, []).append(str(name))
    written = sum(t.written for t in templates) + sum(map(len, chain(*following.values())))
    budget = FillBudget(written, where)
    made: dict[str, Entry] = {}
    for index, names in following.items():
        made.update(zip(names, templates[index].make_many(names, where, budget), strict=True))
    return made


def parse(text: str, where: str = "plan") -> Any:
    try:
        with rare_gc():  # a plan is many small containers that all live on
            fast = parse_rows(text, yamlload.load)
            return fast if fast is not None else yamlload.load(text)
    except yaml.YAMLError as e:
        raise PlanError(f"{where}: not valid YAML: {e}") from None
    except ValueError as e:  # an integer past Python's digit limit for int(str)
        raise PlanError(f"{where}: cannot read a value: {e}") from None


def write(
    path: str | os.PathLike[str], text: str, inputs: Iterable[str | os.PathLike[str]]
) -> None:
    """Write atomically, refused over any of `inputs`; failures raise PlanError."""
    try:
        write_text_atomic(path, text, inputs)
    except WriteError as e:
        raise PlanError(str(e)) from None


def read(path: str | os.PathLike[str]) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise PlanError(f"{path}: cannot read plan: {e.strerror}") from None
    except UnicodeDecodeError as e:
        raise PlanError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None


def rebase_ref(ref: SourceRef, old: str | os.PathLike[str], new: str | os.PathLike[str]
                ) -> SourceRef:
    if not ref.path or os.path.isabs(ref.path) or "://" in ref.path:  # a URL stays as it is
        return ref
    path = os.path.relpath(os.path.join(old, ref.path), new)
    return dataclasses.replace(ref, path=path)



# -- helpers: YAML ---------------------------------------------------------------------------------
# libyaml's emitter when PyYAML has it: 5-8x faster on plans of 10k entries (reading: yamlload).
_BaseDumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


class _Dumper(_BaseDumper):  # type: ignore[misc,valid-type]
    """Short lists of scalars in flow style; no anchors/aliases (output is stable text)."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _represent_list(dumper: yaml.SafeDumper, data: list[Any]) -> yaml.Node:
    flow = all(
        isinstance(v, (str, int, float, bool, type(None)))
        or (isinstance(v, list) and all(not isinstance(x, (list, dict)) for x in v))
        for v in data
    )
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


def _represent_dict(dumper: yaml.SafeDumper, data: dict[str, Any]) -> yaml.Node:
    flow = len(data) <= 4 and all(
        isinstance(v, (str, int, float, bool, type(None))) for v in data.values()
    )
    return dumper.represent_mapping("tag:yaml.org,2002:map", data.items(), flow_style=flow)


class _Block(dict[str, Any]):
    """The document's top level: block style whatever its size (rows follow it)."""


def _represent_block(dumper: yaml.SafeDumper, data: _Block) -> yaml.Node:
    return dumper.represent_mapping("tag:yaml.org,2002:map", data.items(), flow_style=False)


_Dumper.add_representer(list, _represent_list)
_Dumper.add_representer(dict, _represent_dict)
_Dumper.add_representer(_Block, _represent_block)


def _ref_dict(r: SourceRef) -> dict[str, Any]:
    out: dict[str, Any] = {
        "label": r.label,
        "path": r.path,
        "prefix": r.prefix,
        "root": r.root,
        "fingerprint": r.fingerprint,
    }
    if r.content is not None:
        out["content"] = r.content
    return out


def _entry_dict(e: Entry) -> dict[str, Any]:
    out: dict[str, Any] = {
        "decision": e.decision,
        "status": e.status,
        "reason": e.reason,
        "confidence": e.confidence,
        "shape": list(e.shape),
        "dtype": e.dtype,
    }
    if e.sources:
        out["sources"] = [
            [label, name, list(shape), dtype]
            for (label, name), shape, dtype in zip(
                e.sources, e.source_shapes, e.source_dtypes, strict=True
            )
        ]
    if e.transform:
        out["transform"] = [t.to_dict() for t in e.transform]
    if e.flags:
        out["flags"] = sorted(e.flags)
    if e.evidence:
        out["evidence"] = [[ev.kind, ev.detail, ev.score] for ev in e.evidence]
    if e.candidates:
        out["candidates"] = [[c.label, c.name, c.score, c.why] for c in e.candidates]
    return out


def _ref(data: Any, where: str) -> SourceRef:
    if not isinstance(data, dict) or "label" not in data:
        raise PlanError(f"{where}: expected a mapping with label, path, prefix, root, fingerprint")
    unknown = set(data) - {"label", "path", "prefix", "root", "fingerprint", "content"}
    if unknown:
        raise PlanError(f"{where}: unknown key {sorted(unknown, key=repr)[0]!r}")
    for key in ("label", "prefix", "root", "fingerprint"):
        if key in data and not isinstance(data[key], str):
            raise PlanError(f"{where}.{key}: expected a string, got {data[key]!r}")
    path = data.get("path")
    if path is not None and not isinstance(path, str):
        raise PlanError(f"{where}.path: expected a string or null, got {path!r}")
    return SourceRef(
        data["label"],
        path,
        data.get("prefix", ""),
        data.get("fingerprint", ""),
        data.get("root", ""),
        data.get("content"),
    )


_ENTRY_KEYS = {
    "decision",
    "status",
    "reason",
    "confidence",
    "shape",
    "dtype",
    "sources",
    "transform",
    "flags",
    "evidence",
    "candidates",
}


def _entry(name: str, body: Any, where: str, labels: set[str]) -> Entry:
    if not isinstance(body, dict):
        raise PlanError(f"{where}: expected a mapping with decision, status, reason (or, in a "
                        "compact plan, the number of its template)")
    unknown = set(body) - _ENTRY_KEYS
    if unknown:
        raise PlanError(f"{where}: unknown key {sorted(unknown, key=repr)[0]!r}")
    decision, status = body.get("decision"), body.get("status", "proposed")
    if decision not in DECISIONS:
        raise PlanError(
            f"{where}.decision: must be one of {', '.join(DECISIONS)}, got {decision!r}"
        )
    if status not in STATUSES:
        raise PlanError(f"{where}.status: must be one of {', '.join(STATUSES)}, got {status!r}")
    sources, shapes, dts = [], [], []
    for i, s in enumerate(_list(body, "sources", f"{where}.sources")):
        if not (
            isinstance(s, list)
            and len(s) == 4
            and all(isinstance(x, str) for x in (s[0], s[1], s[3]))
        ):
            raise PlanError(f"{where}.sources[{i}]: expected [label, name, shape, dtype], got "
                            f"{s!r}")
        if s[0] not in labels:
            raise PlanError(f"{where}.sources[{i}]: unknown source label {s[0]!r} (sources: "
                            f"{sorted(labels)})")
        sources.append((s[0], s[1]))
        shapes.append(_shape(s[2], where, f".sources[{i}]"))
        dts.append(s[3])
    if decision == "copy" and not sources:
        raise PlanError(f"{where}: decision copy needs at least one source")
    if decision != "copy" and sources:
        raise PlanError(f"{where}: decision {decision} takes no sources")
    transform = tuple(
        transform_from_dict(t, f"{where}.transform[{i}]")
        for i, t in enumerate(_list(body, "transform", f"{where}.transform"))
    )
    flags = _list(body, "flags", f"{where}.flags")
    if any(not isinstance(f, str) or f not in FLAGS
                                             for f in flags):
        raise PlanError(f"{where}.flags: expected a list of {', '.join(FLAGS)}, got {flags!r}")
    confidence = body.get("confidence", 0.0)
    if (
        not isinstance(confidence, (int, float))
        or isinstance(confidence, bool)
        or not 0 <= confidence <= 1
    ):
        raise PlanError(f"{where}.confidence: expected a number in [0, 1], got {confidence!r}")
    reason = body.get("reason", "")
    if not isinstance(reason, str):
        raise PlanError(f"{where}.reason: expected a string")
    dtype = body.get("dtype", "")
    if not isinstance(dtype, str):
        raise PlanError(f"{where}.dtype: expected a string")
    evidence = tuple(
        Evidence(*_typed_row(x, _EVIDENCE_ROW, f"{where}.evidence[{i}]"))
        for i, x in enumerate(_list(body, "evidence", f"{where}.evidence"))
    )
    candidates = tuple(
        Candidate(*_typed_row(x, _CANDIDATE_ROW, f"{where}.candidates[{i}]"))
        for i, x in enumerate(_list(body, "candidates", f"{where}.candidates"))
    )
    return Entry(
        name,
        decision,
        tuple(sources),
        transform=transform,
        status=status,
        reason=reason,
        evidence=evidence,
        confidence=confidence,
        flags=frozenset(flags),
        candidates=candidates,
        shape=_shape(body.get("shape", []), where, ".shape"),
        dtype=dtype,
        source_shapes=tuple(shapes),
        source_dtypes=tuple(dts),
    )


_COMMON_KEYS = frozenset(_ENTRY_KEYS - {"transform"})
_EMPTY: list[Any] = []  # an absent or null list (read only)
_FLAG_SETS: dict[tuple[str, ...], frozenset[str]] = {}  # few distinct lists of flags: shared


def _entry_fast(name: str, body: Any, labels: set[str]) -> Entry | None:
    """`_entry` for a row of the usual kinds (JSON types, no transform), checked inline and built
    without `__init__`: the same `Entry`, or None for any row `_entry` must look at (it then
    accepts it the same or names the problem)."""
    if type(body) is not dict or not _COMMON_KEYS.issuperset(body):
        return None
    get = body.get
    decision, status, reason = get("decision"), get("status", "proposed"), get("reason", "")
    confidence, dtype = get("confidence", 0.0), get("dtype", "")
    if (type(decision) is not str or decision not in DECISIONS or type(status) is not str
            or status not in STATUSES or type(reason) is not str or type(dtype) is not str
            or type(confidence) not in (float, int) or not 0 <= confidence <= 1):
        return None
    shape = _fast_shape(get("shape", []))
    rows = _EMPTY if get("sources") is None else get("sources")
    srcs = [_fast_source(s, labels) for s in rows] if type(rows) is list else [None]
    flags = _fast_flags(_EMPTY if get("flags") is None else get("flags"))
    evidence = _fast_evidence(_EMPTY if get("evidence") is None else get("evidence"))
    candidates = _fast_candidates(_EMPTY if get("candidates") is None else get("candidates"))
    if (shape is None or None in srcs or (decision == "copy") != bool(srcs) or flags is None
            or evidence is None or candidates is None):
        return None
    return built(Entry, {
        "target": name, "decision": decision,
        "sources": tuple((s[0], s[1]) for s in srcs),  # type: ignore[index]
        "transform": (), "status": status, "reason": reason, "evidence": evidence,
        "confidence": confidence, "flags": flags, "candidates": candidates, "shape": shape,
        "dtype": dtype, "source_shapes": tuple(s[2] for s in srcs),  # type: ignore[index]
        "source_dtypes": tuple(s[3] for s in srcs),  # type: ignore[index]
    })


def _fast_shape(value: Any) -> Shape | None:
    if type(value) is list and all(type(d) is int and d >= 0 for d in value):
        return tuple(value)
    return None


def _fast_source(s: Any, labels: set[str]) -> tuple[str, str, Shape, str] | None:
    if not (type(s) is list and len(s) == 4 and type(s[0]) is str and type(s[1]) is str
            and type(s[3]) is str and s[0] in labels):
        return None
    shape = _fast_shape(s[2])
    return None if shape is None else (s[0], s[1], shape, s[3])


def _fast_flags(flags: Any) -> frozenset[str] | None:
    if type(flags) is not list or not all(type(f) is str and f in FLAGS for f in flags):
        return None
    key = tuple(flags)
    found = _FLAG_SETS.get(key)
    if found is None:
        found = frozenset(flags)
        if len(_FLAG_SETS) < 1024:
            _FLAG_SETS[key] = found
    return found


def _fast_evidence(rows: Any) -> tuple[Evidence, ...] | None:
    """Evidence rows as `_row` checks them (lists of 3), built without `__init__`."""
    if type(rows) is not list:
        return None
    out = []
    for x in rows:
        if (type(x) is not list or len(x) != 3 or type(x[0]) is not str
                or type(x[1]) is not str or type(x[2]) not in (float, int)):
            return None
        out.append(built(Evidence, {"kind": x[0], "detail": x[1], "score": x[2]}))
    return tuple(out)


def _fast_candidates(rows: Any) -> tuple[Candidate, ...] | None:
    """Candidate rows as `_row` checks them (lists of 4), built without `__init__`."""
    if type(rows) is not list:
        return None
    out = []
    for x in rows:
        if (type(x) is not list or len(x) != 4 or type(x[0]) is not str
                or type(x[1]) is not str or type(x[2]) not in (float, int)
                or type(x[3]) is not str):
            return None
        out.append(built(Candidate, {"label": x[0], "name": x[1], "score": x[2], "why": x[3]}))
    return tuple(out)


def _shape(value: Any, where: str, field: str) -> Shape:
    if type(value) is list and all(type(d) is int and d >= 0 for d in value):  # not bool
        return tuple(value)
    raise PlanError(f"{where}{field}: expected a shape (list of non-negative integers), got "
                    f"{value!r}")


def _row(value: Any, n: int, where: str) -> list[Any]:
    if not isinstance(value, list) or len(value) != n:
        raise PlanError(f"{where}: expected a list of {n} items, got {value!r}")
    return value


def _list(body: dict[str, Any], key: str, where: str) -> list[Any]:
    """`body[key]` as a list; absent or null is an empty one."""
    value = body.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise PlanError(f"{where}: expected a list, got {value!r}")
    return value


# The columns of a row kept as a list in the file: (name, accepted types).
_EVIDENCE_ROW = (("kind", (str,)), ("detail", (str,)), ("score", (int, float)))
_CANDIDATE_ROW = (("label", (str,)), ("name", (str,)), ("score", (int, float)), ("why", (str,)))


def _typed_row(value: Any, columns: tuple[tuple[str, tuple[type, ...]], ...], where: str
               ) -> list[Any]:
    row = _row(value, len(columns), where)
    for x, (name, types) in zip(row, columns, strict=True):
        if not isinstance(x, types) or isinstance(x, bool):
            raise PlanError(f"{where}: {name}: expected {' or '.join(t.__name__ for t in types)}"
                            f", got {x!r}")
    return row


def _unused(value: Any, where: str) -> Unused:
    row = _row(value, 3, where)
    if not all(isinstance(x, str) for x in row):
        raise PlanError(f"{where}: expected [label, name, reason] strings")
    return Unused(*row)
