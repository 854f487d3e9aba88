"""Benchmark `ckpt average` against the torch scripts users run, whole process, in one run.

N float32 checkpoints of M MB each (`{"model": state_dict, "epoch": i}`, 4 MB tensors, as
icefall's epoch-N.pt) are built under /tmp and removed after; then, each in a fresh child
process measured with getrusage(RUSAGE_CHILDREN) (wall time, peak RSS):

  average     ckpt average IN... -o out.pt (streamed, written atomically, verified, fsynced)
  script      torch.load every input, sum, divide, torch.save (the script the issue names)
  icefall     icefall's average_checkpoints: torch.load one input at a time, add, divide,
              torch.save ({"model": avg}); the leanest torch way

Every contender runs `--repeat` times (default 3), interleaved, from a warm page cache; the best
wall time and the highest peak RSS are reported. Goal (issue 15): 3x faster and 5x leaner than
the script at 5 x 1 GB.
Run: `PYTHONPATH=. python bench/bench_average.py [--n 5] [--mb 256] [--repeat 3] [--keep]`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = """
import sys, torch
paths, out = sys.argv[1:-1], sys.argv[-1]
ckpts = [torch.load(p, weights_only=True) for p in paths]
avg = ckpts[0]["model"]
for c in ckpts[1:]:
    for k in avg:
        avg[k] += c["model"][k]
for k in avg:
    if avg[k].is_floating_point():
        avg[k] /= len(paths)
    else:
        avg[k] //= len(paths)
torch.save(ckpts[0], out)
"""

ICEFALL = """
import sys, torch
paths, out = sys.argv[1:-1], sys.argv[-1]
avg = torch.load(paths[0], weights_only=True)["model"]
for p in paths[1:]:
    state_dict = torch.load(p, weights_only=True)["model"]
    for k in avg:
        avg[k] += state_dict[k]
    del state_dict
for k in avg:
    if avg[k].is_floating_point():
        avg[k] /= len(paths)
    else:
        avg[k] //= len(paths)
torch.save({"model": avg}, out)
"""


def build(folder: Path, n: int, mb: int) -> list[Path]:
    import torch

    paths = []
    for i in range(n):
        g = torch.Generator().manual_seed(i)
        model = {f"encoder.layers.{j}.weight": torch.randn(1024, 1024, generator=g)
                 for j in range(mb // 4)}
        model["bn.num_batches_tracked"] = torch.tensor(1000 * i)
        path = folder / f"epoch-{i}.pt"
        torch.save({"model": model, "epoch": i}, path)
        paths.append(path)
    return paths


_WRAP = (
    "import resource, subprocess, sys, time\n"
    "t = time.perf_counter()\n"
    "subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL)\n"
    "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
)


def measure(cmd: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one command, measured by a wrapper process of its own."""
    out = subprocess.run([sys.executable, "-c", _WRAP, *cmd], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    if out.returncode:
        raise SystemExit(f"{cmd[:4]} failed:\n{out.stderr[-3000:]}")
    wall, rss_kb = out.stdout.split()
    return float(wall), int(rss_kb) / 1024


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=5)
    ap.add_argument("--mb", type=int, default=256)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-average-", dir="/tmp"))
    try:
        ins = [str(p) for p in build(folder, args.n, args.mb)]
        py = sys.executable
        runs = {
            "average": [py, "-m", "inspector.cli", "average", *ins, "-o", str(folder / "a.pt")],
            "script": [py, "-c", SCRIPT, *ins, str(folder / "s.pt")],
            "icefall": [py, "-c", ICEFALL, *ins, str(folder / "i.pt")],
        }
        subprocess.run([py, "-m", "compileall", "-q", str(ROOT / "inspector")],
                       stdout=subprocess.DEVNULL, check=True)
        for f in ins:
            subprocess.run(["cat", f], stdout=subprocess.DEVNULL, check=True)
        results: dict[str, tuple[float, float]] = {}
        for _ in range(args.repeat):
            for name, cmd in runs.items():
                wall, rss = measure(cmd)
                best = results.get(name, (wall, rss))
                results[name] = (min(best[0], wall), max(best[1], rss))
                for out in ("a.pt", "s.pt", "i.pt"):
                    (folder / out).unlink(missing_ok=True)
        size = sum(Path(f).stat().st_size for f in ins) / 2**20
        print(f"{args.n} inputs, {size:.0f} MiB in all; best of {args.repeat} (wall), "
              f"highest of {args.repeat} (RSS)")
        print(f"{'run':8} {'wall s':>8} {'peak RSS MB':>12}")
        for name, (wall, rss) in results.items():
            print(f"{name:8} {wall:8.2f} {rss:12.0f}")
        av, sc, ic = (results[k] for k in ("average", "script", "icefall"))
        print(f"script/average {sc[0] / av[0]:.1f}x faster (goal >= 3), {sc[1] / av[1]:.1f}x "
              f"leaner (goal >= 5); icefall/average {ic[0] / av[0]:.1f}x faster, "
              f"{ic[1] / av[1]:.1f}x leaner")
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
