"""ckh1 digests of tensors that live on a GPU: the CUDA kernels against what a user does instead.

    PYTHONPATH=. python bench/bench_hash_cuda.py [--gb 4] [--repeat 5]

Needs inspector._core built with INSPECTOR_CUDA=ON (tools/gpu-check.sh builds it) and a CUDA
GPU. One float32 tensor of --gb GB on device 0 (and a bfloat16 one of the same bytes). Rows:
- ckh1 on the GPU (`inspector.hashing.tensor_digest_cuda`, ours);
- ckh1 on the CPU after `tensor.cpu()` (ours without the kernels: the copy to the host first);
- xxhash.xxh3_128 and hashlib.sha256 after `tensor.cpu()` (a user's script);
- a device-to-device copy (`torch.clone`), the memory-speed ceiling (it reads and writes).
Best of --repeat; every GPU step synchronised; GB = 1e9 bytes of the tensor.
"""

from __future__ import annotations

import argparse
import hashlib
import platform
import sys
import time
from collections.abc import Callable

import torch
import xxhash

from inspector.hashing import digest_array, tensor_digest_cuda


def best(fn: Callable[[], object], repeat: int) -> float:
    fn()  # warm-up: kernel load, allocator, page-locked buffers
    torch.cuda.synchronize()
    times = []
    for _ in range(repeat):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return min(times)


def rows_for(t: torch.Tensor) -> list[tuple[str, Callable[[], object]]]:
    def host_bytes() -> memoryview:
        return memoryview(t.cpu().reshape(-1).view(torch.uint8).numpy())

    return [
        ("ckh1 on the GPU (tensor_digest_cuda, ours)", lambda: tensor_digest_cuda(t)),
        ("ckh1 on the CPU after tensor.cpu() (ours, no kernels)",
         lambda: digest_array(t.cpu().view(torch.int16 if t.dtype == torch.bfloat16
                                           else t.dtype).numpy(),
                              "bfloat16" if t.dtype == torch.bfloat16 else None)),
        ("xxhash.xxh3_128 after tensor.cpu()", lambda: xxhash.xxh3_128_digest(host_bytes())),
        ("hashlib.sha256 after tensor.cpu()", lambda: hashlib.sha256(host_bytes()).digest()),
        ("device-to-device copy (torch.clone), ceiling", lambda: t.clone()),
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--gb", type=float, default=4.0)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("bench_hash_cuda: no CUDA GPU")
    n = int(args.gb * 1e9) // 4
    g = torch.Generator(device="cuda").manual_seed(0)
    f32 = torch.randn(n, device="cuda", generator=g)
    bf16 = torch.randn(2 * n, device="cuda", generator=g).to(torch.bfloat16)
    assert tensor_digest_cuda(f32) == digest_array(f32.cpu().numpy())  # same digest, or no row
    name = torch.cuda.get_device_name(0)
    print(f"ckh1 of a {args.gb:g} GB tensor on {name}, host {platform.machine()}, "
          f"best of {args.repeat}:\n")
    print("| tensor | what | GB/s | time vs ours |")
    print("|---|---|---:|---:|")
    for label, t in (("float32", f32), ("bfloat16", bf16)):
        nbytes = t.numel() * t.element_size()
        times = {what: best(fn, args.repeat) for what, fn in rows_for(t)}
        ours = next(iter(times.values()))
        for what, s in times.items():
            print(f"| {label} | {what} | {nbytes / s / 1e9:,.1f} | {s / ours:,.1f}x |")
    print(f"\ncommand: PYTHONPATH=. python bench/bench_hash_cuda.py --gb {args.gb:g} "
          f"--repeat {args.repeat}")


if __name__ == "__main__":
    main()
