"""Time propose() for two checkpoints of ~10k tensors each (renamed blocks: the heuristic path).

    PYTHONPATH=. python bench/bench_propose.py
"""

from __future__ import annotations

import time

import numpy as np

import inspector
from inspector.mapping import propose

LAYERS = 250  # 40 tensors per layer -> 10k tensors


def state(prefix: str) -> dict[str, np.ndarray]:
    small = np.zeros(4, dtype=np.float32)
    names = ["norm.weight", "norm.bias"] + [f"attn.{p}.{w}" for p in ("q", "k", "v", "o") for w in ("weight", "bias")]
    names += [f"ffn{i}.fc{j}.{w}" for i in (1, 2) for j in (1, 2) for w in ("weight", "bias")]
    names += [f"conv.{p}.{w}" for p in ("pw1", "dw", "bn", "pw2") for w in ("weight", "bias")]
    names += [f"extra{i}.weight" for i in range(14)]
    return {f"{prefix}.{i}.{n}": small for i in range(LAYERS) for n in names}


def main() -> None:
    src = inspector.open(state("module.enc.blocks"))
    tgt = inspector.open(state("encoder.layers"))
    for label, s in (("renamed (heuristic)", src), ("same names", tgt)):
        t0 = time.perf_counter()
        plan = propose(s, tgt)
        dt = time.perf_counter() - t0
        copied = sum(e.decision == "copy" for e in plan.entries.values())
        print(f"{label}: {len(s)} x {len(tgt)} tensors, {copied} copied, {dt:.2f} s")


if __name__ == "__main__":
    main()
