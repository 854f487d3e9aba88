"""A progress callback for long CLI work: a one-line meter on stderr when it is a terminal."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

from .. import humanize


def meter(label: str, *, enabled: bool | None = None) -> Callable[[int, int], None] | None:
    """`progress(done, total)` printing `label 42% 1.2 GiB / 2.8 GiB  310.2 MiB/s, 5 s left`, or
    None when not a TTY."""
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        return None
    last, start = [0.0], time.monotonic()

    def progress(done: int, total: int) -> None:
        now = time.monotonic()
        if now - last[0] < 0.1 and done < total:
            return
        last[0] = now
        pct = 100 * done // total if total else 100
        end = "\n" if done >= total else ""
        sys.stderr.write(
            f"\r{label} {pct:3d}% {humanize.nbytes(done)} / {humanize.nbytes(total)}"
            f"{_rate(done, total, now - start)}\x1b[K{end}"
        )
        sys.stderr.flush()

    return progress


def _rate(done: int, total: int, elapsed: float) -> str:
    """`  310.2 MiB/s, 12 s left` once a rate is known (a remote file's hash is network-bound)."""
    if elapsed < 0.5 or done <= 0:
        return ""
    rate = done / elapsed
    left = "" if done >= total else f", {int((total - done) / rate)} s left"
    return f"  {humanize.nbytes(int(rate))}/s{left}"
