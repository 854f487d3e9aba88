"""kill -9 during `ckpt apply`: the inputs never change, and the destination is the old file (or
absent) or the complete new one, never a torn file.

A seeded campaign per write path: patch in place (safetensors -> safetensors, same layout) and
full rewrite (safetensors -> torch zip). One uninterrupted run per path calibrates when the
write starts (the temp file appears beside the destination) and how long it lasts; each
campaign run is then SIGKILLed at a random point of that window (a little before it, up to its
end: rename included). Half the runs start with an old file at the destination.
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file
from subproc import popen

import inspector
from inspector.hashing import hash_tensors

pytestmark = pytest.mark.slow

KILLS_PER_PATH = 25  # kills that land inside a run, per write path: 50 in all
MAX_RUNS_PER_PATH = 3 * KILLS_PER_PATH  # a run that ends before its kill is not counted
FUZZ_CORPUS = Path(__file__).parent / "fuzz" / "corpus"
OLD_FILES = {".safetensors": FUZZ_CORPUS / "open_safetensors" / "plain.safetensors",
             ".pt": FUZZ_CORPUS / "open_torch_zip" / "state.pt"}


def sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def digests(path: Path) -> dict[str, str]:
    return {name: str(d) for name, d in hash_tensors(inspector.open(path)).items()}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("kill-inputs")
    rng = np.random.default_rng(0)
    shape = (1024, 1024)  # 6 x 4 MiB: 24 MiB written per run
    save_file({f"layer{i}.weight": rng.standard_normal(shape, dtype=np.float32)
               for i in range(6)}, str(folder / "src.safetensors"))
    save_file({f"layer{i}.weight": np.zeros(shape, dtype=np.float32) for i in range(6)},
              str(folder / "tgt.safetensors"))
    return folder / "src.safetensors", folder / "tgt.safetensors"


def start_apply(src: Path, tgt: Path, out: Path) -> subprocess.Popen[str]:
    return popen("-m", "inspector.cli", "apply", "--accept-proposed", "--source", str(src),
                 "--target", str(tgt), "-o", str(out),
                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def wait_for_write(proc: subprocess.Popen[str], folder: Path, before: set[str]) -> float:
    """Seconds from now until a new file appears in `folder` (the temp output) or the child
    exits."""
    start = time.monotonic()
    while proc.poll() is None and not set(os.listdir(folder)) - before:
        time.sleep(0.0005)
    return time.monotonic() - start


def calibrate(src: Path, tgt: Path, out: Path, how: str) -> tuple[float, dict[str, str]]:
    """One uninterrupted run: the write window's length and the new file's tensor digests."""
    proc = start_apply(src, tgt, out)
    wait_for_write(proc, out.parent, set())
    t0 = time.monotonic()
    stdout, stderr = proc.communicate(timeout=120)
    window = time.monotonic() - t0
    assert proc.returncode == 0, stderr
    assert f", {how}" in stdout, stdout  # the path this campaign is about
    new = digests(out)
    assert len(new) == 6
    out.unlink()
    return window, new


@pytest.mark.parametrize(("suffix", "how"), [(".safetensors", "patch"), (".pt", "rewrite")])
def test_kill_9_leaves_old_or_complete_output(tmp_path, inputs, suffix, how):
    src, tgt = inputs
    hashes = {p: sha256(p) for p in inputs}
    out = tmp_path / "out" / f"model{suffix}"
    out.parent.mkdir()
    window, new = calibrate(src, tgt, out, how)
    old_bytes = OLD_FILES[suffix].read_bytes()
    rng = random.Random(f"kill-campaign{suffix}")
    outcomes = {"absent": 0, "old": 0, "new": 0}
    killed = runs = 0
    while killed < KILLS_PER_PATH and runs < MAX_RUNS_PER_PATH:
        runs += 1
        for stale in out.parent.iterdir():  # a killed run's temp file (SIGKILL skips cleanup)
            stale.unlink()
        has_old = rng.random() < 0.5
        if has_old:
            out.write_bytes(old_bytes)
        proc = start_apply(src, tgt, out)
        wait_for_write(proc, out.parent, {out.name} if has_old else set())
        time.sleep(max(0.0, rng.uniform(-0.02, window)))
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
        if proc.returncode == -signal.SIGKILL:
            killed += 1
        else:  # it finished first: this machine is faster now than when calibrated
            window *= 0.85
        assert {p: sha256(p) for p in inputs} == hashes, "an input changed"
        outcomes[outcome(out, old_bytes if has_old else None, new)] += 1
    print(f"{how}: window {window:.3f} s, {killed} kills landed in {runs} runs, {outcomes}")
    # The kills landed inside the runs, both before and after the rename.
    assert killed >= KILLS_PER_PATH, (killed, runs, outcomes)
    assert outcomes["absent"] + outcomes["old"] > 0, outcomes
    assert outcomes["new"] > 0, outcomes


def outcome(out: Path, old: bytes | None, new: dict[str, str]) -> str:
    if not out.exists():
        assert old is None, f"{out}: the old file is gone and nothing replaced it"
        return "absent"
    if old is not None and out.read_bytes() == old:
        return "old"
    assert digests(out) == new, f"{out}: neither the old file nor the complete new one"
    return "new"
