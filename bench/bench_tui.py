"""ckpt-tui at scale (issue 16): time to the first paint, to the plan, and per keypress.

    PYTHONPATH=. python bench/bench_tui.py [--sizes 20000,100000] [--repeat 2] [--before DIR]

For N tensors, the source is bench_scale's `scale-N.pt` (torch.save, MoE-like names
`layers.{i}.experts.{j}.w{1,2,3}.weight`) and the target the same names under `model.`
(`tui-tgt-N.safetensors`), so every row is a renamed match with evidence. Each run is a child
process (Python and Textual imported in it) driving the app headless with Textual's pilot:

- first paint: from the process start until the target tree shows its rows (from the headers:
  the plan is still being proposed in its worker);
- plan ready: until the proposal is bound and the marks and summary drawn. Before this issue
  the app painted only then, so this column is also the old first paint;
- keypress: for `down` (move the cursor) the median and worst time until the pilot saw the app
  idle again (its round trip includes the pilot's own waits) and the median CPU time the key
  cost the process; for `a` on the first top module (approve every row under it), then `r`
  (reject them all) and `u` (undo that), the time until the trees are rebuilt with the new
  marks (`refresh_all` returned; Textual paints them at its next frame), until the header has
  its new text too (its `show`; drawn with the trees, by a worker after them from 200k rows),
  and until the pilot sees the app idle (a round trip with the pilot's own waits in it: the
  ~40 ms of `down`, whose CPU is a few ms, are such waits).

What a user would use instead has no TUI: the closest is `torch.load(mmap=True,
weights_only=True)` of the source to look at its keys, timed the same way (whole process).
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import subprocess
import sys
import time
from pathlib import Path

from bench_scale import SHAPE, build_pt, names
from common import PY, TMP, env, machine

CHILD = r"""
import asyncio, json, statistics, sys, time
t0 = float(sys.argv[3])
from inspector.tui.app import create_app

async def main():
    app = create_app([sys.argv[1]], sys.argv[2])
    out = {}
    async with app.run_test(size=(120, 40)) as pilot:
        review = app.review
        while not review.target_tree.root.children:
            await asyncio.sleep(0.005)
        out["first_paint"] = time.time() - t0
        while review.state is None:
            await asyncio.sleep(0.005)
        await pilot.pause()
        out["plan_ready"] = time.time() - t0
        review.target_tree.focus()
        downs, down_cpu = [], []
        for _ in range(30):
            s, c = time.perf_counter(), time.process_time()
            await pilot.press("down")
            downs.append(time.perf_counter() - s)
            down_cpu.append(time.process_time() - c)
        first = review.target_tree.root.children[0]
        review.target_tree.move_cursor(first)
        await pilot.pause()
        await app.workers.wait_for_complete()
        redrawn = []  # when the trees were last rebuilt with the new marks
        refresh_all = review.refresh_all
        def timed_refresh():
            refresh_all()
            redrawn.append(time.perf_counter())
        review.refresh_all = timed_refresh
        shown = []  # when the header was last given its new text
        bar = review.query_one("#summary")
        show = bar.show
        def timed_show(text):
            show(text)
            shown.append(time.perf_counter())
        bar.show = timed_show
        for key, name in (("a", "approve"), ("r", "reject"), ("u", "undo")):
            s, c = time.perf_counter(), time.process_time()
            await pilot.press(key)
            out[name + "_idle"] = time.perf_counter() - s
            out[name + "_module"] = redrawn[-1] - s
            out[name + "_cpu"] = time.process_time() - c
            await app.workers.wait_for_complete()  # the header of a large plan: drawn by a worker
            while not getattr(review, "header_current", True):  # (an older checkout: no such)
                await asyncio.sleep(0.001)
            out[name + "_with_header"] = shown[-1] - s
            await pilot.pause()
        out["down_median"] = statistics.median(downs)
        out["down_cpu_median"] = statistics.median(down_cpu)
        out["down_worst"] = max(downs)
        out["rows"] = len(review.state.plan.entries)
    print(json.dumps(out))

asyncio.run(main())
"""

TORCH_LOAD = ("import sys, torch; sd = torch.load(sys.argv[1], mmap=True, weights_only=True); "
              "print(len(sd))")


def build_target(n: int) -> Path:
    """The source's names under `model.`, as safetensors written directly (no torch)."""
    path = TMP / f"tui-tgt-{n}.safetensors"
    if path.exists():
        return path
    size = 4 * SHAPE[0] * SHAPE[1]
    header = {f"model.{name}": {"dtype": "F32", "shape": list(SHAPE),
                                "data_offsets": [i * size, (i + 1) * size]}
              for i, name in enumerate(names(n))}
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path.with_suffix(".part"), "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw)
        f.write(bytes(size * n))
    path.with_suffix(".part").rename(path)
    return path


def run_app(src: Path, tgt: Path, before: str | None = None) -> dict[str, float]:
    start = time.time()
    child_env = env()
    if before:  # another checkout's package first on the path
        child_env["PYTHONPATH"] = before + os.pathsep + child_env["PYTHONPATH"]
    # cwd: a neutral folder, or `python -c` would import the package found in the current one
    done = subprocess.run([PY, "-c", CHILD, str(src), str(tgt), repr(start)], env=child_env,
                          cwd=TMP, capture_output=True, text=True, check=True, timeout=900)
    found: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return found


def run_torch(src: Path) -> float:
    start = time.perf_counter()
    subprocess.run([PY, "-c", TORCH_LOAD, str(src)], env=env(), capture_output=True,
                   check=True, timeout=900)
    return time.perf_counter() - start


def keys(best: dict[str, float]) -> str:
    """`a` 120 / 150 / 180 ms, ...: each bulk key until the trees are rebuilt / until the
    header has its new text too / until the pilot sees the app idle."""
    return ", ".join(
        f"`{key}` " + " / ".join(f"{best[name + part] * 1000:.0f}"
                                 for part in ("_module", "_with_header", "_idle")) + " ms"
        for key, name in (("a", "approve"), ("r", "reject"), ("u", "undo")))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="20000,100000")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--before", metavar="DIR", help="also time another checkout's package")
    args = ap.parse_args()
    print(machine())
    print("| tensors | first paint | plan ready (old first paint) | `down` round trip median / "
          "worst, CPU | `a`, `r`, `u` on a module: trees / header / pilot idle | "
          "torch.load(mmap) keys |")
    print("|---:|---:|---:|---:|---:|---:|")
    for n in (int(s) for s in args.sizes.split(",") if s):
        src, tgt = build_pt(n), build_target(n)
        torch_s = min(run_torch(src) for _ in range(args.repeat))
        for before, tag in ((None, ""), (args.before, " (before)")):
            if tag and not before:
                continue
            runs = [run_app(src, tgt, before) for _ in range(args.repeat)]
            best = {k: min(r[k] for r in runs) for k in runs[0]}
            print(f"| {n:,}{tag} | {best['first_paint']:.2f} s | {best['plan_ready']:.2f} s | "
                  f"{best['down_median'] * 1000:.0f} / {best['down_worst'] * 1000:.0f} ms, "
                  f"{best['down_cpu_median'] * 1000:.0f} ms | {keys(best)} | {torch_s:.2f} s |")
    print(f"\ncommand: {sys.executable} bench/bench_tui.py {' '.join(sys.argv[1:])}")


if __name__ == "__main__":
    main()
