"""`ckpt map SRC... TGT`: propose a mapping, print it grouped by module, write the plan."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections import Counter
from collections.abc import Callable
from typing import Any

from ..bulk import rare_gc
from ..errors import PlanError
from ..humanize import floor_share
from ..mapping import arch
from ..mapping import names as nm
from ..mapping.entries import fold_summaries
from ..mapping.plan import Entry, Plan, Unused
from ..mapping.prefixed import parse_source, with_prefix
from ..mapping.propose import propose
from ..mapping.rules import Rule, builtin_rule_set_names, builtin_rule_sets, load_rules
from ..report import partial_module_warnings
from ..tree import fold_names
from .inputs import file_of, open_inputs
from .layers import add_layer_arguments, layer_rules
from .rowruns import alike, folded_reason, reason_keys

# Up to the first whole component of ASCII digits that follows another and is not the last.
_LAYER_PREFIX = re.compile(r"((?:[^.]*\.)+?[0-9]+)\.")
_BLANKED_AT_ONCE = 8192  # rows whose names and reasons _row_keys blanks in one pass
MAX_LISTED = 3  # unused source tensors with one reason: listed up to this many, else counted
LIST_RULES = "\0list"  # `--rules` given no value: list the built-in sets


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "paths",
        nargs="*",
        metavar="SRC... TGT",
        help="source checkpoint(s), then the target; a source may be PREFIX=PATH "
        "(PREFIX is put before its names: encoder.=JasperEncoder.pt); any input may name its "
        "weights sub-tree as PATH::ROOT (train.pt::model)",
    )
    p.add_argument(
        "--rules",
        action="append",
        default=[],
        nargs="?",
        const=LIST_RULES,
        metavar="R",
        help=f"rules file, built-in set ({', '.join(builtin_rule_set_names())}), or inline YAML "
        "('{rules: [...]}' or '[...]'); repeatable; `ckpt map --rules` alone lists the built-in "
        "sets, one line each",
    )
    add_layer_arguments(p)
    p.add_argument("-o", "--output", metavar="PLAN", help="write the plan (YAML) here")
    p.add_argument("--json", action="store_true", help="print the plan and summary as JSON")
    p.add_argument(
        "--root",
        metavar="SPEC",
        help="weights sub-tree of every input that has it (e.g. model); per input: PATH::SPEC",
    )
    p.add_argument("--all", action="store_true", help="list every row, not only the notable ones")


def run(args: argparse.Namespace) -> int:
    if LIST_RULES in args.rules:
        if args.paths or len(args.rules) > 1:
            raise PlanError("--rules without a value lists the built-in sets; to map, give it "
                            "a rules file, a set's name or inline YAML")
        width = max(map(len, builtin_rule_sets()))
        for name, description in builtin_rule_sets().items():
            print(f"{name:<{width}}  {description}")
        return 0
    if len(args.paths) < 2:
        raise PlanError("ckpt map needs at least one source and a target")
    *src_args, tgt_arg = args.paths
    parsed = [parse_source(a) for a in src_args]
    *opened, target = open_inputs([path for _, path in parsed] + [tgt_arg], args.root)
    sources: list[Any] = [with_prefix(p, c) for (p, _), c in zip(parsed, opened, strict=True)]
    rules: list[Rule] = [r for spec in args.rules for r in load_rules(spec)]
    rules += layer_rules(args, sources, target, rules)
    with rare_gc():  # a plan is many small objects, none cyclic: 2.5x faster `explain` at 100k
        return _map(args, parsed, tgt_arg, opened, sources, target, rules)


def _map(args: argparse.Namespace, parsed: list[tuple[str, str]], tgt_arg: str, opened: list[Any],
         sources: list[Any], target: Any, rules: list[Rule]) -> int:
    plan = propose(sources, target, rules)
    by_label = {ref.label: ckpt for ref, ckpt in zip(plan.sources, opened, strict=True)}
    explanation = arch.explain(plan, by_label, target)
    if args.output:
        read = [file_of(path) for _, path in parsed] + [file_of(tgt_arg)]
        plan.save(args.output, read + [r for r in args.rules if os.path.exists(r)])
    if args.json:
        data = plan.to_dict()
        data["summary"] = {
            m: {
                "percent": floor_share(s.params_copied, s.params, 1),
                "copied": s.copied,
                "tensors": s.tensors,
                "layers": s.layers,
                "layers_copied": s.layers_copied,
            }
            for m, s in plan.summary().items()
        }
        data["explanation"] = explanation
        partial = plan.partials()
        data["partial"] = {"count": len(partial), "names": fold_names(partial)}
        data["partial_modules"] = [{"module": detail, "rows": fold_names(rows)}
                                   for detail, rows in plan.partial_modules().items()]
        json.dump(data, sys.stdout, indent=1)
        print()
    else:
        _print(plan, explanation, args.all)
        if args.output:
            print(f"plan written to {args.output}")
    return 0


def _row_keys(rows: list[Entry]) -> list[tuple[Any, ...]]:
    """Rows with equal keys print as one line. Rows without a source group by layer
    (`encoder.layers.{}.*`) so that a layer that keeps its init as a whole folds to `layers.4.*`;
    the reason joins with its layer indices blanked (it names the source tensor). Equal keys
    and parts are one object (`same`), blanked a chunk of rows at a time: 100k rows' reasons
    blanked at once were ~60 MB of text copies, and the keys of a few runs 100k objects each."""
    same: dict[Any, Any] = {}

    def shared(blank: Callable[[list[str]], list[str]], texts: list[str]) -> list[Any]:
        out: list[Any] = []
        for i in range(0, len(texts), _BLANKED_AT_ONCE):
            out += [same.setdefault(v, v) for v in blank(texts[i : i + _BLANKED_AT_ONCE])]
        return out

    targets = shared(nm.blanked_many, [e.target for e in rows])
    reasons = shared(reason_keys, [e.reason for e in rows])
    sources = iter(shared(nm.blanked_many, [name for e in rows for _, name in e.sources]))
    keys = []
    for e, tpl, reason in zip(rows, targets, reasons, strict=True):
        layer = "" if e.sources else _layer_prefix(e.target)
        if layer:
            tpl = nm.blanked(layer) + ".*"
        src_tpl = tuple((label, next(sources)) for label, _ in e.sources)
        key = (tpl, src_tpl, e.effective, e.status, tuple(sorted(e.flags)), reason)
        keys.append(same.setdefault(key, key))
    return keys


def _layer_prefix(name: str) -> str:
    """`encoder.layers.3.conv.w` -> `encoder.layers.3`; '' for a name with no layer index."""
    m = _LAYER_PREFIX.match(name)
    return m.group(1) if m else ""


def _notable(e: Entry) -> bool:
    return bool(e.flags) or e.effective != "copy" or any(name != e.target for _, name in e.sources)


def _print(plan: Plan, explanation: list[str], show_all: bool) -> None:
    root = nm.common_root(list(plan.entries))
    summary = plan.summary()
    groups: dict[str, list[Entry]] = {}
    for e in plan.entries.values():
        groups.setdefault(nm.module_of(e.target, root), []).append(e)
    # layers that keep their init whole print as `layers.4.*`: only rows without a source count
    sourceless = any(not e.sources for e in plan.entries.values())
    layer_sizes = Counter(_layer_prefix(n) for n in plan.entries) if sourceless else Counter()
    for mods in alike(groups):
        rows = [e for m in mods for e in groups[m]]
        stats = [summary[m] for m in mods]
        problems = sum(s.problems for s in stats)
        print(
            f"{'; '.join(fold_summaries(stats))}  [{sum(s.copied for s in stats)} copy, "
            f"{sum(s.kept for s in stats)} keep, {sum(s.dropped for s in stats)} drop"
            f"{f', {problems} to review' if problems else ''}]"
        )
        shown = rows if show_all else [e for e in rows if _notable(e)]
        lines = _module_line(mods[0], rows) if len(mods) == 1 else []
        for line in lines or _folded(shown, layer_sizes):
            print(f"  {line}")
    if plan.unused:
        print(f"unused source tensors ({len(plan.unused)}):")
        for line in _folded_unused(plan.unused, show_all):
            print(f"  {line}")
    for line in explanation:
        print(f"note: {line}")
    partial = plan.partials()
    if partial:
        print(f"WARNING: {len(partial)} target tensor(s) keep their init with no declared reason "
              f"(shape mismatch, no source, ambiguous): {', '.join(fold_names(partial))}; "
              "ckpt apply --strict refuses such a plan")
    for line in partial_module_warnings(plan.partial_modules()):
        print(line)


def _folded(rows: list[Entry], layer_sizes: Counter[str]) -> list[str]:
    """One line per run of rows that differ only in layer indices:
    `encoder.layers.{0..3}.conv.depthwise_conv.weight keeps init [shape-mismatch] (...)`."""
    runs: dict[tuple[Any, ...], list[Entry]] = {}
    for e, key in zip(rows, _row_keys(rows), strict=True):
        runs.setdefault(key, []).append(e)
    return [_run_line(members, layer_sizes) for members in runs.values()]


def _run_line(members: list[Entry], layer_sizes: Counter[str]) -> str:
    e = members[0]
    names, whole = _targets(members, layer_sizes)
    label = ", ".join(fold_names(names))
    if whole and len(members) > 1:
        label += f" ({len(members)} tensors)"
    arrow = {"copy": "<-", "keep": "keeps init", "drop": "dropped"}[e.effective]
    labels = dict.fromkeys(label for m in members for label, _ in m.sources)
    src = ", ".join(
        f"{lb}:" + ", ".join(fold_names(n for m in members for b, n in m.sources if b == lb))
        for lb in labels
    )
    flags = f" [{', '.join(sorted(e.flags))}]" if e.flags else ""
    reason = folded_reason([m.reason for m in members])
    return f"{label} {arrow}{f' {src}' if src else ''}{flags}  ({reason})"


def _module_line(mod: str, rows: list[Entry]) -> list[str]:
    """`decoder.* (5 tensors) keeps init [vocab-change] (...)` when every row of a module has
    the same decision, flags and reason and none has a source; else []."""
    e = rows[0]
    same = {(r.effective, r.status, r.flags, r.reason, bool(r.sources)) for r in rows}
    if len(rows) < 2 or len(same) != 1 or e.sources or not _notable(e):
        return []
    arrow = {"keep": "keeps init", "drop": "dropped"}.get(e.effective, e.effective)
    flags = f" [{', '.join(sorted(e.flags))}]" if e.flags else ""
    return [f"{mod}.* ({len(rows)} tensors) {arrow}{flags}  ({e.reason})"]


def _folded_unused(unused: list[Unused], show_all: bool) -> list[str]:
    """Unused source tensors with the same reason (layer indices aside) on one line, folded
    over layer indices; more than `MAX_LISTED` names as a count under their common prefix."""
    runs: dict[tuple[str, str], list[Unused]] = {}
    for u in unused:
        runs.setdefault((u.label, nm.blanked(u.reason)), []).append(u)
    out = []
    for (label, _), members in runs.items():
        names = fold_names(u.name for u in members)
        reason = ", ".join(fold_names(dict.fromkeys(u.reason for u in members)))
        if len(names) > MAX_LISTED and not show_all:
            root = ".".join(nm.common_root([u.name for u in members]))
            where = f" under {root}" if root else ""
            out.append(f"{label}: {len(members)} tensors{where}  ({reason})")
        else:
            out.extend(f"{label}:{n}  ({reason})" for n in names)
    return out


def _targets(members: list[Entry], layer_sizes: Counter[str]) -> tuple[list[str], bool]:
    """Target names of a run; a layer all of whose tensors are in the run as `layer.*`.
    Second: whether any layer was shown that way."""
    in_run = Counter(_layer_prefix(m.target) for m in members if not m.sources)
    whole = {p for p, n in in_run.items() if p and n == layer_sizes[p] and n > 1}
    names = dict.fromkeys(
        f"{_layer_prefix(m.target)}.*" if _layer_prefix(m.target) in whole else m.target
        for m in members
    )
    return list(names), bool(whole)
