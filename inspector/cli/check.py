"""`ckpt check`: CI gate on shape compatibility (against a reference, a manifest or a plan).

With `--plan` the positional arguments are the plan's sources: one per source in the plan's
order, or `LABEL=PATH`, or none (the paths the plan records); `--against` is its target (default:
the path the plan records). Exit codes: 0 pass, 1 violations, 2 usage or input error.
"""

from __future__ import annotations

import argparse
import sys

from ..mapping.prefixed import parse_source
from . import EXIT_ERROR
from .gate_report import add_report_options, run_gate
from .inputs import file_of


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "checkpoint",
        nargs="*",
        help="checkpoint to check (or use --model); PATH::ROOT allowed. With --plan: the plan's "
        "sources, one per source in the plan's order or LABEL=PATH (none: the plan's paths)",
    )
    p.add_argument(
        "--model",
        metavar="PKG.MODULE:FACTORY",
        help="check the state dict of a model built by this factory (meta device)",
    )
    ref = p.add_mutually_exclusive_group()
    ref.add_argument("--against", metavar="REF", help="reference checkpoint (PATH::ROOT allowed)")
    ref.add_argument(
        "--manifest", metavar="YAML", help="shape manifest (from `ckpt ls --manifest`)"
    )
    p.add_argument(
        "--plan",
        metavar="YAML",
        help="mapping plan: CHECKPOINT... are its sources, REF its target (default: the plan's)",
    )
    p.add_argument(
        "--require",
        action="append",
        default=[],
        metavar="GLOB",
        help="only these names are checked, and they must exist (repeatable)",
    )
    p.add_argument(
        "--allow-missing",
        action="append",
        default=[],
        metavar="GLOB",
        help="names that may be absent on either side (repeatable)",
    )
    p.add_argument("--values", action="store_true", help="also require equal content digests")
    p.add_argument("--strict", action="store_true", help="warnings (dtype casts) fail too")
    add_report_options(p, verbose_help="show info findings too")


def run(args: argparse.Namespace) -> int:
    from ..checking import check, check_model

    problem = _usage_problem(args)
    if problem:
        print(f"ckpt check: error: {problem}", file=sys.stderr)
        return EXIT_ERROR
    given = args.checkpoint if args.plan else (args.checkpoint or [None])[0]
    options = dict(
        against=args.against,
        manifest=args.manifest,
        plan=args.plan,
        require=args.require,
        allow_missing=args.allow_missing,
        values=args.values,
        strict=args.strict,
    )
    named = [parse_source(a)[1] for a in args.checkpoint] if args.plan else args.checkpoint
    inputs = [file_of(p) for p in (*named, args.against, args.manifest, args.plan) if p]
    return run_gate(
        "check",
        args,
        inputs,
        lambda: check_model(args.model, **options) if args.model else check(given, **options),
    )


def _usage_problem(args: argparse.Namespace) -> str:
    if args.plan and args.manifest:
        return "--plan is checked against its target (--against), not a manifest"
    if not (args.plan or args.against or args.manifest):
        return "give --against REF, --manifest YAML or --plan YAML"
    if args.model and args.checkpoint:
        return "give a CHECKPOINT or --model, not both"
    if not args.plan and len(args.checkpoint) != 1 and not args.model:
        return "give one CHECKPOINT (or --model); several only with --plan (its sources)"
    return ""
