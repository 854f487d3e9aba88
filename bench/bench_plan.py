"""Writing and reading a plan file of N rows: the one-row-per-line layout (mapping/planlines.py)
against the whole document through PyYAML (libyaml's emitter and loader, PyYAML's Python
representer and resolver: how plans were written and read before).

    PYTHONPATH=. python bench/bench_plan.py [--rows 20000,100000] [--repeat 3] [--whole]

The plan is proposed from two safetensors files of N tensors (`layers.{i}.experts.{0..7}.w{1,2,3}`
against the same names under `model.`: every row is that prefix change, with its evidence; up
to 52edab6 every row was a similarity match with its candidates, so figures before that commit
are of larger rows), built once under /tmp/ckpt-bench. In process, best of --repeat, wall and CPU.
--whole instead times issue 16's goals: `ckpt map SRC TGT -o plan.yaml` as a whole process (best
CPU of --repeat via /usr/bin/time, user + system, and its largest peak RSS), and in process
(best CPU) `Plan.load` and `to_yaml` of that plan in the compact form (mapping/plantemplates.py,
what `ckpt map` writes from 2,000 rows up) and in full rows (version 1).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np
import yaml
from common import TMP, env

from inspector import yamlload
from inspector.mapping import planfile, propose


def files(n: int) -> tuple[Path, Path]:
    from safetensors.numpy import save_file

    src, tgt = TMP / f"plan-src-{n}.safetensors", TMP / f"plan-tgt-{n}.safetensors"
    if not tgt.exists():
        TMP.mkdir(parents=True, exist_ok=True)
        names = [f"layers.{i}.experts.{j}.w{k}.weight"
                 for i in range(n // 24 + 1) for j in range(8) for k in (1, 2, 3)][:n]
        small = np.zeros((2, 2), np.float32)
        save_file({k: small for k in names}, str(src))
        save_file({"model." + k: small for k in names}, str(tgt))
    return src, tgt


def timed(fn, repeat: int) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    best = (float("inf"), float("inf"))
    for _ in range(repeat):
        w, c = time.perf_counter(), time.process_time()
        fn()
        best = min(best, (time.perf_counter() - w, time.process_time() - c))
    return best


def whole_yaml(data: dict[str, object]) -> str:
    return yaml.dump(data, Dumper=planfile._Dumper, sort_keys=False, allow_unicode=True,
                     width=100)


def measure(n: int, repeat: int) -> None:
    data = propose(*(str(p) for p in files(n))).to_dict()
    text, old_text = planfile.dump(data), whole_yaml(data)
    steps = [("write", partial(planfile.dump, data), partial(whole_yaml, data)),
             ("read", partial(planfile.parse, text), partial(yamlload.load, old_text))]
    for step, new, old in steps:
        (nw, nc), (ow, oc) = timed(new, repeat), timed(old, 1)
        print(f"| {n:,} | {step} | {nw:.2f} / {nc:.2f} | {ow:.2f} / {oc:.2f} | {oc / nc:.1f}x |")


def whole(n: int, repeat: int) -> None:
    src, tgt = files(n)
    plan = TMP / f"plan-{n}.yaml"
    argv = [sys.executable, "-m", "inspector.cli", "map", str(src), str(tgt), "-o", str(plan)]
    runs = []
    for _ in range(repeat):
        proc = subprocess.run(["/usr/bin/time", "-f", "%e %U %S %M", *argv], env=env(),
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                              check=True)
        wall, user, system, rss = proc.stderr.split()[-4:]
        runs.append((float(user) + float(system), float(wall), int(rss) / 1024))
    cpu, wall = min(r[0] for r in runs), min(r[1] for r in runs)
    print(f"| {n:,} | `ckpt map SRC TGT -o plan.yaml` | {wall:.2f} | {cpu:.2f} | "
          f"{max(r[2] for r in runs):.0f} |")
    from inspector.mapping.plan import Plan

    full = TMP / f"plan-{n}-full.yaml"
    loaded = Plan.load(plan)
    loaded.save(full, compact=False)
    for label, path in (("compact", plan), ("full rows", full)):
        w, c = timed(partial(Plan.load, path), repeat)
        mb = path.stat().st_size / 1e6
        print(f"| {n:,} | `Plan.load` of the plan {label} ({mb:.1f} MB, in process) | {w:.2f} "
              f"| {c:.2f} | |")
    for label, compact in (("compact", True), ("full rows", False)):
        w, c = timed(partial(loaded.to_yaml, compact), repeat)
        print(f"| {n:,} | `plan.to_yaml` {label} (in process) | {w:.2f} | {c:.2f} | |")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", default="20000,100000")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--whole", action="store_true", help="issue 16's goals: see the docstring")
    args = ap.parse_args()
    if args.whole:
        print("| tensors per side | what | wall s | CPU s | peak RSS MB |")
        print("|---:|---|---:|---:|---:|")
        for n in (int(x) for x in args.rows.split(",")):
            whole(n, args.repeat)
        return
    print("| rows | step | one row per line: wall / CPU s | whole document via PyYAML | ratio |")
    print("|---:|---|---:|---:|---:|")
    for n in (int(x) for x in args.rows.split(",")):
        measure(n, args.repeat)


if __name__ == "__main__":
    main()
