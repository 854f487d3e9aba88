"""Fewer passes of Python's cyclic garbage collector while the module tree is built.

`build_tree` makes a node or more per tensor, none of them cyclic. CPython runs its cycle
collector every 700 allocations and, as the heap grows, rescans older objects again and again:
at 200k tensors that cost more than the tree itself (1.4 s without the collector, 3.3 s with its
default thresholds). Readers use it only around their compiled fast paths (a torch zip's
directory and pickle, the naming of a state dict's tensors): never around the Python pickle
machine, which is cyclic garbage once it has run (its opcode table holds bound methods) and keeps
its memo alive until a full collection, so a reader under raised thresholds would hold far more
memory (200k tensors in a .pt: peak RSS 543 -> 805 MB).
"""

from __future__ import annotations

import gc

# Young objects between collections (default 700), and collections of each generation before
# the next one is collected (defaults 10, 10).
THRESHOLDS = (50_000, 500, 1000)


class rare_gc:  # lower case: used as a function is, `with rare_gc():`
    """Run the block with `THRESHOLDS` (the former thresholds are back when it ends; nested
    blocks restore what they found). A class, not a generator: a DCP folder enters it once per
    tensor's zip, and contextlib's generator machinery cost more than the block at 8k zips."""

    __slots__ = ("_before",)

    def __enter__(self) -> None:
        self._before = gc.get_threshold()
        gc.set_threshold(*THRESHOLDS)

    def __exit__(self, *exc: object) -> None:
        gc.set_threshold(*self._before)


class paused_gc:
    """Run the block without the cycle collector: for a block that makes many objects that live
    on and hold no cycles (a plan edit's 100k new rows). Even `rare_gc`'s passes walk each
    young object: 100k rows made under it took 60 ms, 33 without. The collector is back (if it
    was on) when the block ends; the objects made are collected from then on as any others."""

    __slots__ = ("_was_on",)

    def __enter__(self) -> None:
        self._was_on = gc.isenabled()
        gc.disable()

    def __exit__(self, *exc: object) -> None:
        if self._was_on:
            gc.enable()
