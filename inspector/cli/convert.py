"""`ckpt convert IN -o OUT`: the same tensors in another format, written atomically and verified.

Exit codes: 0 written and verified; 2 bad input or a write that did not verify (nothing written).
"""

from __future__ import annotations

import argparse

from ..converting import convert
from . import EXIT_OK
from .progress import meter
from .writing import add_write_options, remove_temp_on_sigterm


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", metavar="IN", help="checkpoint file or folder (PATH::ROOT allowed)")
    p.add_argument("-o", "--output", required=True, metavar="OUT",
                   help="the file (or folder) to write; its suffix picks the format")
    add_write_options(p, "input")
    p.add_argument("--json", action="store_true", help="print the report as JSON")


def run(args: argparse.Namespace) -> int:
    remove_temp_on_sigterm()
    report = convert(args.input, args.output, format=args.format, threads=args.threads,
                     progress=meter("writing"), keep_unknown_globals=args.keep_unknown_globals,
                     shards=args.shards)
    print(report.to_json() if args.json else report.to_text())
    return EXIT_OK
