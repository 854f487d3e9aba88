"""`torchrun --nproc-per-node N -m inspector.distributed hash|verify|diff ...`: rank 0 prints
what `ckpt hash` / `ckpt diff` print, the other ranks nothing; every rank exits with the code the
single-process command would (0 ok / equal, 1 mismatch / different, 2 input error)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import TextIO

from ..cli import EXIT_FOUND, EXIT_OK, guarded
from ..cli.diff import write_text as write_diff
from ..errors import RankFailedError
from ..hash_report import write_json, write_text
from . import DEFAULT_TIMEOUT, VerifyResult, diff, hash, verify


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m inspector.distributed",
        description="ckpt hash / verify / diff with the hashing shared over torchrun's ranks",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    h = sub.add_parser("hash", help="what `ckpt hash PATH` prints")
    v = sub.add_parser("verify", help="hash and compare with a `ckpt hash --json` manifest")
    d = sub.add_parser("diff", help="what `ckpt diff A B` prints (values compared)")
    for p in (h, v):
        p.add_argument("path", help="checkpoint file or folder (PATH::ROOT picks the weights)")
        p.add_argument("--root", help="weights sub-tree inside the container")
    v.add_argument("--expected", metavar="MANIFEST",
                   help="`ckpt hash --json` output, or a checkpoint digest ckh1:...")
    d.add_argument("a", help="first checkpoint (A)")
    d.add_argument("b", help="second checkpoint (B)")
    d.add_argument("--rtol", type=float, default=1e-5)
    d.add_argument("--atol", type=float, default=1e-8)
    d.add_argument("--all", action="store_true", help="also list identical tensors")
    for p in (h, v, d):
        p.add_argument("--json", action="store_true", help="machine-readable output")
        p.add_argument("--threads", type=int, default=None,
                       help="hashing threads per rank (default: the node's cores / its ranks)")
        p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, metavar="S",
                       help=f"seconds a rank waits for the others (default {DEFAULT_TIMEOUT:g})")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    speaks = _rank() == 0
    out: TextIO = sys.stdout if speaks else open(os.devnull, "w")  # noqa: SIM115
    try:
        return guarded(f"ckpt {args.command}", lambda: COMMANDS[args.command](args, out),
                       tell=lambda e: speaks or not isinstance(e, RankFailedError))
    finally:
        if out is not sys.stdout:
            out.close()


def _hash(args: argparse.Namespace, out: TextIO) -> int:
    manifest = hash(args.path, root=args.root, threads=args.threads, timeout=args.timeout)
    (write_json if args.json else write_text)(manifest, out)
    return EXIT_OK


def _verify(args: argparse.Namespace, out: TextIO) -> int:
    result = verify(args.path, args.expected, root=args.root, threads=args.threads,
                    timeout=args.timeout)
    if args.json:
        write_json(result.to_json(), out)
    else:
        write_verify(result, out)
    return EXIT_OK if result.ok else EXIT_FOUND


def _diff(args: argparse.Namespace, out: TextIO) -> int:
    result = diff(args.a, args.b, rtol=args.rtol, atol=args.atol, threads=args.threads,
                  timeout=args.timeout)
    if args.json:
        write_json(result.to_json(), out)
    else:
        write_diff(result, out, show_identical=args.all)
    return EXIT_OK if result.equal else EXIT_FOUND


COMMANDS = {"hash": _hash, "verify": _verify, "diff": _diff}


def write_verify(result: VerifyResult, out: TextIO) -> None:
    """One line per mismatching tensor, then the verdict."""
    for m in result.mismatches:
        seen = {"changed": f"expected {m.expected}, got {m.actual}",
                "missing": f"expected {m.expected}, not in the checkpoint",
                "unexpected": f"got {m.actual}, not in the manifest"}[m.kind]
        out.write(f"{m.kind:<10}  {m.name}  {seen}\n")
    if result.ok:
        out.write(f"ok: {result.digest}  ({result.tensors} tensors)\n")
    elif result.mismatches:
        out.write(f"mismatch: {len(result.mismatches)} tensor(s) differ from the manifest "
                  f"({result.digest}, expected {result.expected})\n")
    else:
        out.write(f"mismatch: checkpoint digest {result.digest}, expected {result.expected}\n")


def _rank() -> int:
    return int(os.environ.get("RANK", "0") or 0)


if __name__ == "__main__":
    sys.exit(main())
