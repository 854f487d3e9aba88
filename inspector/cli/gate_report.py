"""What the CI gates (`ckpt check`, `ckpt scan`) share on the command line: the report options,
and a report even when the gate cannot run (a missing or unreadable input), so that a CI step
that uploads the report (`if: always()`) finds one that names the file and the problem."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any

from ..errors import CheckpointError
from ..findings import ERROR, FORMATS, INPUT_ERROR, Finding, Report, write_report
from . import EXIT_ERROR, exit_code_for


def add_report_options(p: argparse.ArgumentParser, *, verbose_help: str) -> None:
    p.add_argument("--format", choices=list(FORMATS), default="text", help="output format")
    p.add_argument(
        "--output", "-o", metavar="FILE", help="write the report here (text summary to stdout)"
    )
    p.add_argument("--verbose", "-v", action="store_true", help=verbose_help)


def run_gate(
    command: str, args: argparse.Namespace, inputs: Sequence[str], gate: Callable[[], Any]
) -> int:
    """Run `gate()` and report its result. An input error (exit code 2) is reported too, as one
    `input-error` finding, where the report goes (`-o FILE`, or stdout for a machine format),
    then raised on for the command line to print and exit with."""
    try:
        result = gate()
    except Exception as e:
        if exit_code_for(e) == EXIT_ERROR and (args.output or args.format != "text"):
            _report_input_error(command, args, inputs, e)
        raise
    return report(result, args, inputs)


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


def input_error_finding(e: BaseException, inputs: Sequence[str]) -> Finding:
    """The error as a finding: the file it names (its path, else the first input), the key."""
    if isinstance(e, CheckpointError):
        file, key, message = e.path, e.key, e.what
    elif isinstance(e, OSError) and e.filename is not None:
        file, key, message = str(e.filename), None, e.strerror or str(e)
    else:
        file, key, message = None, None, str(e)
    return Finding(INPUT_ERROR, ERROR, file or (inputs[0] if inputs else ""), key, message)


def _report_input_error(
    command: str, args: argparse.Namespace, inputs: Sequence[str], e: BaseException
) -> None:
    result = Report(command, list(inputs), [input_error_finding(e, inputs)])
    try:
        report(result, args, inputs)
    except Exception as failed:  # the report cannot be written: say so, the input error stays
        if exit_code_for(failed) is None:
            raise
        print(f"ckpt {command}: error: report not written: {failed}", file=sys.stderr)
