"""`ckpt hash PATH`: per-tensor content digests and the checkpoint digest."""

from __future__ import annotations

import argparse
import json
import sys

from ..hashing import checkpoint_digest, hash_tensors
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
    total = checkpoint_digest(digests)
    if args.json:
        doc = {
            "path": str(ckpt.path) if ckpt.path else None,
            "format": ckpt.format,
            "digest": str(total),
            "tensors": [
                {"name": n, "dtype": ckpt[n].dtype, "shape": list(ckpt[n].shape), "digest": str(d)}
                for n, d in digests.items()
            ],
        }
        json.dump(doc, sys.stdout, indent=1)
        sys.stdout.write("\n")
        return 0
    width = max((len(n) for n in digests), default=10) + 2
    for name, d in digests.items():
        sys.stdout.write(f"{d}  {name:<{width}}{ckpt[name].dtype} {list(ckpt[name].shape)}\n")
    sys.stdout.write(f"{total}  (checkpoint: {len(digests)} tensors)\n")
    return 0
