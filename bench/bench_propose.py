"""Time propose() for two checkpoints of ~10k tensors each.

    PYTHONPATH=. python bench/bench_propose.py [--repeat N]

Two cases: renamed blocks plus a `module.` prefix (every row goes through the ranked-candidate
path) and the same names (every row is an exact-name claim). Prints the best of N runs as wall
and CPU time: on a shared machine the CPU time is the steadier figure.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import inspector
from inspector.mapping import propose

LAYERS = 250  # 40 tensors per layer -> 10k tensors


def state(prefix: str) -> dict[str, np.ndarray]:
    small = np.zeros(4, dtype=np.float32)
    names = ["norm.weight", "norm.bias"]
    names += [f"attn.{p}.{w}" for p in ("q", "k", "v", "o") for w in ("weight", "bias")]
    names += [f"ffn{i}.fc{j}.{w}" for i in (1, 2) for j in (1, 2) for w in ("weight", "bias")]
    names += [f"conv.{p}.{w}" for p in ("pw1", "dw", "bn", "pw2") for w in ("weight", "bias")]
    names += [f"extra{i}.weight" for i in range(14)]
    return {f"{prefix}.{i}.{n}": small for i in range(LAYERS) for n in names}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per case (best is shown)")
    args = parser.parse_args()
    src = inspector.open(state("module.enc.blocks"))
    tgt = inspector.open(state("encoder.layers"))
    for label, s in (("renamed (heuristic)", src), ("same names", tgt)):
        wall, cpu = [], []
        for _ in range(args.repeat):
            w0, c0 = time.perf_counter(), time.process_time()
            plan = propose(s, tgt)
            wall.append(time.perf_counter() - w0)
            cpu.append(time.process_time() - c0)
        copied = sum(e.decision == "copy" for e in plan.entries.values())
        print(
            f"{label}: {len(s)} x {len(tgt)} tensors, {copied} copied, "
            f"best of {args.repeat}: {min(wall):.2f} s wall, {min(cpu):.2f} s CPU "
            f"(first run {wall[0]:.2f} s wall)"
        )


if __name__ == "__main__":
    main()
