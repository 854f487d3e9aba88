"""`ckpt diff A B`: grouped differences with folded layer ranges; exit 0 equal, 1 different."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .. import jsonout
from ..diffing import CHANGED, DIFFERENT, DTYPE, SHAPE, STATUSES, DiffResult, diff
from ..errors import PlotError
from ..tree import fold_names
from .inputs import open_inputs
from .progress import meter

TITLES = {
    "only-a": "only in A",
    "only-b": "only in B",
    "shape-mismatch": "shape mismatch",
    "dtype-mismatch": "dtype mismatch",
    "changed": "changed values",
    "identical": "identical",
    "same-signature": "same shape and dtype (values not compared)",
}


PER_ROW_REASON = (SHAPE, DTYPE)  # the other statuses' reason is their title


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("a", help="first checkpoint (A); PATH::ROOT picks its weights sub-tree")
    p.add_argument("b", help="second checkpoint (B); PATH::ROOT picks its weights sub-tree")
    p.add_argument("--root", metavar="SPEC", help="weights sub-tree of each side that has it")
    p.add_argument("--no-values", action="store_true", help="names, shapes and dtypes only")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--strip-prefix", metavar="P", help="align names by a prefix such as 'module.'")
    p.add_argument("--plan", help="align names with a plan file (A = source, B = target)")
    p.add_argument("--rtol", type=float, default=1e-5)
    p.add_argument("--atol", type=float, default=1e-8)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--all", action="store_true", help="also list identical tensors")
    p.add_argument("--plot", metavar="FILE",
                   help="draw per-layer relative change and cosine of the changed tensors into "
                        "FILE (.svg, .png or .html); needs matplotlib: "
                        "pip install 'ckpt-inspector[plot]'")


def run(args: argparse.Namespace) -> int:
    if args.plot is not None:
        if args.no_values:
            raise PlotError("--plot draws compared values: it cannot go with --no-values")
        from ..plotting import check_output

        check_output(args.plot)  # before the diff: a missing extra fails at once
    mapping: Any = args.strip_prefix
    if args.plan:
        from ..mapping import Plan

        mapping = Plan.load(args.plan)
    sides: list[Any] = [args.a, args.b]
    if args.root is not None:  # opened here: --root applies to the sides that have it
        sides = list(open_inputs(sides, args.root))
    result = diff(
        sides[0],
        sides[1],
        values=not args.no_values,
        mapping=mapping,
        rtol=args.rtol,
        atol=args.atol,
        threads=args.threads,
        progress=meter("hashing"),
    )
    if args.json:
        jsonout.dump(result.to_json(), sys.stdout)
        sys.stdout.write("\n")
    else:
        write_text(result, sys.stdout, show_identical=args.all)
    if args.plot is not None:
        _plot(result, args.plot, (args.a, args.b))
    return 0 if result.equal else 1


def _plot(result: DiffResult, path: str, inputs: tuple[str, str]) -> None:
    from ..plotting import plot_result

    out, bars = plot_result(result, path, inputs)
    print(f"plot: {out} ({bars} layers)", file=sys.stderr)


def write_text(result: DiffResult, out: Any, *, show_identical: bool = False) -> None:
    out.write(f"A: {result.a}\nB: {result.b}\n")
    counts = result.counts()
    for status in STATUSES:
        if status not in counts or (status not in DIFFERENT and not show_identical):
            continue
        out.write(f"\n{TITLES[status]} ({counts[status]}):\n")
        for line in _status_lines(result, status):
            out.write(f"  {line}\n")
    out.write("\nby module:\n")
    for m in result.modules():
        parts = ", ".join(f"{n} {TITLES[s]}" for s, n in m.counts.items())
        out.write(f"  {m.module or '(top)'}: {parts}\n")
    verdict = "equal" if result.equal else "different"
    summary = ", ".join(f"{n} {TITLES[s]}" for s, n in counts.items())
    out.write(f"\n{verdict}: {summary}\n")


def _status_lines(result: DiffResult, status: str) -> list[str]:
    """One status's rows with layer ranges folded. Where every row has the same reason the
    names are folded straight from the result's columns (no row objects: there may be
    millions); shape and dtype mismatches are folded per reason; changed rows are one a line."""
    if status == CHANGED:
        return [f"{r.name}: {r.reason}" for r in result.by_status(CHANGED)]
    if status not in PER_ROW_REASON:
        return result.folded(status)
    by_reason: dict[str, list[str]] = {}
    for r in result.by_status(status):
        by_reason.setdefault(r.reason, []).append(r.name)
    return [f"{name}  ({reason})"
            for reason, names in by_reason.items() for name in fold_names(names)]
