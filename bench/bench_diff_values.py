"""`ckpt diff A B` (values compared) against hashing both files, and against the torch loop a user
would write instead.

    PYTHONPATH=. python bench/bench_diff_values.py [--gb 2] [--repeat 3] [--keep]

Builds two float32 safetensors checkpoints of about --gb GB each under $BENCH_TMP (default
/tmp/ckpt-bench), shaped like a 2048-wide transformer (attention and MLP matrices, norms), where
B equals A in every other tensor and is A plus 1e-3 noise in the rest: half the bytes differ.
Each contender runs as a whole process, best of --repeat, warm page cache; the files are deleted
afterwards unless --keep. Prints a markdown table and the ratio diff / (hash A + hash B).
"""

from __future__ import annotations

import argparse
import json
import shlex
import struct
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from common import PY, TMP, Run, machine, measure, warm

HIDDEN, FFN = 2048, 5632

# What a user would write: load both files, then torch.equal and the max abs difference per tensor.
TORCH_LOOP = """
import sys, torch
from safetensors.torch import load_file
a, b = load_file(sys.argv[1]), load_file(sys.argv[2])
changed = []
for name, x in a.items():
    y = b[name]
    if x.shape == y.shape and x.dtype == y.dtype and not torch.equal(x, y):
        changed.append((name, (x - y).abs().max().item()))
print(len(changed))
"""


def layout(gb: float) -> list[tuple[str, tuple[int, ...]]]:
    """Tensor names and shapes of a model of about `gb` GB in float32."""
    layer = [
        ("input_layernorm.weight", (HIDDEN,)),
        *((f"self_attn.{p}_proj.weight", (HIDDEN, HIDDEN)) for p in "qkvo"),
        ("post_attention_layernorm.weight", (HIDDEN,)),
        ("mlp.gate_proj.weight", (FFN, HIDDEN)),
        ("mlp.up_proj.weight", (FFN, HIDDEN)),
        ("mlp.down_proj.weight", (HIDDEN, FFN)),
    ]
    per_layer = sum(4 * int(np.prod(s)) for _, s in layer)
    layers = max(1, round(gb * 1e9 / per_layer))
    return [(f"model.layers.{i}.{n}", s) for i in range(layers) for n, s in layer]


def tensors(
    names: list[tuple[str, tuple[int, ...]]], perturbed: bool
) -> Iterator[tuple[str, np.ndarray]]:
    """A's tensors (slices of one random pool), or B's: every odd-numbered one plus noise."""
    rng = np.random.default_rng(0)
    pool = rng.standard_normal(1 << 24, dtype=np.float32)
    pool = np.concatenate([pool, pool])
    for k, (name, shape) in enumerate(names):
        n = int(np.prod(shape))
        start = (k * 7919) % (1 << 24)
        x = pool[start : start + n]
        if perturbed and k % 2:
            noise_at = (k * 104729 + 12345) % (1 << 24)
            x = x + np.float32(1e-3) * pool[noise_at : noise_at + n]
        yield name, x


def write_safetensors(
    path: Path, names: list[tuple[str, tuple[int, ...]]], perturbed: bool
) -> None:
    """Streams the file (header, then each tensor), so memory stays at one tensor."""
    header, offset = {}, 0
    for name, shape in names:
        size = 4 * int(np.prod(shape))
        header[name] = {
            "dtype": "F32",
            "shape": list(shape),
            "data_offsets": [offset, offset + size],
        }
        offset += size
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    with path.open("wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw)
        for _, x in tensors(names, perturbed):
            f.write(x.tobytes())


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--gb", type=float, default=2.0)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--keep", action="store_true", help="keep the files in $BENCH_TMP")
    args = p.parse_args()
    TMP.mkdir(parents=True, exist_ok=True)
    a, b = TMP / "values-a.safetensors", TMP / "values-b.safetensors"
    names = layout(args.gb)
    try:
        write_safetensors(a, names, perturbed=False)
        write_safetensors(b, names, perturbed=True)
        warm(a)
        warm(b)
        ckpt = [PY, "-m", "inspector.cli"]
        contenders = {
            "ckpt hash A": [*ckpt, "hash", str(a)],
            "ckpt hash B": [*ckpt, "hash", str(b)],
            "ckpt diff A B": [*ckpt, "diff", str(a), str(b)],
            "torch: load_file both, torch.equal + (a-b).abs().max() per tensor": [
                PY,
                "-c",
                TORCH_LOOP,
                str(a),
                str(b),
            ],
        }
        # Rounds interleave the contenders, so that load from elsewhere on a shared machine
        # falls on all of them alike; the best round of each counts.
        runs: dict[str, list[Run]] = {label: [] for label in contenders}
        for _ in range(args.repeat):
            for label, argv in contenders.items():
                runs[label].append(measure(label, argv, repeat=1))
        hash_a, hash_b, diff, loop = (min(r, key=lambda x: x.wall_s) for r in runs.values())
        size = a.stat().st_size / 1e9
    finally:
        if not args.keep:
            a.unlink(missing_ok=True)
            b.unlink(missing_ok=True)
    both = hash_a.wall_s + hash_b.wall_s
    rows = [
        hash_a,
        hash_b,
        Run("ckpt hash A + ckpt hash B", both, max(hash_a.peak_rss_mb, hash_b.peak_rss_mb)),
        diff,
        loop,
    ]
    print(f"`PYTHONPATH=. python {shlex.join(sys.argv)}` ({machine()})\n")
    print(
        f"Two float32 safetensors files of {size:.2f} GB ({len(names)} tensors each), "
        f"half the tensors changed; whole process, best of {args.repeat}, warm page cache.\n"
    )
    print("| what | wall s | peak RSS MB | vs hash A + hash B |")
    print("|---|---:|---:|---:|")
    for r in rows:
        print(f"| {r.label} | {r.wall_s:.3f} | {r.peak_rss_mb:.0f} | {r.wall_s / both:.2f}x |")
    print(f"\ndiff / (hash A + hash B) = {diff.wall_s / both:.2f} (goal <= 1.3)")


if __name__ == "__main__":
    main()
