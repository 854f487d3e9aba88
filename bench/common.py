"""Shared helpers for the benchmarks: whole-process timing and peak RSS, markdown tables.

Every benchmark runs what a user would run instead side by side with ckpt-inspector, in the
same session, and prints a markdown table ready for bench/RESULTS.md.
"""

from __future__ import annotations

import os
import platform
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable
TMP = Path(os.environ.get("BENCH_TMP", "/tmp/ckpt-bench"))


@dataclass
class Run:
    label: str
    wall_s: float
    peak_rss_mb: float


def env() -> dict[str, str]:
    """The children's environment: this checkout's sources first on the path, and an editable
    install's import hook told to stand aside (it maps `inspector` to the tree it was installed
    from whatever PYTHONPATH says, so a `--before DIR` row would time this checkout), and
    bytecode written as an installed package has it."""
    e = dict(os.environ)
    # An installed package has its bytecode: without it every run compiles each module it
    # imports again (a few ms a module). The first of the repeated runs writes it.
    e.pop("PYTHONDONTWRITEBYTECODE", None)
    e["PYTHONPATH"] = str(REPO) + os.pathsep + e.get("PYTHONPATH", "")
    skip = [getattr(f, "path", None) for f in sys.meta_path
            if type(f).__name__ == "ScikitBuildRedirectingFinder"]
    if any(skip):
        e["SKBUILD_EDITABLE_SKIP"] = os.pathsep.join(
            [e.get("SKBUILD_EDITABLE_SKIP", ""), *(p for p in skip if p)])
    return e


def measure(label: str, argv: list[str], *, repeat: int = 3, cwd: Path | None = None) -> Run:
    """Best wall time and largest peak RSS over `repeat` runs of a whole process."""
    walls, rss = [], []
    for _ in range(repeat):
        t0 = time.perf_counter()
        proc = subprocess.run(
            ["/usr/bin/time", "-f", "%M", *argv],
            capture_output=True,
            text=True,
            env=env(),
            cwd=cwd,
        )
        walls.append(time.perf_counter() - t0)
        if proc.returncode not in (0, 1):
            raise RuntimeError(f"{shlex.join(argv)} failed:\n{proc.stderr[-2000:]}")
        m = re.search(r"(\d+)\s*$", proc.stderr.strip())
        rss.append(int(m.group(1)) / 1024 if m else float("nan"))
    return Run(label, min(walls), max(rss))


def drop_page_cache_hint() -> str:
    return "warm page cache (files read once before timing)"


def warm(path: Path) -> None:
    """Read a file (or folder) once so every contender starts from a warm page cache."""
    paths = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    for p in paths:
        with p.open("rb") as f:
            while f.read(1 << 24):
                pass


def table(rows: list[Run], baseline: str) -> str:
    base = next(r for r in rows if r.label == baseline)
    out = ["| what | wall s | peak RSS MB | time vs ours |", "|---|---:|---:|---:|"]
    for r in rows:
        out.append(
            f"| {r.label} | {r.wall_s:.3f} | {r.peak_rss_mb:.0f} | {r.wall_s / base.wall_s:.1f}x |"
        )
    return "\n".join(out)


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
