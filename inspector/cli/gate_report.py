"""What the CI gates (`ckpt check`, `ckpt scan`) share on the command line: the report options."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from ..findings import FORMATS, write_report


def add_report_options(p: argparse.ArgumentParser, *, verbose_help: str) -> None:
    p.add_argument("--format", choices=list(FORMATS), default="text", help="output format")
    p.add_argument(
        "--output", "-o", metavar="FILE", help="write the report here (text summary to stdout)"
    )
    p.add_argument("--verbose", "-v", action="store_true", help=verbose_help)


def report(result: Any, args: argparse.Namespace, inputs: Sequence[str]) -> int:
    """Write the gate's report as the options ask (never over an input); its exit code."""
    write_report(
        result,
        args.format,
        output=args.output,
        verbose=args.verbose,
        stream=sys.stdout,
        inputs=list(inputs),
    )
    code: int = result.exit_code
    return code
