"""`ckpt convert IN -o OUT`: the same tensors in another format, written atomically and verified.

Exit codes: 0 written and verified; 2 bad input or a write that did not verify (nothing written).
"""

from __future__ import annotations

import argparse
import signal
from types import FrameType

from ..converting import convert
from ..writers import FORMATS
from . import EXIT_OK
from .progress import meter


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", metavar="IN", help="checkpoint file or folder (PATH::ROOT allowed)")
    p.add_argument("-o", "--output", required=True, metavar="OUT",
                   help="the file (or folder) to write; its suffix picks the format")
    p.add_argument("--format", choices=sorted(FORMATS), help="output format (default: by suffix)")
    p.add_argument("--shards", type=int, default=1, metavar="N",
                   help="DCP output: write N rank files, tensors with at least N rows split "
                        "along dim 0 as torch.chunk splits them")
    p.add_argument("--keep-unknown-globals", action="store_true",
                   help="write the input's calls to globals that are not data into the output; "
                        "refused by default")
    p.add_argument("--threads", type=int, default=None, help="copy/hash threads")
    p.add_argument("--json", action="store_true", help="print the report as JSON")


def run(args: argparse.Namespace) -> int:
    signal.signal(signal.SIGTERM, _interrupt)  # a kill still removes the temp file
    report = convert(args.input, args.output, format=args.format, threads=args.threads,
                     progress=meter("writing"), keep_unknown_globals=args.keep_unknown_globals,
                     shards=args.shards)
    print(report.to_json() if args.json else report.to_text())
    return EXIT_OK


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt
