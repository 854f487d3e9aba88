"""Pausing Python's cyclic garbage collector while millions of objects are built.

A reader and the module tree build one or more objects per tensor, none of them cyclic. CPython
runs its cycle collector every few hundred allocations and, as the heap grows, rescans the whole
heap again and again: at 200k tensors that cost more than the work itself (the tree: 3.3 s with
the collector, 1.4 s without). Reference counting still frees everything acyclic; the collector
is back on (if it was on) when the block ends.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def paused_gc() -> Iterator[None]:
    """Run the block without cyclic collections (nested and threaded use is safe: the block
    that paused it is the one that turns it back on)."""
    was_on = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_on:
            gc.enable()
