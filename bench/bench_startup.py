"""Issue 12's start-up goals, whole processes, against what a user would run instead.

    python bench/bench_startup.py [--gb 3] [--repeat 10] [--before DIR]

Rows, interleaved round by round (the machine is shared), best of --repeat:
`python -c pass`; `ckpt --version` and `ckpt --help`; `ckpt ls` of a 2-tensor safetensors file
against `safetensors.safe_open` listing it; `ckpt hash` of a --gb GB safetensors file (built once
under /tmp/ckpt-bench, random bytes, warm cache) against a Python process hashing the same file
with one-thread `xxhash.xxh3_128` over a memory map. `ckpt` runs as its console script does
(`from inspector.cli import main`); `--before DIR` adds the same `ckpt` rows from another checkout.
Goals (issue 12): `ckpt --version` <= 4x `python -c pass` + 30 ms; `ckpt hash` <= the xxhash
process; `ckpt ls` of the small file <= the safe_open listing.
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import sys
from pathlib import Path

from bench_scale import Run, ckpt_argv, interleaved
from common import PY, TMP, machine, warm

XXH_FILE = (
    "import mmap, sys, xxhash\n"
    "with open(sys.argv[1], 'rb') as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:\n"
    "    print(xxhash.xxh3_128_hexdigest(m))"
)
ST_LIST = (
    "import sys; from safetensors import safe_open\n"
    "with safe_open(sys.argv[1], 'np') as f:\n"
    "    [print(k, f.get_slice(k).get_shape()) for k in f.keys()]"
)


def safetensors_file(path: Path, sizes: list[int]) -> Path:
    """float32 tensors of `sizes` elements, random bytes (built once)."""
    if path.exists():
        return path
    TMP.mkdir(parents=True, exist_ok=True)
    header, at = {}, 0
    for i, n in enumerate(sizes):
        entry = {"dtype": "F32", "shape": [n], "data_offsets": [at, at + 4 * n]}
        header[f"layers.{i}.weight"] = entry
        at += 4 * n
    blob = json.dumps(header).encode()
    blob += b" " * (-len(blob) % 8)
    part = path.with_suffix(".part")
    with part.open("wb") as f:
        f.write(struct.pack("<Q", len(blob)) + blob)
        left = at
        while left:
            chunk = min(left, 64 << 20)
            f.write(os.urandom(chunk))
            left -= chunk
    part.rename(path)
    return path


def rows(gb: float, before: str | None) -> list[tuple[str, list[str]]]:
    small = safetensors_file(TMP / "small-2.safetensors", [4, 2])
    per = 64 << 20  # 256 MB float32 tensors
    count = max(1, round(gb * 1e9 / 4 / per))
    big = safetensors_file(TMP / f"hash-{gb:g}gb.safetensors", [per] * count)
    warm(big)
    out = [("python -c pass", [PY, "-c", "pass"])]
    for repo, tag in ((None, ""), (before, " (before)")) if before else ((None, ""),):
        ckpt = ckpt_argv(repo)
        out += [
            (f"ckpt --version{tag}", [*ckpt, "--version"]),
            (f"ckpt --help{tag}", [*ckpt, "--help"]),
            (f"ckpt ls small.safetensors{tag}", [*ckpt, "ls", str(small)]),
            (f"ckpt hash {big.name}{tag}", [*ckpt, "hash", str(big)]),
        ]
    out += [
        ("safetensors safe_open + print small.safetensors", [PY, "-c", ST_LIST, str(small)]),
        (f"xxhash.xxh3_128 of {big.name}, 1 thread", [PY, "-c", XXH_FILE, str(big)]),
    ]
    return out


def table(runs: list[Run]) -> str:
    base = runs[0].wall_s
    out = ["| what | wall ms | CPU ms | peak RSS MB | wall vs python -c pass |"]
    out += ["|---|---:|---:|---:|---:|"]
    out += [
        f"| {r.label} | {r.wall_s * 1e3:.0f} | {r.cpu_s * 1e3:.0f} | {r.peak_rss_mb:.0f} "
        f"| {r.wall_s / base:.1f}x |"
        for r in runs
    ]
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gb", type=float, default=3.0)
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--before", metavar="DIR")
    args = parser.parse_args()
    runs = interleaved(rows(args.gb, args.before), args.repeat)
    by = {r.label: r.wall_s for r in runs}
    print(f"Start-up, whole processes, {machine()}, warm cache, best of {args.repeat}:\n")
    print(table(runs))
    limit = 4 * by["python -c pass"] + 0.030
    big = next(k for k in by if k.startswith("ckpt hash") and "(before)" not in k)
    xxh = next(k for k in by if k.startswith("xxhash"))
    print(f"\ngoal: ckpt --version <= 4x python -c pass + 30 ms = {limit * 1e3:.0f} ms: "
          f"{by['ckpt --version'] * 1e3:.0f} ms")
    print(f"goal: ckpt hash <= xxhash process: {by[big] / by[xxh]:.2f}x")
    st_list = by["safetensors safe_open + print small.safetensors"]
    ls_ratio = by["ckpt ls small.safetensors"] / st_list
    print(f"goal: ckpt ls small <= safe_open listing: {ls_ratio:.2f}x")
    print(f"\ncommand: {sys.executable} bench/bench_startup.py {' '.join(sys.argv[1:])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
