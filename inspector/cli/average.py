"""`ckpt average IN IN... -o OUT`: the tensor-by-tensor mean of checkpoints, written atomically
and verified (docs/average.md).

Exit codes: 0 written and verified; 2 bad input (inputs that disagree, a missing icefall key) or a
write that did not verify (nothing written).
"""

from __future__ import annotations

import argparse
import sys

from ..averaging import INT_RULES, average, check_arguments
from ..writers import FORMATS
from . import EXIT_ERROR, EXIT_OK
from .progress import meter
from .writing import add_plot_option, check_plot, plot_written, remove_temp_on_sigterm


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="+", metavar="IN",
                   help="checkpoints to average (PATH::ROOT allowed); with --from-averaged: "
                        "START END")
    p.add_argument("-o", "--output", required=True, metavar="OUT",
                   help="the file to write; it keeps the first input's container (or --like's)")
    p.add_argument("--weights", metavar="W1,W2,...", type=_weights,
                   help="one relative weight per input (the mean divides by their sum)")
    p.add_argument("--root", metavar="KEY",
                   help="the weights sub-tree of every input given without ::ROOT")
    p.add_argument("--int", dest="ints", choices=INT_RULES,
                   help="integer tensors: floor of the mean (icefall's //, the default), the "
                        "first or the last input's values (default with --from-averaged: last)")
    p.add_argument("--from-averaged", action="store_true",
                   help="icefall --use-averaged-model: START END checkpoints; the mean over the "
                        "batches between them from their model_avg and batch_idx_train")
    p.add_argument("--like", metavar="TARGET",
                   help="write the averages into TARGET's container instead of the first input's")
    p.add_argument("--format", choices=sorted(FORMATS), help="output format (default: by suffix)")
    p.add_argument("--keep-unknown-globals", action="store_true",
                   help="write the container's calls to globals that are not data into the "
                        "output; refused by default")
    p.add_argument("--threads", type=int, default=None, help="write/hash threads")
    add_plot_option(p, "the first input (with --from-averaged: END)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")


def _weights(text: str) -> list[float]:
    try:
        return [float(w) for w in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of numbers: {text!r}") \
            from None


def run(args: argparse.Namespace) -> int:
    remove_temp_on_sigterm()
    try:
        check_arguments(len(args.inputs), args.weights, args.ints, args.from_averaged,
                        args.root)
    except ValueError as e:  # a usage error: exit 2 like argparse's own
        print(f"ckpt average: error: {e}", file=sys.stderr)
        return EXIT_ERROR
    check_plot(args.plot, args.output, args.like, *args.inputs)
    report = average(args.inputs, args.output, weights=args.weights, root=args.root,
                     ints=args.ints, from_averaged=args.from_averaged, like=args.like,
                     format=args.format, threads=args.threads, progress=meter("writing"),
                     keep_unknown_globals=args.keep_unknown_globals)
    print(report.to_json() if args.json else report.to_text())
    plot_written(args.plot, args.inputs[-1] if args.from_averaged else args.inputs[0],
                 args.output)
    return EXIT_OK
