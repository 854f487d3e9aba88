"""Numeric core vs what users write today: compare, crc32, f32->bf16 cast, shape diff.

    PYTHONPATH=. python bench/bench_compare.py [--mb 256] [--names 1000000] [--repeat 3]

Prints a markdown table (best of --repeat runs, warm cache, in-memory buffers).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import zlib
from collections.abc import Callable

import numpy as np
import torch

from inspector import _core as core


def best(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def numpy_compare(a: np.ndarray, b: np.ndarray) -> dict:
    d = np.abs(a - b)
    nb = np.linalg.norm(b)
    return {
        "max": d.max(),
        "mean": d.mean(),
        "rel_l2": np.linalg.norm(a - b) / nb,
        "cosine": np.dot(a, b) / (np.linalg.norm(a) * nb),
        "n_diff": np.count_nonzero(a != b),
        "allclose": np.allclose(a, b),
    }


def torch_compare(a: torch.Tensor, b: torch.Tensor) -> dict:
    d = (a - b).abs()
    return {
        "max": d.max(),
        "mean": d.mean(),
        "rel_l2": torch.linalg.norm(a - b) / torch.linalg.norm(b),
        "cosine": torch.nn.functional.cosine_similarity(a, b, dim=0),
        "n_diff": (a != b).sum(),
        "allclose": torch.allclose(a, b),
    }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--mb", type=int, default=256)
    p.add_argument("--names", type=int, default=1_000_000)
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()
    n = args.mb * (1 << 20) // 4
    gb = n * 4 / 1e9
    rng = np.random.default_rng(0)
    a = rng.standard_normal(n, dtype=np.float32)
    b = a + np.float32(1e-3) * rng.standard_normal(n, dtype=np.float32)
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    rows: list[tuple[str, str, float, float]] = []  # what, how, seconds, GB processed

    def add(what: str, how: str, fn: Callable[[], object], nbytes: float) -> None:
        rows.append((what, how, best(fn, args.repeat), nbytes))

    shape, strides = (n,), (1,)
    for threads in (1, 0):
        add(
            "compare a vs b",
            f"core.compare threads={threads or 'all'}",
            lambda t=threads: core.compare(
                a, "float32", shape, strides, 0, b, "float32", shape, strides, 0, threads=t
            ),
            2 * gb,
        )
    a16 = np.empty(n, np.uint16)
    core.copy_cast(b, "float32", shape, strides, 0, a16, 0, "bfloat16")
    add(
        "compare bf16(b) vs a",
        "core.compare threads=1",
        lambda: core.compare(
            a16, "bfloat16", shape, strides, 0, a, "float32", shape, strides, 0, threads=1
        ),
        1.5 * gb,
    )
    add(
        "compare a vs b",
        "numpy (abs/max/mean/norm/dot/!=/allclose)",
        lambda: numpy_compare(a, b),
        2 * gb,
    )
    add("compare a vs b", "torch (same figures)", lambda: torch_compare(ta, tb), 2 * gb)
    add("stats a", "core.stats bins=16", lambda: core.stats(a, "float32", shape, strides, 0), gb)

    add("crc32", "core.crc32", lambda: core.crc32(a), gb)
    add("crc32", "zlib.crc32", lambda: zlib.crc32(a), gb)

    out = np.empty(n, np.uint16)
    for threads in (1, 0):
        add(
            "cast f32 -> bf16 (+crc32)",
            f"core.copy_cast threads={threads or 'all'}",
            lambda t=threads: core.copy_cast(
                a, "float32", shape, strides, 0, out, 0, "bfloat16", threads=t
            ),
            gb,
        )
    add("cast f32 -> bf16", "torch .to(bfloat16)", lambda: ta.to(torch.bfloat16), gb)
    add(
        "cast f32 -> f16 (+crc32)",
        "core.copy_cast threads=1",
        lambda: core.copy_cast(a, "float32", shape, strides, 0, out, 0, "float16", threads=1),
        gb,
    )
    add("cast f32 -> f16", "torch .to(float16)", lambda: ta.to(torch.float16), gb)
    add(
        "copy f32 (+crc32)",
        "core.copy_cast same dtype",
        lambda: core.copy_cast(a, "float32", shape, strides, 0, b, 0, "float32"),
        gb,
    )
    add("copy f32", "numpy copyto", lambda: np.copyto(b, a), gb)

    k = args.names
    names_a = [f"model.layers.{i // 10}.experts.{i % 10}.w{i % 3}.weight" for i in range(k)]
    names_b = names_a[k // 10 :] + [f"extra.{i}" for i in range(k // 10)]
    shapes_a = [(i % 97 + 1, 64) for i in range(k)]
    shapes_b = [(i % 89 + 1, 64) for i in range(k)]
    dt_a = ["float32"] * k
    dt_b = ["bfloat16" if i % 5 == 0 else "float32" for i in range(k)]

    def python_diff() -> dict:
        da = dict(zip(names_a, zip(shapes_a, dt_a, strict=True), strict=True))
        db = dict(zip(names_b, zip(shapes_b, dt_b, strict=True), strict=True))
        out: dict[str, list] = {"only_a": [], "only_b": [], "shape": [], "dtype": [], "equal": []}
        for name, (s, d) in da.items():
            other = db.get(name)
            if other is None:
                out["only_a"].append(name)
            elif other[0] != s:
                out["shape"].append(name)
            elif other[1] != d:
                out["dtype"].append(name)
            else:
                out["equal"].append(name)
        out["only_b"] = [x for x in db if x not in da]
        return out

    add(
        f"shape diff {k} x {k} names",
        "core.shape_diff",
        lambda: core.shape_diff(names_a, shapes_a, dt_a, names_b, shapes_b, dt_b),
        0,
    )
    add(f"shape diff {k} x {k} names", "python dicts", python_diff, 0)

    print(
        f"`PYTHONPATH=. python {' '.join(sys.argv)}` ({os.cpu_count()} cores, "
        f"{args.mb} MB float32 buffers, "
        f"best of {args.repeat}; crc32 fast path: {core._crc32_has_pclmul()}, "
        f"compare/cast SIMD: {core._numeric_simd()})\n"
    )
    print("| what | how | time | throughput |")
    print("|---|---|---:|---:|")
    for what, how, sec, nbytes in rows:
        rate = f"{nbytes / sec:.2f} GB/s" if nbytes else ""
        print(f"| {what} | {how} | {sec * 1e3:.1f} ms | {rate} |")


if __name__ == "__main__":
    main()
