"""`ckpt diff --no-values` against a plain-Python dict comparison of the same headers.

    PYTHONPATH=. python bench/bench_diff.py [--tensors 1000000] [--repeat 3]

Builds under /tmp/ckpt-bench (once): two synthetic MoE-style safetensors files with --tensors
one-element tensors each (`model.layers.{i}.experts.{j}.w{k}`), B differing from A in a few
thousand places (shapes, dtypes, removed and added tensors), and two ordinary ~950-tensor files
(real shapes; the data section is a sparse hole, a header-only diff never reads it).
Each contender runs as a whole process; best of --repeat, warm page cache. Wall time and CPU time
(user + sys) are both reported: on a shared, loaded machine the CPU time is the steadier figure.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import struct
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from common import PY, TMP, env, machine, warm

ITEMSIZE = {"F32": 4, "BF16": 2}

# The baseline a user would write: read both headers, compare {name: (dtype, shape)} dicts.
PLAIN_PYTHON = """
import json, struct, sys
def load(path):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    header.pop("__metadata__", None)
    return {k: (v["dtype"], tuple(v["shape"])) for k, v in header.items()}
a, b = load(sys.argv[1]), load(sys.argv[2])
only_a, only_b = a.keys() - b.keys(), b.keys() - a.keys()
changed = sorted(k for k in a.keys() & b.keys() if a[k] != b[k])
print(len(only_a), len(only_b), len(changed))
"""


def write_safetensors(path: Path, tensors: dict[str, tuple[str, tuple[int, ...]]]) -> None:
    """A valid safetensors file (offsets tile the data); the data is a hole of zeros."""
    header: dict[str, object] = {}
    offset = 0
    for name, (dtype, shape) in tensors.items():
        n = ITEMSIZE[dtype]
        for s in shape:
            n *= s
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    text = json.dumps(header, separators=(",", ":")).encode()
    with path.open("wb") as f:
        f.write(struct.pack("<Q", len(text)) + text)
        f.truncate(8 + len(text) + offset)


def moe_pair(n_tensors: int) -> tuple[Path, Path]:
    a_path, b_path = (
        TMP / f"diff-moe-{n_tensors}-a.safetensors",
        TMP / f"diff-moe-{n_tensors}-b.safetensors",
    )
    if a_path.exists() and b_path.exists():
        return a_path, b_path
    experts, weights = 1000, 4
    layers = -(-n_tensors // (experts * weights))
    names = [
        f"model.layers.{i}.experts.{j}.w{k}"
        for i in range(layers)
        for j in range(experts)
        for k in range(1, weights + 1)
    ][:n_tensors]
    a = {n: ("F32", (1,)) for n in names}
    b = dict(a)
    # In the 1M-tensor pair: 500 shape and 1000 dtype changes, 1000 tensors removed, 1250 added.
    for j in range(experts):
        if j < 500:
            b[f"model.layers.7.experts.{j}.w1"] = ("F32", (2,))
        b[f"model.layers.8.experts.{j}.w2"] = ("BF16", (1,))
        b.pop(f"model.layers.9.experts.{j}.w4", None)
        b[f"model.layers.3.experts.{j}.w5"] = ("F32", (1,))
    for i in range(layers):
        b[f"model.layers.{i}.router.bias"] = ("F32", (1,))
    b = {k: v for k, v in b.items() if k in a or k.endswith(("w5", "router.bias"))}
    TMP.mkdir(parents=True, exist_ok=True)
    write_safetensors(a_path, a)
    write_safetensors(b_path, b)
    return a_path, b_path


def ordinary_pair() -> tuple[Path, Path]:
    """~950 tensors with the shapes of bench_ls.py's 2 GB model; B has a new vocabulary."""
    a_path, b_path = TMP / "diff-950-a.safetensors", TMP / "diff-950-b.safetensors"
    if a_path.exists() and b_path.exists():
        return a_path, b_path
    d, ff = 1024, 1536
    a = {"embed.weight": ("F32", (2048, d))}
    layer = {
        "attn.q.weight": (d, d),
        "attn.k.weight": (d, d),
        "attn.v.weight": (d, d),
        "attn.out.weight": (d, d),
        "attn.out.bias": (d,),
        "ff.w1.weight": (ff, d),
        "ff.w1.bias": (ff,),
        "ff.w2.weight": (d, ff),
        "ff.w2.bias": (d,),
        "norm1.weight": (d,),
        "norm1.bias": (d,),
        "norm2.weight": (d,),
    }
    for i in range(79):
        a.update({f"encoder.layers.{i}.{k}": ("F32", s) for k, s in layer.items()})
    a["out.weight"], a["out.bias"] = ("F32", (1025, d)), ("F32", (1025,))
    b = dict(a, **{"out.weight": ("F32", (129, d)), "out.bias": ("F32", (129,))})
    TMP.mkdir(parents=True, exist_ok=True)
    write_safetensors(a_path, a)
    write_safetensors(b_path, b)
    return a_path, b_path


@dataclass
class Timing:
    label: str
    wall_s: float
    cpu_s: float
    peak_rss_mb: float


def measure(label: str, argv: list[str], repeat: int) -> Timing:
    """Best wall and best CPU time over `repeat` runs of a whole process, its peak RSS."""
    walls, cpus, rss = [], [], 0.0
    for _ in range(repeat):
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env())
        assert proc.stderr is not None
        err = proc.stderr.read()
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own usage
        walls.append(time.perf_counter() - t0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode not in (0, 1):
            raise RuntimeError(f"{shlex.join(argv)} failed:\n{err[-2000:].decode()}")
        cpus.append(usage.ru_utime + usage.ru_stime)
        rss = max(rss, usage.ru_maxrss / 1024)  # KB on Linux
    return Timing(label, min(walls), min(cpus), rss)


def table(rows: list[Timing]) -> str:
    ours = rows[0]
    out = [
        "| what | wall s | CPU s | peak RSS MB | wall vs ours | CPU vs ours |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        out.append(
            f"| {r.label} | {r.wall_s:.3f} | {r.cpu_s:.3f} | {r.peak_rss_mb:.0f} "
            f"| {r.wall_s / ours.wall_s:.1f}x | {r.cpu_s / ours.cpu_s:.1f}x |"
        )
    return "\n".join(out)


def compare(title: str, a: Path, b: Path, repeat: int) -> str:
    for p in (a, b):
        warm(p)
    ours = [PY, "-m", "inspector.cli", "diff", "--no-values", str(a), str(b)]
    plain = [PY, "-c", PLAIN_PYTHON, str(a), str(b)]
    rows = [
        measure("`ckpt diff --no-values A B`", ours, repeat),
        measure("plain Python: json.loads both headers, compare dicts", plain, repeat),
    ]
    return f"### {title}\n\n`{shlex.join(ours)}`\n\n{table(rows)}\n"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tensors", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    print(f"bench_diff on {machine()}, warm page cache, best of {args.repeat}, whole process\n")
    big = moe_pair(args.tensors)
    print(compare(f"{args.tensors:,} tensors per side (goal: < 2 s)", *big, args.repeat))
    print(compare("~950 tensors per side (goal: < 0.3 s)", *ordinary_pair(), args.repeat))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
