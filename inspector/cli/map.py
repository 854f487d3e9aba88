"""`ckpt map SRC... TGT`: propose a mapping, print it grouped by module, write the plan."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from ..errors import PlanError
from ..mapping import arch
from ..mapping import names as nm
from ..mapping.plan import Entry, Plan
from ..mapping.propose import propose
from ..mapping.rules import Rule, load_rules
from ..reader import open_checkpoint


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "paths",
        nargs="+",
        metavar="SRC... TGT",
        help="source checkpoint(s), then the target; a source may be PREFIX=PATH "
        "(PREFIX is put before its names: encoder.=JasperEncoder.pt)",
    )
    p.add_argument(
        "--rules",
        action="append",
        default=[],
        metavar="R",
        help="rules file or built-in set (ddp, lightning, nemo, nemo-encoder, "
        "nemo-encoder-export, weight-norm, wav2vec2-conformer-fairseq-to-hf); repeatable",
    )
    p.add_argument("-o", "--output", metavar="PLAN", help="write the plan (YAML) here")
    p.add_argument("--json", action="store_true", help="print the plan and summary as JSON")
    p.add_argument("--root", metavar="SPEC", help="weights sub-tree in every input (e.g. model)")
    p.add_argument("--all", action="store_true", help="list every row, not only the notable ones")


def _split_source(arg: str) -> tuple[str, str]:
    if "=" in arg and not os.path.exists(arg):
        prefix, path = arg.split("=", 1)
        return prefix, path
    return "", arg


def run(args: argparse.Namespace) -> int:
    if len(args.paths) < 2:
        raise PlanError("ckpt map needs at least one source and a target")
    *src_args, tgt_arg = args.paths
    sources: list[Any] = []
    for a in src_args:
        prefix, path = _split_source(a)
        ckpt = open_checkpoint(path, root=args.root)
        sources.append((prefix, ckpt) if prefix else ckpt)
    target = open_checkpoint(tgt_arg, root=args.root)
    rules: list[Rule] = [r for spec in args.rules for r in load_rules(spec)]
    plan = propose(sources, target, rules)
    by_label = {
        ref.label: ckpt for ref, (_, ckpt) in zip(plan.sources, _pairs(sources), strict=True)
    }
    explanation = arch.explain(plan, by_label, target)
    if args.output:
        plan.save(args.output)
    if args.json:
        data = plan.to_dict()
        data["summary"] = {
            m: {
                "percent": round(s.percent, 1),
                "copied": s.copied,
                "tensors": s.tensors,
                "layers": s.layers,
                "layers_copied": s.layers_copied,
            }
            for m, s in plan.summary().items()
        }
        data["explanation"] = explanation
        json.dump(data, sys.stdout, indent=1)
        print()
    else:
        _print(plan, explanation, args.all)
        if args.output:
            print(f"plan written to {args.output}")
    return 0


def _pairs(sources: list[Any]) -> list[tuple[str, Any]]:
    return [s if isinstance(s, tuple) else ("", s) for s in sources]


def _row_key(e: Entry) -> tuple[Any, ...]:
    if not e.sources:  # rows without a source fold by layer: `encoder.layers.{4}.*`
        layer = _layer_prefix(e.target)
        tpl = nm.template(layer)[0] + ".*" if layer else nm.template(e.target)[0]
        return tpl, (), e.effective, e.status, tuple(sorted(e.flags)), e.reason
    tpl, _ = nm.template(e.target)
    src_tpl = tuple((label, nm.template(name)[0]) for label, name in e.sources)
    return tpl, src_tpl, e.effective, e.status, tuple(sorted(e.flags)), nm.template(e.reason)[0]


def _layer_prefix(name: str) -> str:
    comps = name.split(".")
    for i, c in enumerate(comps[:-1]):
        if nm.is_index(c) and i > 0:
            return ".".join(comps[: i + 1])
    return ""


def _notable(e: Entry) -> bool:
    return bool(e.flags) or e.effective != "copy" or any(name != e.target for _, name in e.sources)


def _print(plan: Plan, explanation: list[str], show_all: bool) -> None:
    root = nm.common_root(list(plan.entries))
    summary = plan.summary()
    groups: dict[str, list[Entry]] = {}
    for e in plan.entries.values():
        groups.setdefault(nm.module_of(e.target, root), []).append(e)
    for mod, rows in groups.items():
        s = summary[mod]
        print(
            f"{s.line()}  [{s.copied} copy, {s.kept} keep, {s.dropped} drop"
            f"{f', {s.problems} to review' if s.problems else ''}]"
        )
        for line in _folded(rows if show_all else [e for e in rows if _notable(e)]):
            print(f"  {line}")
    if plan.unused:
        print(f"unused source tensors ({len(plan.unused)}):")
        for u in plan.unused:
            print(f"  {u.label}:{u.name}  ({u.reason})")
    for line in explanation:
        print(f"note: {line}")


def _folded(rows: list[Entry]) -> list[str]:
    """One line per run of rows that differ only in layer index: `layers.{0..15}.w`."""
    runs: dict[tuple[Any, ...], list[Entry]] = {}
    for e in rows:
        runs.setdefault(_row_key(e), []).append(e)
    out = []
    for key, members in runs.items():
        e = members[0]
        name = _fold_name(key[0], [_layer_prefix(m.target) or m.target for m in members])
        if not e.sources and len(members) > 1:
            name += f" ({len(members)} tensors)"
        arrow = {"copy": "<-", "keep": "keeps init", "drop": "dropped"}[e.effective]
        src = ", ".join(
            f"{label}:{_fold_name(tpl, [n for m in members for lb, n in m.sources if lb == label])}"
            for label, tpl in key[1]
        )
        flags = f" [{', '.join(sorted(e.flags))}]" if e.flags else ""
        out.append(
            f"{name} {arrow} {src}{flags}  ({e.reason})"
            if src
            else f"{name} {arrow}{flags}  ({e.reason})"
        )
    return out


def _fold_name(tpl: str, names: list[str]) -> str:
    if len(names) <= 1:
        return names[0] if names else tpl
    columns = list(zip(*(nm.template(n)[1] for n in names), strict=False))
    out = tpl
    for col in columns:
        values = sorted(set(col))
        out = out.replace(
            "{}", "{" + nm.fold_indices(values) + "}" if len(values) > 1 else str(values[0]), 1
        )
    return out
