"""Issue 13: converting a sharded DCP checkpoint to one file (and back), time and peak RSS.

    python bench/bench_dcp_convert.py [--gb 4] [--repeat 1]

Builds `dcp-sharded-<GB>g/` once under /tmp/ckpt-bench (`BENCH_TMP`): 2 gloo ranks `dcp.save`
float32 DTensors of 32 MiB each, three in four sharded along dim 0 (FSDP2's layout, read in
place) and one in four along dim 1 (assembled in slabs). Contenders, each a whole process on a
warm page cache:

- ours: `ckpt convert DCP -o out.pt` (`out.safetensors` too);
- torch: `torch.distributed.checkpoint.format_utils.dcp_to_torch_save(DCP, out.pt)`, which
  loads the whole state dict into memory first;
- ours back: `ckpt convert out.pt --format dcp --shards 2 -o DCP2` against torch's
  `torch_save_to_dcp(out.pt, DCP2)`;
- `ckpt hash DCP`, and the same tensors in one `.pt`, to show what assembling costs.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import sys
from pathlib import Path

from common import PY, TMP, Run, machine, measure, warm

TENSOR_MB = 32


def _rank(rank: int, world: int, gb: int, out: str, port: int) -> None:
    import torch
    import torch.distributed as dist
    import torch.distributed.checkpoint as dcp
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import DTensor, Shard

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    mesh = init_device_mesh("cpu", (world,))
    rows, cols = 2048, TENSOR_MB * (1 << 20) // 4 // 2048
    state = {}
    for i in range(gb * 1024 // TENSOR_MB):
        dim = 1 if i % 4 == 3 else 0
        shape = [rows, cols]
        shape[dim] //= world
        g = torch.Generator().manual_seed(i * world + rank)
        local = torch.randn(*shape, generator=g)
        state[f"layers.{i}.weight"] = DTensor.from_local(local, mesh, [Shard(dim)],
                                                         run_check=False)
    dcp.save(state, checkpoint_id=out)
    dist.destroy_process_group()


def build(gb: int) -> Path:
    folder = TMP / f"dcp-sharded-{gb}g"
    if not (folder / ".metadata").exists():
        import torch.multiprocessing as mp

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        mp.spawn(_rank, args=(2, gb, str(folder), port), nprocs=2)
    return folder


TORCH_TO_PT = ("from torch.distributed.checkpoint.format_utils import dcp_to_torch_save as f; "
               "import sys; f(sys.argv[1], sys.argv[2])")
TORCH_TO_DCP = ("from torch.distributed.checkpoint.format_utils import torch_save_to_dcp as f; "
                "import sys; f(sys.argv[1], sys.argv[2])")


def _clean(*paths: Path) -> None:
    for p in paths:
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gb", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    folder = build(args.gb)
    warm(folder)
    ckpt = [PY, "-m", "inspector.cli"]
    out_pt, ours_pt = TMP / "conv-torch.pt", TMP / "conv-ours.pt"
    out_st = TMP / "conv-ours.safetensors"
    back_t, back_o = TMP / "back-torch", TMP / "back-ours"
    rows: list[Run] = []

    def run(label: str, argv: list[str], *outputs: Path) -> None:
        _clean(*outputs)
        rows.append(measure(label, argv, repeat=args.repeat))
        if label.startswith("torch"):
            _clean(*outputs)  # keep disk use to one copy at a time

    run("ours: ckpt convert DCP -o out.pt", [*ckpt, "convert", str(folder), "-o", str(ours_pt)])
    run("ours: ckpt convert DCP -o out.safetensors",
        [*ckpt, "convert", str(folder), "-o", str(out_st)], out_st)
    run("torch: dcp_to_torch_save(DCP, out.pt)", [PY, "-c", TORCH_TO_PT, str(folder),
                                                    str(out_pt)], out_pt)
    warm(ours_pt)
    run("ours: ckpt convert out.pt --format dcp --shards 2",
        [*ckpt, "convert", str(ours_pt), "--format", "dcp", "--shards", "2", "-o", str(back_o)],
        back_o)
    run("torch: torch_save_to_dcp(out.pt, DCP)", [PY, "-c", TORCH_TO_DCP, str(ours_pt),
                                                   str(back_t)], back_t)
    run("ours: ckpt hash DCP (sharded)", [*ckpt, "hash", str(folder)])
    run("ours: ckpt hash out.pt (same tensors, one file)", [*ckpt, "hash", str(ours_pt)])
    _clean(ours_pt, back_o, out_st)
    print(f"DCP conversion, {args.gb} GB float32 on 2 ranks, whole process, {machine()}, "
          f"warm cache, best of {args.repeat}:\n")
    print("| what | wall s | peak RSS MB |\n|---|---:|---:|")
    for r in rows:
        print(f"| {r.label} | {r.wall_s:.2f} | {r.peak_rss_mb:.0f} |")
    print(f"\ncommand: {sys.executable} bench/bench_dcp_convert.py {' '.join(sys.argv[1:])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
