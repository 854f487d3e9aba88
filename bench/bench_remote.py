"""Remote listing (issue 14): `ckpt ls URL` against downloading the file, and for safetensors
against a `get_safetensors_metadata`-style header read (two range requests); folders (a sharded
safetensors repo, a torch.distributed.checkpoint folder) against downloading every file.

    PYTHONPATH=. python bench/bench_remote.py [--tensors 1000] [--repeat 3]

Builds under /tmp/ckpt-bench/remote (once): a torch zip `.pt` and a safetensors file of
--tensors float32 [64, 1024] tensors (256 KiB each), and the demo `.nemo`; serves them from the
tests' range-counting HTTP server on 127.0.0.1 (tests/range_server.py), so bytes and requests
are what the server sent. The same tensors as a sharded repo (index + 4 shards) and as a DCP
folder (`dcp.save`) are served by the tests' fake GCS (tests/fake_gcs.py, which lists them and
counts bytes too) as gs:// folders. Each `ckpt ls` is a whole process with an empty cache folder
(cold), then once more with the cache it left (warm). Loopback only: wall times leave out network
latency, which multiplies with the request count (see the `requests` column).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common import PY, REPO, TMP, env, machine

sys.path.insert(0, str(REPO / "tests"))
import fake_gcs
from range_server import Counts, serving

FOLDERS = ["sharded", "dcp"]


def build(folder: Path, tensors: int) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    names = ["model.pt", "model.safetensors", "rnnt_bpe.nemo"]
    if all((folder / n).exists() for n in names + FOLDERS):
        return names
    code = (
        "import json, sys, torch, safetensors.torch as st\n"
        "import torch.distributed.checkpoint as dcp\n"
        "from inspector.demo import build_demo\n"
        "g = torch.Generator().manual_seed(0)\n"
        f"sd = {{f'model.layers.{{i}}.w': torch.randn(64, 1024, generator=g) "
        f"for i in range({tensors})}}\n"
        "torch.save(sd, sys.argv[1] + '/model.pt')\n"
        "st.save_file(sd, sys.argv[1] + '/model.safetensors')\n"
        "build_demo(sys.argv[1])\n"
        "names, weight_map = list(sd), {}\n"
        "import os; os.makedirs(sys.argv[1] + '/sharded', exist_ok=True)\n"
        "for k in range(4):\n"
        "    file = f'model-{k + 1:05d}-of-00004.safetensors'\n"
        "    part = names[k * len(names) // 4:(k + 1) * len(names) // 4]\n"
        "    st.save_file({n: sd[n] for n in part}, sys.argv[1] + '/sharded/' + file)\n"
        "    weight_map.update(dict.fromkeys(part, file))\n"
        "json.dump({'weight_map': weight_map},\n"
        "          open(sys.argv[1] + '/sharded/model.safetensors.index.json', 'w'))\n"
        "dcp.save(sd, checkpoint_id=sys.argv[1] + '/dcp', no_dist=True)\n"
    )
    subprocess.run([PY, "-c", code, str(folder)], check=True, env=env())
    return names


def ls(url: str, cache: str, extra: dict[str, str] | None = None) -> float:
    start = time.perf_counter()
    subprocess.run([PY, "-m", "inspector.cli", "ls", "--depth", "1", url, "--cache-dir", cache],
                   check=True, env={**env(), **(extra or {})}, capture_output=True)
    return time.perf_counter() - start


def download(url: str) -> float:
    start = time.perf_counter()
    with urllib.request.urlopen(url) as r:
        while r.read(1 << 20):
            pass
    return time.perf_counter() - start


def header_read(url: str) -> float:
    """What huggingface_hub.get_safetensors_metadata does: the length, then the header."""
    start = time.perf_counter()
    req = urllib.request.Request(url, headers={"Range": "bytes=0-7"})
    with urllib.request.urlopen(req) as r:
        n = int.from_bytes(r.read(), "little")
    req = urllib.request.Request(url, headers={"Range": f"bytes=8-{7 + n}"})
    with urllib.request.urlopen(req) as r:
        r.read()
    return time.perf_counter() - start


def measured(counts: Counts, fn: Callable[[], float], repeat: int) -> tuple[float, int, int]:
    """Best wall time, and the bytes and requests of one run."""
    best, sent = float("inf"), (0, 0)
    for _ in range(repeat):
        counts.reset()
        best = min(best, fn())
        sent = (counts.bytes, counts.requests)
    return best, *sent


def ls_rows(url: str, counts: Counts, repeat: int, extra: dict[str, str] | None = None
            ) -> list[tuple[Any, ...]]:
    rows: list[tuple[Any, ...]] = []
    with tempfile.TemporaryDirectory() as cache:
        def cold() -> float:
            for p in Path(cache).glob("remote/*/*"):
                p.unlink()
            return ls(url, cache, extra)

        rows.append(("`ckpt ls URL`, cold", *measured(counts, cold, repeat)))
        rows.append(("`ckpt ls URL`, cached",
                     *measured(counts, lambda: ls(url, cache, extra), repeat)))
    return rows


def rows_for(url: str, name: str, counts: Counts, repeat: int) -> list[tuple[Any, ...]]:
    rows = ls_rows(url, counts, repeat)
    if name.endswith(".safetensors"):
        rows.append(("header read (2 range requests, in process)",
                     *measured(counts, lambda: header_read(url), repeat)))
    rows.append(("download the file", *measured(counts, lambda: download(url), repeat)))
    return rows


def folder_rows(folder: Path, name: str, repeat: int) -> list[tuple[Any, ...]]:
    """A folder as gs://bench/NAME (listed by the fake GCS), and its files downloaded over
    HTTP one after another."""
    with fake_gcs.serving({"bench": folder}) as (gcs_env, counts):
        rows = ls_rows(f"gs://bench/{name}", counts, repeat, gcs_env)
    files = sorted(p.name for p in (folder / name).iterdir())
    with serving(folder / name) as (base, counts):
        def fetch_all() -> float:
            return sum(download(f"{base}/{f}") for f in files)

        rows.append((f"download the {len(files)} files", *measured(counts, fetch_all, repeat)))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tensors", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    folder = TMP / "remote"
    names = build(folder, args.tensors)
    print(machine())
    print("| file | size | how | wall | bytes fetched | requests |")
    print("|---|---|---|---|---|---|")
    with serving(folder) as (base, counts):
        for name in names:
            size = (folder / name).stat().st_size
            for how, wall, nbytes, requests in rows_for(f"{base}/{name}", name, counts,
                                                        args.repeat):
                print(f"| {name} | {size / 2**20:.0f} MiB | {how} | {wall:.2f} s | "
                      f"{nbytes / 2**10:,.0f} KiB | {requests} |")
    for name in FOLDERS:
        size = sum(p.stat().st_size for p in (folder / name).iterdir())
        for how, wall, nbytes, requests in folder_rows(folder, name, args.repeat):
            print(f"| {name}/ | {size / 2**20:.0f} MiB | {how} | {wall:.2f} s | "
                  f"{nbytes / 2**10:,.0f} KiB | {requests} |")


if __name__ == "__main__":
    main()
