"""Benchmark `ckpt apply` against `cp` and the script users write today, in one run.

A ~2 GB float32 target .nemo (encoder ~1.5 GB) and a ~2 GB source .pt are built under /tmp; then,
each in a fresh child process measured with getrusage(RUSAGE_CHILDREN) (wall time, peak RSS):

  cp          cp of the target .nemo
  cp+sync     the same, then `sync FILE` (fsync): what a durable copy costs (apply fsyncs too)
  apply       ckpt apply of an approved encoder plan: the layout is unchanged -> patch in place
  script      torch.load both, copy the encoder keys, torch.save (what the seeds' scripts do)
  rewrite     ckpt apply writing a .pt (a full rewrite: other format, every byte streamed)

Every contender runs `--repeat` times (default 3), interleaved, so that a shared machine's load
spreads over all of them; the best wall time and the highest peak RSS are reported.

Goals (issue 5): apply <= 1.5x cp, <= 300 MB RSS, >= 3x faster and >= 7x leaner than the script;
rewrite <= 2x cp. Run: `PYTHONPATH=. python bench/bench_apply.py [--gb 2] [--repeat 3] [--keep]`.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = """
import sys, torch, tarfile, io
nemo, src, out = sys.argv[1:4]
with tarfile.open(nemo) as t:
    tgt = torch.load(io.BytesIO(t.extractfile('./model_weights.ckpt').read()), weights_only=True)
s = torch.load(src, weights_only=True)
for k in s:
    if k.startswith('encoder.'):
        tgt[k] = s[k]
torch.save(tgt, out)
"""


def build(folder: Path, gb: float) -> tuple[Path, Path]:
    import torch

    torch.manual_seed(0)
    d, layers = 1024, max(1, int(gb * 0.75 * 2**30 / (4 * 6 * 1024 * 1024)))
    enc = {f"encoder.layers.{i}.{n}.weight": torch.randn(d, d)
           for i in range(layers) for n in ("q", "k", "v", "o", "ff1", "ff2")}
    rest_elems = int(gb * 0.25 * 2**30 / 4)
    dec = {f"decoder.layers.{i}.weight": torch.randn(rest_elems // 8)
           for i in range(8)}
    tgt = {**enc, **dec}
    src = {k: v + 1 for k, v in tgt.items()}
    torch.save(src, folder / "src.pt")
    buf = io.BytesIO()
    torch.save(tgt, buf)
    del tgt
    nemo = folder / "tgt.nemo"
    with tarfile.open(nemo, "w:") as tar:
        cfg = b"encoder:\n  n_layers: %d\n" % layers
        info = tarfile.TarInfo("./model_config.yaml")
        info.size = len(cfg)
        tar.addfile(info, io.BytesIO(cfg))
        info = tarfile.TarInfo("./model_weights.ckpt")
        info.size = buf.tell()
        buf.seek(0)
        tar.addfile(info, buf)
    return folder / "src.pt", nemo


def make_plan(folder: Path, src: Path, nemo: Path) -> Path:
    sys.path.insert(0, str(ROOT))
    from inspector.mapping import propose

    plan = propose(src, nemo)
    plan.approve(plan.under("encoder"))
    plan.reject([n for n in plan.entries if not n.startswith("encoder")])
    path = folder / "plan.yaml"
    plan.save(path)
    return path


_WRAP = (
    "import resource, subprocess, sys, time\n"
    "t = time.perf_counter()\n"
    "subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL)\n"
    "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
)


def measure(cmd: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one command, measured by a wrapper process of its own
    (RUSAGE_CHILDREN is a maximum over all children, so each run gets a fresh parent)."""
    out = subprocess.run([sys.executable, "-c", _WRAP, *cmd], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    if out.returncode:
        raise SystemExit(f"{cmd[:4]} failed:\n{out.stderr[-3000:]}")
    wall, rss_kb = out.stdout.split()
    return float(wall), int(rss_kb) / 1024


def drop_output(path: Path) -> None:
    if path.exists():
        path.unlink()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gb", type=float, default=2.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-apply-", dir="/tmp"))
    try:
        src, nemo = build(folder, args.gb)
        plan = make_plan(folder, src, nemo)
        py = sys.executable
        runs = {
            "cp": ["cp", str(nemo), str(folder / "cp.nemo")],
            "cp+sync": ["sh", "-c", 'cp "$0" "$1" && sync "$1"', str(nemo),
                        str(folder / "cp.nemo")],
            "apply": [py, "-m", "inspector.cli", "apply", str(plan), "-o", str(folder / "a.nemo")],
            "rewrite": [py, "-m", "inspector.cli", "apply", str(plan), "-o", str(folder / "r.pt")],
            "script": [py, "-c", SCRIPT, str(nemo), str(src), str(folder / "s.pt")],
        }
        # byte-compile the package as `pip install` does: without it every run would recompile
        # the modules whose cached bytecode is stale (PYTHONDONTWRITEBYTECODE stops the refresh)
        subprocess.run([py, "-m", "compileall", "-q", str(ROOT / "inspector")],
                       stdout=subprocess.DEVNULL, check=True)
        # warm the page cache so every contender reads from memory
        for f in (src, nemo):
            subprocess.run(["cat", str(f)], stdout=subprocess.DEVNULL, check=True)
        results: dict[str, tuple[float, float]] = {}
        for _ in range(args.repeat):
            for name, cmd in runs.items():
                wall, rss = measure(cmd)
                best = results.get(name, (wall, rss))
                results[name] = (min(best[0], wall), max(best[1], rss))
                for out in ("cp.nemo", "a.nemo", "r.pt", "s.pt"):
                    drop_output(folder / out)
        sizes = {"target": nemo.stat().st_size, "source": src.stat().st_size}
        print(f"target {sizes['target'] / 2**30:.2f} GiB, source {sizes['source'] / 2**30:.2f} GiB")
        print(f"best of {args.repeat} (wall), highest of {args.repeat} (RSS)")
        print(f"{'run':8} {'wall s':>8} {'peak RSS MB':>12}")
        for name, (wall, rss) in results.items():
            print(f"{name:8} {wall:8.2f} {rss:12.0f}")
        cp, ap_, rw, sc = (results[k] for k in ("cp", "apply", "rewrite", "script"))
        cps = results["cp+sync"]
        print(f"apply/(cp+sync) {ap_[0] / cps[0]:.2f}x, rewrite/(cp+sync) {rw[0] / cps[0]:.2f}x")
        print(f"apply/cp {ap_[0] / cp[0]:.2f}x (goal <= 1.5), rewrite/cp {rw[0] / cp[0]:.2f}x "
              f"(goal <= 2), script/apply {sc[0] / ap_[0]:.1f}x faster (goal >= 3), "
              f"{sc[1] / ap_[1]:.1f}x leaner (goal >= 7)")
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
