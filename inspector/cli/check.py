"""`ckpt check`: CI gate on shape compatibility (against a reference, a manifest or a plan).

Exit codes: 0 pass, 1 violations, 2 usage or input error.
"""

from __future__ import annotations

import argparse
import sys

from . import EXIT_ERROR
from .gate_report import add_report_options, run_gate
from .inputs import file_of


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "checkpoint", nargs="?", help="checkpoint to check (or use --model); PATH::ROOT allowed"
    )
    p.add_argument(
        "--model",
        metavar="PKG.MODULE:FACTORY",
        help="check the state dict of a model built by this factory (meta device)",
    )
    ref = p.add_mutually_exclusive_group(required=True)
    ref.add_argument("--against", metavar="REF", help="reference checkpoint (PATH::ROOT allowed)")
    ref.add_argument(
        "--manifest", metavar="YAML", help="shape manifest (from `ckpt ls --manifest`)"
    )
    p.add_argument(
        "--plan", metavar="YAML", help="mapping plan: CHECKPOINT is its source, REF its target"
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

    if (args.checkpoint is None) == (args.model is None):
        print("ckpt check: error: give a CHECKPOINT or --model, not both", file=sys.stderr)
        return EXIT_ERROR
    if args.plan and not args.against:
        print("ckpt check: error: --plan needs --against (the plan's target)", file=sys.stderr)
        return EXIT_ERROR
    options = dict(
        against=args.against,
        manifest=args.manifest,
        plan=args.plan,
        require=args.require,
        allow_missing=args.allow_missing,
        values=args.values,
        strict=args.strict,
    )
    inputs = [file_of(p) for p in (args.checkpoint, args.against, args.manifest, args.plan) if p]
    return run_gate(
        "check",
        args,
        inputs,
        lambda: check_model(args.model, **options) if args.model else check(args.checkpoint,
                                                                            **options),
    )
