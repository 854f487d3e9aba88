"""Options and signal handling shared by the commands that write a checkpoint (apply, convert)."""

from __future__ import annotations

import argparse
import signal
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
