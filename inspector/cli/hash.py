"""`ckpt hash PATH`: per-tensor content digests and the checkpoint digest."""

from __future__ import annotations

import argparse
import sys

from ..hash_report import hash_manifest, write_json, write_text
from ..hashing import hash_tensors
from ..reader import open_checkpoint
from .progress import meter


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("path", help="checkpoint file or folder (PATH::ROOT picks the weights)")
    p.add_argument(
        "--root", help="weights sub-tree inside the container ('' for the top); or PATH::ROOT"
    )
    p.add_argument("--json", action="store_true", help="write the manifest as JSON")
    p.add_argument("--threads", type=int, default=None, help="hashing threads (default: all cores)")


def run(args: argparse.Namespace) -> int:
    ckpt = open_checkpoint(args.path, root=args.root)
    digests = hash_tensors(ckpt, threads=args.threads, progress=meter("hashing"))
    (write_json if args.json else write_text)(hash_manifest(ckpt, digests), sys.stdout)
    return 0
