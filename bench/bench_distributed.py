"""The figures docs/distributed.md's time model needs, measured with N ranks on one machine.

    PYTHONPATH=. python bench/bench_distributed.py [--gb 2] [--tensors 2000] [--ranks 2]

A DCP folder (`dcp.save` in one process, float32 tensors of equal size) is built under $BENCH_TMP;
then, page cache warm, whole processes: `ckpt hash`, `python -m inspector.distributed hash` (a
world of one) and `torchrun --nproc-per-node N -m inspector.distributed hash`; and, inside a
torchrun job, each phase on each rank: joining the gloo group, opening the folder, hashing the
rank's share (GB/s), the all_gather of the digests. The measured figures of docs/distributed.md
come from its output (b_rank: the hashing rate on a cold page cache of the target file system).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

from common import PY, TMP, env, machine, measure, table, warm

# One rank's phases, timed with the same functions `inspector.distributed.hash` calls.
PHASES = r"""
import json, os, sys, time
t0 = time.perf_counter()
from inspector.distributed import api
from inspector.distributed.group import joined
from inspector.reader import open_checkpoint

times = {}
with joined(None, 600) as comm:
    times["join"] = time.perf_counter() - t0
    t = time.perf_counter()
    ckpt = open_checkpoint(sys.argv[1])
    times["open"] = time.perf_counter() - t
    items = [(ckpt, n) for n in ckpt]
    ranks = api._split(items, comm.size)
    mine = api._mine(list(ckpt), ranks, comm.rank)
    t = time.perf_counter(); digests = api.hash_tensors(ckpt, mine, threads=api._threads(None))
    times["hash"] = time.perf_counter() - t
    times["hash_gb"] = sum(ckpt[n].nbytes for n in mine) / 1e9
    payload = json.dumps({"listing": api._listing(items, ranks), "digests": api._printed(digests)})
    t = time.perf_counter()
    comm.all_gather(payload.encode())
    times["gather"] = time.perf_counter() - t
    times["payload_kb"] = len(payload) / 1e3
    os.write(1, (json.dumps({"rank": comm.rank, **times}) + "\n").encode())
"""


def build(folder: Path, gb: float, tensors: int) -> Path:
    import torch
    import torch.distributed.checkpoint as dcp

    if (folder / ".metadata").exists():
        return folder
    n = max(1, int(gb * 1e9 / 4 / tensors))
    state = {f"layers.{i}.weight": torch.rand(n) for i in range(tensors)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        dcp.save(state, checkpoint_id=str(folder), no_dist=True)
    return folder


def torchrun(ranks: int, *args: str) -> list[str]:
    return [PY, "-m", "torch.distributed.run", "--nproc-per-node", str(ranks), "--master-addr",
            "127.0.0.1", "--master-port", "29531", *args]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gb", type=float, default=2.0)
    ap.add_argument("--tensors", type=int, default=2000)
    ap.add_argument("--ranks", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    folder = build(TMP / f"dcp_{args.gb:g}gb_{args.tensors}", args.gb, args.tensors)
    warm(folder)
    rows = [
        measure("ckpt hash", [PY, "-m", "inspector.cli", "hash", str(folder)], repeat=args.repeat),
        measure("distributed, world of 1", [PY, "-m", "inspector.distributed", "hash",
                                            str(folder)], repeat=args.repeat),
        measure(f"torchrun, {args.ranks} ranks",
                torchrun(args.ranks, "-m", "inspector.distributed", "hash", str(folder)),
                repeat=args.repeat),
    ]
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(PHASES)
    out = subprocess.run(torchrun(args.ranks, f.name, str(folder)), capture_output=True,
                         text=True, env=env(), check=True).stdout
    print(f"{machine()}; {args.gb:g} GB DCP, {args.tensors} tensors, {args.ranks} ranks\n")
    print(table(rows, "ckpt hash"))
    print("\n| rank | join s (torch import too) | open s | hash s | share GB | GB/s | gather s "
          "| payload kB |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for line in sorted(out.splitlines()):
        t = json.loads(line)
        rate = t["hash_gb"] / t["hash"] if t["hash"] else float("nan")
        print(f"| {t['rank']} | {t['join']:.2f} | {t['open']:.3f} | {t['hash']:.3f} | "
              f"{t['hash_gb']:.2f} | {rate:.1f} | {t['gather']:.4f} | {t['payload_kb']:.0f} |")


if __name__ == "__main__":
    sys.exit(main())
