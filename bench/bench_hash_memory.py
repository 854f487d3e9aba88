"""Memory of hashing one very large tensor: `ckpt hash` against a chunked xxhash read.

    PYTHONPATH=. python bench/bench_hash_memory.py [--gb 100]

Builds a sparse safetensors file (one uint8 tensor of --gb GB: no disk space, the kernel reads
zeros) under $BENCH_TMP, and runs each contender twice as a whole process: best wall time and
highest peak RSS (GNU time, which counts the file pages mapped into the process). The contender
is the flat-memory way a user hashes a file in Python: xxhash.xxh3_128 over 16 MiB reads. After
each run, `fincore` reports how much of the file the page cache holds (the kernel's, not the
process's).
Issue 11 (13): a 100 GB file held 21 GB resident; the goal is memory flat in the file size.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from common import PY, TMP, Run, machine, measure, table


def sparse_safetensors(gb: int) -> Path:
    path = TMP / f"sparse-{gb}gb.safetensors"
    nbytes = gb * 10**9
    if not path.exists() or path.stat().st_size < nbytes:
        TMP.mkdir(parents=True, exist_ok=True)
        header = json.dumps({"w": {"dtype": "U8", "shape": [nbytes], "data_offsets": [0, nbytes]}})
        head = header.encode() + b" " * (-len(header) % 8)
        with path.open("wb") as f:
            f.write(len(head).to_bytes(8, "little") + head)
            f.truncate(8 + len(head) + nbytes)
    return path


def cached_mb(path: Path) -> float:
    """Page-cache bytes of `path` (util-linux fincore), in MB; NaN when fincore is missing."""
    try:
        out = subprocess.run(["fincore", "--bytes", "--noheadings", "--output", "RES", str(path)],
                             capture_output=True, text=True, check=True).stdout
        return int(out.split()[0]) / 1e6
    except (OSError, subprocess.CalledProcessError, ValueError, IndexError):
        return float("nan")


XXHASH_READ = (
    "import sys, xxhash\n"
    "h = xxhash.xxh3_128()\n"
    "with open(sys.argv[1], 'rb', buffering=0) as f:\n"
    "    while chunk := f.read(1 << 24):\n"
    "        h.update(chunk)\n"
    "print(h.hexdigest())\n"
)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--gb", type=int, default=100)
    args = parser.parse_args()
    path = sparse_safetensors(args.gb)
    contenders = [
        ("ckpt hash", [PY, "-m", "inspector.cli", "hash", str(path)]),
        ("xxhash.xxh3_128 over 16 MiB reads", [PY, "-c", XXHASH_READ, str(path)]),
    ]
    rows: list[Run] = []
    cache: dict[str, float] = {}
    for label, argv in contenders:  # repeat 2: the first run of a file that fits in memory is cold
        rows.append(measure(label, argv, repeat=2))
        cache[label] = cached_mb(path)
    print(f"hash of a {args.gb} GB tensor (sparse file), whole process, {machine()}, best of 2:\n")
    print(table(rows, "ckpt hash"))
    print()
    for label, mb in cache.items():
        print(f"- page cache holding the file after {label}: {mb:,.0f} MB")
    print(f"\ncommand: {sys.executable} bench/bench_hash_memory.py --gb {args.gb}  "
          f"(BENCH_TMP={os.environ.get('BENCH_TMP', TMP)})")


if __name__ == "__main__":
    main()
