"""Options and signal handling shared by the commands that write a checkpoint (apply, convert,
average), and their `--plot` of what the output changed."""

from __future__ import annotations

import argparse
import signal
import sys
from types import FrameType

from ..writers import FORMATS


def add_write_options(p: argparse.ArgumentParser, whose: str) -> None:
    """--format, --shards, --keep-unknown-globals (of `whose` tree), --threads."""
    p.add_argument("--format", choices=sorted(FORMATS), help="output format (default: by suffix)")
    p.add_argument("--shards", type=int, default=1, metavar="N",
                   help="DCP output: N rank files, tensors with at least N rows split along "
                        "dim 0 as torch.chunk does (default 1)")
    p.add_argument("--keep-unknown-globals", action="store_true",
                   help=f"write the {whose}'s calls to globals that are not data "
                        "(os.system(...)) into the output; refused by default")
    p.add_argument("--threads", type=int, default=None, help="copy/hash threads")


def remove_temp_on_sigterm() -> None:
    """A kill (SIGTERM) unwinds like Ctrl-C, so that the output's temp file is removed."""
    signal.signal(signal.SIGTERM, _interrupt)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def add_plot_option(p: argparse.ArgumentParser, against: str) -> None:
    p.add_argument("--plot", metavar="FILE",
                   help="after writing, draw the output's per-layer relative change and cosine "
                        f"against {against} into FILE (.svg, .png or .html, as ckpt diff --plot "
                        "draws it); needs matplotlib: pip install 'ckpt-inspector[plot]'")


def check_plot(path: str | None, *written_or_read: str | None) -> None:
    """Before any work: a bad --plot path, one naming the output or an input given on the
    command line, or a missing matplotlib fails at once (exit 2)."""
    if path is None:
        return
    from pathlib import Path

    from ..errors import PlotError
    from ..plotting import check_output
    from ..reader import split_root

    picture = Path(path)
    if picture.is_dir():
        raise PlotError(f"{path}: --plot names a folder; give a file (.svg, .png or .html)")
    for other in written_or_read:
        if other is not None and Path(split_root(other)[0]).resolve() == picture.resolve():
            raise PlotError(f"{path}: --plot names {other}, which this command reads or "
                            "writes; give the picture a path of its own")
    check_output(path)


def plot_written(path: str | None, before: str, after: str) -> None:
    """--plot: the written `after` against `before`, by value; one line on stderr."""
    if path is None:
        return
    from ..plotting import plot_change

    out, bars = plot_change(before, after, path)
    print(f"plot: {out} ({bars} layers)", file=sys.stderr)
