"""Writing and reading a plan file of N rows: the one-row-per-line layout (mapping/planlines.py)
against the whole document through PyYAML (libyaml's emitter and loader, PyYAML's Python
representer and resolver: how plans were written and read before).

    PYTHONPATH=. python bench/bench_plan.py [--rows 20000,100000] [--repeat 3]

The plan is proposed from two safetensors files of N tensors (`layers.{i}.experts.{0..7}.w{1,2,3}`
against the same names under `model.`: every row is a heuristic match with evidence and
candidates), built once under /tmp/ckpt-bench. In process, best of --repeat, wall and CPU.
"""

from __future__ import annotations

import argparse
import time
from functools import partial
from pathlib import Path

import numpy as np
import yaml
from common import TMP

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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", default="20000,100000")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    print("| rows | step | one row per line: wall / CPU s | whole document via PyYAML | ratio |")
    print("|---:|---|---:|---:|---:|")
    for n in (int(x) for x in args.rows.split(",")):
        measure(n, args.repeat)


if __name__ == "__main__":
    main()
