"""Which rank hashes which tensor: a pure function of the tensors' sizes and files, so that every
rank computes the same split without talking to the others.

Greedy, largest first: a tensor goes to the rank that owns its file while that rank is below the
average load (total / ranks), else to the least loaded rank (ties: the lowest rank). No rank ends
above average + the largest tensor: the first rule adds one tensor to a rank below the average;
the second adds it to a rank loaded at most (total - its size) / ranks. A rank whose own files
hold about its share keeps all of them (its pages may still be in its node's cache).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import PurePath

# A DCP storage file written by rank R: "__R_N.distcp" (torch.distributed.checkpoint).
_DCP_FILE = re.compile(r"__(\d+)_(\d+)\.distcp")


def file_owners(files: Iterable[str], world: int) -> dict[str, int]:
    """The rank that owns each file: a DCP folder's `__R_N.distcp` belongs to rank R (modulo the
    world size); other files go round-robin in the order of their paths."""
    owners: dict[str, int] = {}
    others = []
    for f in sorted(set(files)):
        m = _DCP_FILE.fullmatch(PurePath(f).name)
        if m:
            owners[f] = int(m.group(1)) % world
        else:
            others.append(f)
    owners.update((f, i % world) for i, f in enumerate(others))
    return owners


def assign(sizes: Sequence[int], owners: Sequence[int | None], world: int) -> list[int]:
    """The rank of each item (`sizes[i]` bytes, preferring rank `owners[i]`; None: no
    preference), for `world` ranks."""
    if world < 1:
        raise ValueError(f"world size must be at least 1, not {world}")
    if len(sizes) != len(owners):
        raise ValueError(f"{len(sizes)} sizes but {len(owners)} owners")
    total = sum(sizes)
    load = [0] * world
    out = [0] * len(sizes)
    for i in sorted(range(len(sizes)), key=lambda i: (-sizes[i], i)):
        owner = owners[i]
        if owner is not None and not 0 <= owner < world:
            raise ValueError(f"item {i}: owner rank {owner} is not in a world of {world}")
        if owner is not None and (load[owner] * world < total or sizes[i] == 0):
            rank = owner
        else:
            rank = min(range(world), key=lambda r: (load[r], r))
        load[rank] += sizes[i]
        out[i] = rank
    return out
