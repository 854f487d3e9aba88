"""ckpt-tui: review and approve a mapping in a terminal UI before anything is written.

    ckpt-tui old.pt new.nemo                       # one source, one target
    ckpt-tui enc.pt dec.pt --target new.nemo       # several sources feed one target
    ckpt-tui old.pt new.nemo --plan plan.yaml      # continue reviewing a saved plan
    ckpt-tui --demo                                # sample checkpoints with a real mismatch
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import CheckpointError, PlanError, WriteError
from ..mapping.prefixed import parse_source, split_source, with_prefix

EXIT_OK, EXIT_ERROR = 0, 2


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ckpt-tui",
        description="Review where each target tensor comes from, correct it, approve it, write it.",
    )
    p.add_argument("paths", nargs="*", metavar="PATH",
                   help="SOURCE... TARGET, or SOURCE... with --target; PREFIX=SOURCE adds a prefix")
    p.add_argument("-t", "--target", help="the target checkpoint (then every PATH is a source)")
    p.add_argument("--plan", help="load this plan instead of proposing one (saved there with s)")
    p.add_argument("-o", "--output",
                   help="where w writes (default: next to the target, with .migrated in the name)")
    p.add_argument("--rules", help="rules file, built-in rule set, or inline YAML "
                                   "('{rules: [...]}') used for the proposal")
    p.add_argument("--layers", metavar="SPEC",
                   help="take these source layers for the target's, as ckpt map --layers: "
                        "every:K, first, first:N, 0,2,4 (rules added after --rules)")
    p.add_argument("--layers-prefix", action="append", default=[], metavar="P",
                   help="the layer list(s) --layers applies to; repeatable")
    p.add_argument("--demo", action="store_true",
                   help="build sample checkpoints in a temp folder and open them")
    return p


def resolve(args: argparse.Namespace) -> tuple[list[Any], str, Path | None]:
    """(sources, target, output) from the arguments; errors are usage errors."""
    paths = list(args.paths)
    if args.target is None:
        if len(paths) < 2:
            raise SystemExit("ckpt-tui: error: give SOURCE... TARGET (or --target), or --demo")
        *srcs, target = paths
    else:
        srcs, target = paths, args.target
        if not srcs:
            raise SystemExit("ckpt-tui: error: give at least one source")
    sources = [with_prefix(*parse_source(s)) for s in srcs]
    output = Path(args.output) if args.output else None
    if output is not None:
        _check_output(output, [target, *(split_source(s)[1] for s in sources)])
    return sources, target, output


def _check_output(output: Path, inputs: list[str]) -> None:
    from ..io.atomic import check_not_input

    try:
        check_not_input(output, [i for i in inputs if os.path.exists(i)])
    except WriteError as e:
        raise SystemExit(f"ckpt-tui: error: {e}") from None


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.plan and (args.layers or args.layers_prefix):
        raise SystemExit("ckpt-tui: error: --layers proposes a plan; --plan has its rules")
    from .app import create_app

    with tempfile.TemporaryDirectory(prefix="ckpt-tui-demo-") as tmp:
        if args.demo:
            from ..demo import build_demo

            files = build_demo(tmp)
            sources: list[Any] = [str(files.source)]
            target: str = str(files.target)
            output = Path(args.output) if args.output else None
        else:
            sources, target, output = resolve(args)
        try:
            app = create_app(sources, target, plan=args.plan, output=output, rules=args.rules,
                             layers=args.layers, layers_prefix=args.layers_prefix)
            code = app.run()
        except (CheckpointError, PlanError, WriteError) as e:
            print(f"ckpt-tui: error: {e}", file=sys.stderr)
            return EXIT_ERROR
    return code if isinstance(code, int) else EXIT_OK


