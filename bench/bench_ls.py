"""`ckpt ls` on a ~2 GB float32 checkpoint (~950 tensors) against what users run today.

    python bench/bench_ls.py            # builds the files under /tmp/ckpt-bench once

Contenders, each as a whole process: `ckpt ls` on .pt and .safetensors, `torch.load(mmap=True,
weights_only=True)` listing keys and shapes, and safetensors' `safe_open` listing.
"""

from __future__ import annotations

import sys

from common import PY, TMP, machine, measure, table, warm

N_LAYERS = 79  # 12 tensors per layer -> 948 tensors + 4, ~2.0 GB of float32


def build() -> tuple[str, str]:
    pt, st = TMP / "ls-2gb.pt", TMP / "ls-2gb.safetensors"
    if pt.exists() and st.exists():
        return str(pt), str(st)
    import torch
    from safetensors.torch import save_file

    TMP.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(0)
    d, ff = 1024, 1536
    sd = {"embed.weight": torch.randn(2048, d, generator=g)}
    for i in range(N_LAYERS):
        p = f"encoder.layers.{i}."
        for name, shape in (
            ("attn.q.weight", (d, d)),
            ("attn.k.weight", (d, d)),
            ("attn.v.weight", (d, d)),
            ("attn.out.weight", (d, d)),
            ("attn.out.bias", (d,)),
            ("ff.w1.weight", (ff, d)),
            ("ff.w1.bias", (ff,)),
            ("ff.w2.weight", (d, ff)),
            ("ff.w2.bias", (d,)),
            ("norm1.weight", (d,)),
            ("norm1.bias", (d,)),
            ("norm2.weight", (d,)),
        ):
            sd[p + name] = torch.randn(*shape, generator=g) * 0.02
    sd["out.weight"] = torch.randn(1025, d, generator=g)
    sd["out.bias"] = torch.zeros(1025)
    sd["norm.weight"] = torch.ones(d)
    torch.save(sd, pt)
    save_file(sd, st)
    return str(pt), str(st)


def main() -> None:
    pt, st = build()
    for p in (pt, st):
        warm(__import__("pathlib").Path(p))
    ckpt = [PY, "-m", "inspector.cli", "ls"]
    torch_list = (
        "import sys, torch; sd = torch.load(sys.argv[1], mmap=True, weights_only=True); "
        "[print(k, tuple(v.shape), v.dtype) for k, v in sd.items()]"
    )
    st_list = (
        "import sys; from safetensors import safe_open\n"
        "with safe_open(sys.argv[1], 'np') as f:\n"
        "    [print(k, f.get_slice(k).get_shape()) for k in f.keys()]"
    )
    rows = [
        measure("ckpt ls model.pt", [*ckpt, pt]),
        measure("ckpt ls --flat model.pt", [*ckpt, "--flat", pt]),
        measure("ckpt ls model.safetensors", [*ckpt, st]),
        measure("torch.load(mmap=True, weights_only=True) model.pt", [PY, "-c", torch_list, pt]),
        measure("safetensors safe_open model.safetensors", [PY, "-c", st_list, st]),
        measure("python -c pass (interpreter start)", [PY, "-c", "pass"]),
    ]
    print(f"ckpt ls, whole process, {machine()}, warm cache, best of 3:\n")
    print(table(rows, "ckpt ls model.pt"))
    print(f"\ncommand: {sys.executable} bench/bench_ls.py")


if __name__ == "__main__":
    main()
