"""Content hash (ckh1, C++ core) against memcpy and the usual hashes, on one in-memory buffer.

    PYTHONPATH=. python bench/bench_hash.py [--mb 1024] [--repeat 3]

Rows: numpy copyto on 1 and on all threads (the memory-speed ceiling), xxhash.xxh3_128,
hashlib.sha256, blake3 (all threads, when installed), the core's plain XXH3-128 per kernel, and
the ckh1 tree hash on 1 and on all threads. Best of --repeat interleaved rounds, warm memory,
GB = 1e9 bytes.
Goals (issue 3): ckh1 on one thread >= xxhash.xxh3_128; on all threads >= 0.8x all-thread memcpy.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import os
import platform
import shlex
import sys
import threading
import time
from collections.abc import Callable

import numpy as np
import xxhash

from inspector._native import core


def best_seconds(rows: list[tuple[str, Callable[[], object]]], repeat: int) -> dict[str, float]:
    """Best time of each contender; rounds interleave them so that a load change on a shared
    machine hits them all alike."""
    best = {label: float("inf") for label, _ in rows}
    for fn in (fn for _, fn in rows):
        fn()  # warm-up: page faults, caches, thread start
    for _ in range(repeat):
        for label, fn in rows:
            t0 = time.perf_counter()
            fn()
            best[label] = min(best[label], time.perf_counter() - t0)
    return best


def copy_threads(src: np.ndarray, dst: np.ndarray, threads: int) -> None:
    """numpy copyto in `threads` slices at once (copyto releases the GIL for plain dtypes)."""
    bounds = np.linspace(0, src.size, threads + 1, dtype=np.int64)
    parts = [(int(a), int(b)) for a, b in itertools.pairwise(bounds)]
    workers = [threading.Thread(target=np.copyto, args=(dst[a:b], src[a:b])) for a, b in parts]
    for w in workers:
        w.start()
    for w in workers:
        w.join()


def contenders(
    buf: np.ndarray, dst: np.ndarray, cores: int
) -> list[tuple[str, Callable[[], object]]]:
    job = [(buf, "uint8", 1, (buf.size,), (1,), 0, False)]
    rows: list[tuple[str, Callable[[], object]]] = [
        ("memcpy (numpy copyto), 1 thread", lambda: np.copyto(dst, buf)),
        (f"memcpy (numpy copyto), {cores} threads", lambda: copy_threads(buf, dst, cores)),
        ("xxhash.xxh3_128 (python-xxhash), 1 thread", lambda: xxhash.xxh3_128_digest(buf)),
        ("hashlib.sha256, 1 thread", lambda: hashlib.sha256(buf).digest()),
    ]
    try:
        import blake3

        rows.append(
            (f"blake3, {cores} threads", lambda: blake3.blake3(buf, max_threads=cores).digest())
        )
    except ImportError:
        pass
    for kernel in ("scalar", "sse2", "avx2", "avx512"):
        try:
            core.xxh3_128(b"", kernel=kernel)
        except ValueError:
            continue
        rows.append(
            (f"_core.xxh3_128 ({kernel}), 1 thread", lambda k=kernel: core.xxh3_128(buf, kernel=k))
        )
    rows.append(("ckh1 tree hash (ours), 1 thread", lambda: core.hash_tensors(job, threads=1)))
    rows.append(
        (f"ckh1 tree hash (ours), {cores} threads", lambda: core.hash_tensors(job, threads=cores))
    )
    return rows


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=1024, help="buffer size in MiB (default 1024)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    n = args.mb << 20
    buf = np.random.default_rng(0).integers(0, 256, n, dtype=np.uint8)
    dst = np.empty_like(buf)
    seconds = best_seconds(contenders(buf, dst, cores), args.repeat)
    results = [(label, n / s / 1e9) for label, s in seconds.items()]
    speed = dict(results)
    xxh = speed["xxhash.xxh3_128 (python-xxhash), 1 thread"]
    memcpy_all = speed[f"memcpy (numpy copyto), {cores} threads"]

    print(
        f"Hash throughput, {args.mb} MiB in-memory buffer, best of {args.repeat}, "
        f"{platform.machine()}, {cores} cores, xxh3 kernel {core.xxh3_kernel}"
    )
    print()
    print("| what | GB/s | vs xxhash.xxh3_128 | vs all-thread memcpy |")
    print("|---|---:|---:|---:|")
    for label, gbs in results:
        print(f"| {label} | {gbs:.2f} | {gbs / xxh:.2f}x | {gbs / memcpy_all:.2f}x |")
    print()
    one, all_ = (
        speed["ckh1 tree hash (ours), 1 thread"],
        speed[f"ckh1 tree hash (ours), {cores} threads"],
    )
    ratio = all_ / memcpy_all
    print(f"goal: 1 thread >= xxhash.xxh3_128: {one / xxh:.2f}x ({verdict(one >= xxh)})")
    print(f"goal: all threads >= 0.8x all-thread memcpy: {ratio:.2f}x ({verdict(ratio >= 0.8)})")
    print()
    print("command: PYTHONPATH=. " + shlex.join([sys.executable.rsplit("/", 1)[-1], *sys.argv]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
