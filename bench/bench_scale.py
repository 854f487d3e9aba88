"""Issue 12's speed: `ckpt ls` / `ls --json` / `hash` at 200k and 1M tensors, DCP at 8k tensors.

    python bench/bench_scale.py [--sizes 200000,1000000] [--dcp 1000,4000,8000] [--repeat 3]
                                [--dcp-sharded 10000x8]

Files are built once under /tmp/ckpt-bench (`BENCH_TMP`): `scale-N.safetensors` (written
directly, no torch), `scale-N.pt` (torch.save, one storage per tensor) and `dcp-N/`
(torch.distributed.checkpoint, single process) with the same tensors as `dcp-N.pt`. Names look
like an optimizer-heavy or MoE model: `layers.{i}.experts.{j}.w{1,2,3}.weight` with 8 experts,
so one node has N/24 numbered children (what made the tree fold quadratic).

Contenders, each a whole process, interleaved round by round (the machine is shared), best of
--repeat: `ckpt ls`, `ckpt ls --json`, `ckpt hash`, and what a user would run instead:
`safetensors.safe_open` listing keys and shapes, `torch.load(mmap=True, weights_only=True)`.
Goals (issue 12): 200k tensors <= 2 s and 1M <= 8 s for `ckpt ls`; DCP 8k tensors within 3x the
same tensors in one `.pt`. `--dcp-sharded NxR` (issue 13: 10k tensors x 8 ranks listed in under a
second): `dcp{R}-{N}/`, N `Shard(0)` DTensors written by R gloo ranks, listed by `ckpt ls` with
the pickle fast path on and off (`INSPECTOR_PICKLE_FAST=0`: the Python machine) and by torch's
own `FileSystemReader(...).read_metadata()`.
"""

from __future__ import annotations

import argparse
import json
import math
import struct
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from common import PY, TMP, env, machine, warm

EXPERTS, PARTS = 8, ("w1.weight", "w2.weight", "w3.weight")
SHAPE = (2, 2)  # float32, 16 bytes a tensor: the work is in the names, not the bytes


def names(n: int) -> list[str]:
    per_layer = EXPERTS * len(PARTS)
    out = [
        f"layers.{i}.experts.{j}.{p}"
        for i in range(-(-n // per_layer))
        for j in range(EXPERTS)
        for p in PARTS
    ]
    return out[:n]


def build_safetensors(n: int) -> Path:
    path = TMP / f"scale-{n}.safetensors"
    if path.exists():
        return path
    TMP.mkdir(parents=True, exist_ok=True)
    size = 4 * SHAPE[0] * SHAPE[1]
    header = {
        name: {"dtype": "F32", "shape": list(SHAPE), "data_offsets": [i * size, (i + 1) * size]}
        for i, name in enumerate(names(n))
    }
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)
    tmp = path.with_suffix(".part")
    with tmp.open("wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        f.write(bytes(size * n))
    tmp.rename(path)
    return path


def _state_dict(n: int) -> dict[str, object]:
    import torch

    return {name: torch.zeros(SHAPE) for name in names(n)}


def build_pt(n: int, stem: str = "scale") -> Path:
    path = TMP / f"{stem}-{n}.pt"
    if not path.exists():
        import torch

        TMP.mkdir(parents=True, exist_ok=True)
        torch.save(_state_dict(n), path.with_suffix(".part"))
        path.with_suffix(".part").rename(path)
    return path


def build_dcp(n: int) -> Path:
    folder = TMP / f"dcp-{n}"
    if not (folder / ".metadata").exists():
        import warnings

        import torch.distributed.checkpoint as dcp

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dcp.save(_state_dict(n), checkpoint_id=str(folder), no_dist=True)
    return folder


@dataclass
class Run:
    label: str
    wall_s: float
    peak_rss_mb: float
    cpu_s: float


@dataclass
class Timed:
    label: str
    wall_s: float
    cpu_s: float  # user + system: what a loaded, shared machine distorts least
    peak_rss_mb: float


def run_once(label: str, argv: list[str], timeout: float) -> Timed:
    t0 = time.perf_counter()
    try:
        # cwd: a neutral folder, or `python -c` would import the package found in this one
        proc = subprocess.run(["/usr/bin/time", "-f", "%U %S %M", *argv], capture_output=True,
                              text=True, env=env(), timeout=timeout, cwd=TMP)
    except subprocess.TimeoutExpired:
        return Timed(label, math.inf, math.inf, math.nan)
    wall = time.perf_counter() - t0
    if proc.returncode != 0 and not (proc.returncode == 2 and "(before)" in label):  # no --version
        raise RuntimeError(f"{label} failed:\n{proc.stderr[-2000:]}")
    user, sys_, rss = proc.stderr.strip().splitlines()[-1].split()
    return Timed(label, wall, float(user) + float(sys_), int(rss) / 1024)


def interleaved(rows: list[tuple[str, list[str]]], repeat: int, timeout: float = 600) -> list[Run]:
    """Best of `repeat` rounds, each round running every contender once (shared machine); wall
    and CPU time are each the best over the rounds."""
    best: dict[str, Timed] = {}
    for _ in range(repeat):
        for label, argv in rows:
            r = run_once(label, argv, timeout)
            b = best.get(label, r)
            best[label] = Timed(label, min(r.wall_s, b.wall_s), min(r.cpu_s, b.cpu_s),
                                max(r.peak_rss_mb, b.peak_rss_mb))
    return [Run(b.label, b.wall_s, b.peak_rss_mb, b.cpu_s) for b in (best[k] for k, _ in rows)]


ST_LIST = (
    "import sys; from safetensors import safe_open\n"
    "with safe_open(sys.argv[1], 'np') as f:\n"
    "    [print(k, f.get_slice(k).get_shape()) for k in f.keys()]"
)
TORCH_LIST = (
    "import sys, torch; sd = torch.load(sys.argv[1], mmap=True, weights_only=True); "
    "[print(k, tuple(v.shape), v.dtype) for k, v in sd.items()]"
)


def ckpt_argv(before: str | None) -> list[str]:
    """`ckpt` as a whole process: this checkout, or (`--before DIR`) another one's package."""
    run = [PY, "-c", "import sys; from inspector.cli import main; sys.exit(main())"]
    return ["env", f"PYTHONPATH={before}", *run] if before else run


def ls_rows(n: int, before: str | None, which: str) -> list[tuple[str, list[str]]]:
    st, pt = build_safetensors(n), build_pt(n)
    warm(st)
    warm(pt)
    ckpt = ckpt_argv(before)
    tag = " (before)" if before else ""
    rows = [
        (f"ckpt ls, {n} tensors .safetensors{tag}", [*ckpt, "ls", str(st)]),
        (f"ckpt ls, {n} tensors .pt{tag}", [*ckpt, "ls", str(pt)]),
        (f"ckpt ls --json, {n} .safetensors{tag}", [*ckpt, "ls", "--json", str(st)]),
        (f"ckpt ls --json, {n} .pt{tag}", [*ckpt, "ls", "--json", str(pt)]),
        (f"ckpt hash, {n} .safetensors{tag}", [*ckpt, "hash", str(st)]),
        (f"ckpt hash, {n} .pt{tag}", [*ckpt, "hash", str(pt)]),
    ]
    if which == "ls":
        rows = rows[:2]
    if before:
        return rows
    return [
        *rows,
        (f"safetensors safe_open + print, {n}", [PY, "-c", ST_LIST, str(st)]),
        (f"torch.load(mmap=True) + print, {n}", [PY, "-c", TORCH_LIST, str(pt)]),
    ]


def _sharded_rank(rank: int, world: int, n: int, out: str, port: int) -> None:
    import os

    import torch
    import torch.distributed as dist
    import torch.distributed.checkpoint as dcp
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import DTensor, Shard

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    mesh = init_device_mesh("cpu", (world,))
    local = torch.zeros(1, 2)  # one row per rank: the work is in the metadata, not the bytes
    state = {name: DTensor.from_local(local, mesh, [Shard(0)], run_check=False)
             for name in names(n)}
    dcp.save(state, checkpoint_id=out)
    dist.barrier()
    os._exit(0)  # gloo's teardown with a DeviceMesh on CPU may abort: the files are written


def build_dcp_sharded(n: int, ranks: int) -> Path:
    folder = TMP / f"dcp{ranks}-{n}"
    if not (folder / ".metadata").exists():
        import socket

        import torch.multiprocessing as mp

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        mp.spawn(_sharded_rank, args=(ranks, n, str(folder), port), nprocs=ranks)
    return folder


TORCH_METADATA = ("import sys; from torch.distributed.checkpoint import FileSystemReader; "
                  "m = FileSystemReader(sys.argv[1]).read_metadata(); "
                  "print(len(m.state_dict_metadata))")


def dcp_sharded_rows(spec: str) -> list[tuple[str, list[str]]]:
    n, ranks = (int(x) for x in spec.split("x"))
    folder = build_dcp_sharded(n, ranks)
    warm(folder)
    ls = [*ckpt_argv(None), "ls", str(folder)]
    what = f"{n} tensors x {ranks} ranks"
    return [
        (f"ckpt ls DCP, {what}", ls),
        (f"ckpt ls DCP, {what}, Python pickle machine", ["env", "INSPECTOR_PICKLE_FAST=0", *ls]),
        (f"torch FileSystemReader.read_metadata, {what}", [PY, "-c", TORCH_METADATA,
                                                           str(folder)]),
    ]


def dcp_rows(n: int, before: str | None) -> list[tuple[str, list[str]]]:
    folder, pt = build_dcp(n), build_pt(n, "dcp")
    warm(folder)
    warm(pt)
    ckpt = [*ckpt_argv(before), "ls"]
    tag = " (before)" if before else ""
    return [
        (f"ckpt ls DCP folder, {n} tensors{tag}", [*ckpt, str(folder)]),
        (f"ckpt ls same tensors in one .pt, {n}{tag}", [*ckpt, str(pt)]),
    ]


def table(runs: list[Run]) -> str:
    out = ["| what | wall s | CPU s | peak RSS MB |", "|---|---:|---:|---:|"]
    out += [
        f"| {r.label} | {r.wall_s:.3f} | {r.cpu_s:.3f} | {r.peak_rss_mb:.0f} |" for r in runs
    ]
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="200000,1000000")
    parser.add_argument("--dcp", default="1000,4000,8000")
    parser.add_argument("--dcp-sharded", default="", metavar="NxR[,NxR]",
                        help="DCP folders of N tensors sharded over R ranks, e.g. 10000x8")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", choices=("all", "ls"), default="all",
                        help="ls: only `ckpt ls` rows (for the 1M runs)")
    parser.add_argument("--before", metavar="DIR",
                        help="also run `ckpt` from this checkout (its package on PYTHONPATH)")
    parser.add_argument("--timeout", type=float, default=600, help="per run (inf: gave up)")
    parser.add_argument("--build-only", action="store_true")
    args = parser.parse_args()
    rows: list[tuple[str, list[str]]] = []
    for n in (int(s) for s in args.sizes.split(",") if s):
        rows += ls_rows(n, None, args.only)
        rows += ls_rows(n, args.before, args.only) if args.before else []
    for n in (int(s) for s in args.dcp.split(",") if s):
        rows += dcp_rows(n, None)
        rows += dcp_rows(n, args.before) if args.before else []
    for spec in (s for s in args.dcp_sharded.split(",") if s):
        rows += dcp_sharded_rows(spec)
    if args.build_only:
        return 0
    runs = interleaved(rows, args.repeat, args.timeout)
    print(f"Issue 12 scale, whole process, {machine()}, warm cache, best of {args.repeat}:\n")
    print(table(runs))
    print(f"\ncommand: {sys.executable} bench/bench_scale.py {' '.join(sys.argv[1:])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
