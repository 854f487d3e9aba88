"""`ckpt apply plan.yaml -o OUT`: write the target with the plan's approved rows applied.

Scripted use without a plan file: `ckpt apply --source [PREFIX=]SRC --target TGT [--rules R]
-o OUT` proposes the plan on the spot (it still needs --accept-proposed to apply unreviewed rows;
ambiguous rows, with equally good sources, need --skip-ambiguous on top to be written at init).
Exit codes: 0 written and verified; 1 refused because rows are still proposed or ambiguous, or
(--strict) because target tensors would keep their init with no declared reason (nothing
written); 2 bad input, plan or write error (nothing written).
"""

from __future__ import annotations

import argparse

from ..applying import Inputs, apply, open_plan_inputs
from ..errors import PlanError
from ..mapping.plan import Plan
from ..mapping.prefixed import parse_source, with_prefix
from ..mapping.propose import propose
from ..mapping.rules import load_rules
from ..reader import open_checkpoint
from . import EXIT_OK
from .layers import add_layer_arguments, layer_rules
from .progress import meter
from .writing import (
    add_plot_option,
    add_write_options,
    check_plot,
    plot_written,
    remove_temp_on_sigterm,
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("plan", nargs="?", metavar="PLAN", help="an approved plan file (YAML)")
    p.add_argument("-o", "--output", required=True, metavar="OUT",
                   help="the file (or folder) to write; its suffix picks the format")
    p.add_argument("--source", action="append", default=[], metavar="SRC",
                   help="scripted use: a source checkpoint (repeatable), with --target; "
                        "PREFIX=SRC puts PREFIX before its names (encoder.=enc.nemo), as in "
                        "ckpt map")
    p.add_argument("--target", metavar="TGT", help="scripted use: the target checkpoint")
    p.add_argument("--rules", action="append", default=[], metavar="R",
                   help="scripted use: rules file, built-in set, or inline YAML ('{rules: "
                        "[...]}' or '[...]'); repeatable")
    add_layer_arguments(p)
    p.add_argument("--accept-proposed", action="store_true",
                   help="apply rows that are still 'proposed' (marked so in the report); "
                        "ambiguous rows are refused (exit 1) unless --skip-ambiguous")
    p.add_argument("--skip-ambiguous", action="store_true",
                   help="write ambiguous rows (equally good sources, none chosen) at the "
                        "target's init instead of refusing; the report counts them")
    p.add_argument("--strict", action="store_true",
                   help="refuse (exit 1, nothing written) when any target tensor would keep its "
                        "init with no declared reason (shape mismatch, no source, ambiguous)")
    p.add_argument("--force", action="store_true",
                   help="apply even when the checkpoints' fingerprints differ from the plan's")
    add_write_options(p, "target")
    add_plot_option(p, "the target")
    p.add_argument("--json", action="store_true", help="print the transfer report as JSON")


def run(args: argparse.Namespace) -> int:
    remove_temp_on_sigterm()
    check_plot(args.plot, args.output, args.plan, args.target,
               *(parse_source(s)[1] for s in args.source))
    plan, inputs = _plan(args)
    # rows still proposed (PendingRowsError), ambiguous rows accepted unreviewed
    # (AmbiguousRowsError) and, with --strict, rows left at init (PartialTransferError) exit 1 by
    # their class (cli.EXIT_CODES)
    report = apply(plan, args.output, accept_proposed=args.accept_proposed, force=args.force,
                   threads=args.threads, format=args.format, inputs=inputs,
                   keep_unknown_globals=args.keep_unknown_globals, progress=meter("writing"),
                   strict=args.strict, shards=args.shards,
                   skip_ambiguous=args.skip_ambiguous)
    print(report.to_json() if args.json else report.to_text())
    plot_written(args.plot, report.target, args.output)
    return EXIT_OK


def _plan(args: argparse.Namespace) -> tuple[Plan | str, Inputs | None]:
    """The plan: its file (apply loads it, and refuses to write over it), or proposed here."""
    if args.plan and (args.layers or args.layers_prefix):
        raise PlanError("--layers is for --source/--target; a plan file holds its rules already")
    if args.plan and (args.source or args.target):
        raise PlanError("give a plan file or --source/--target, not both")
    if args.plan:
        return str(args.plan), None
    if not args.source or not args.target:
        raise PlanError("give a plan file, or --source SRC --target TGT")
    parsed = [parse_source(s) for s in args.source]
    opened = [open_checkpoint(path) for _, path in parsed]
    target = open_checkpoint(args.target)
    rules = [r for spec in args.rules for r in load_rules(spec)]
    sources = [with_prefix(prefix, c) for (prefix, _), c in zip(parsed, opened, strict=True)]
    rules += layer_rules(args, sources, target, rules)
    plan = propose(sources, target, rules)
    by_label = {ref.label: ckpt for ref, ckpt in zip(plan.sources, opened, strict=True)}
    return plan, Inputs(plan, by_label, target, [])


__all__ = ["add_arguments", "open_plan_inputs", "run"]
