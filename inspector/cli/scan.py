"""`ckpt scan`: CI gate on unsafe checkpoints (pickle globals, structural tricks).

Exit codes: 0 pass, 1 dangerous findings (or unknown ones with --strict), 2 usage or input error.
"""

from __future__ import annotations

import argparse

from .gate_report import add_report_options, run_gate
from .inputs import file_of


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="+", metavar="PATH", help="checkpoint files or folders")
    p.add_argument(
        "--strict",
        action="store_true",
        help="unknown globals and warnings fail too (unknown is not safe)",
    )
    p.add_argument("--no-crc", action="store_true", help="skip CRC32 verification of zip records")
    add_report_options(p, verbose_help="also list the safe globals")


def run(args: argparse.Namespace) -> int:
    from ..scanning import scan

    paths = [file_of(p) for p in args.paths]  # a PATH::ROOT argument: the whole file is scanned
    return run_gate(
        "scan", args, paths, lambda: scan(paths, strict=args.strict, verify_crc=not args.no_crc)
    )
