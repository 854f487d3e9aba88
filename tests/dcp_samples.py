"""Sharded torch.distributed.checkpoint folders, written by torch itself on several ranks.

    python tests/dcp_samples.py OUT_FOLDER [WORLD]

starts WORLD (default 4) CPU processes in a gloo group on 127.0.0.1 and has them `dcp.save` one
state dict holding DTensors laid out the ways training jobs lay them out: `Shard(0)` and
`Shard(1)` on a 1-D mesh (uneven splits too), `[Shard(0), Shard(1)]` and
`[Shard(0), Replicate()]` on a 2-D mesh, bfloat16, an FSDP2 (`fully_shard`) model's state dict,
a legacy `ShardedTensor`, a plain replicated tensor and a non-tensor value. Rank 0 also writes
the same tensors gathered whole with `torch.save` (`OUT_FOLDER.ref.pt`) and safetensors
(`OUT_FOLDER.ref.safetensors`): what a user would compare the sharded checkpoint with.
"""

from __future__ import annotations

import os
import socket
import sys

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
import torch.multiprocessing as mp
from torch import nn
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard
from torch.distributed.tensor import DTensor, Replicate, Shard, distribute_tensor


def full_tensors() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "row": torch.randn(10, 6, generator=g),  # 10 rows over 4 ranks: 3, 3, 3, 1
        "col": torch.randn(5, 12, generator=g),
        "mix": torch.randn(6, 8, generator=g),
        "rep": torch.randn(4, 3, generator=g),
        "bf": torch.randn(9, 2, generator=g).to(torch.bfloat16),
        "cube": torch.randn(4, 6, 5, generator=g),
        "plain": torch.arange(7),
        "legacy": torch.randn(8, 3, generator=g),  # a legacy ShardedTensor, 2 rows per rank
    }


def _model() -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))


def _run(rank: int, world: int, out: str, port: int) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    full = full_tensors()
    m1 = init_device_mesh("cpu", (world,))
    m2 = init_device_mesh("cpu", (2, world // 2))
    weights = {
        "row": distribute_tensor(full["row"], m1, [Shard(0)]),
        "col": distribute_tensor(full["col"], m1, [Shard(1)]),
        "mix": distribute_tensor(full["mix"], m2, [Shard(0), Shard(1)]),
        "rep": distribute_tensor(full["rep"], m2, [Shard(0), Replicate()]),
        "bf": distribute_tensor(full["bf"], m1, [Shard(0)]),
        "cube": distribute_tensor(full["cube"], m2, [Shard(2), Shard(1)]),
        "plain": full["plain"],
        "legacy": _legacy_sharded(full["legacy"], rank, world),
    }
    model = fully_shard(_model(), mesh=m1)
    fsdp = {f"fsdp.{k}": v for k, v in model.state_dict().items()}
    dcp.save({"model": {**weights, **fsdp}, "step": 3}, checkpoint_id=out)
    whole = {k: v.full_tensor() if isinstance(v, DTensor) else v for k, v in fsdp.items()}
    if rank == 0:
        ref = {**full, **whole}
        torch.save({"model": ref, "step": 3}, out + ".ref.pt")
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in ref.items()}, out + ".ref.safetensors")
    dist.barrier()  # rank 0's reference files are written
    # Skip gloo's teardown: with DeviceMeshes on CPU it sometimes aborts a rank at exit
    # ("terminate called without an active exception") after all the work has passed.
    os._exit(0)


def _legacy_sharded(full: torch.Tensor, rank: int, world: int) -> object:
    """The same tensor as a legacy `ShardedTensor` (torch.distributed._shard), rows by rank."""
    from torch.distributed._shard.metadata import ShardMetadata
    from torch.distributed._shard.sharded_tensor import Shard as LegacyShard
    from torch.distributed._shard.sharded_tensor import init_from_local_shards

    rows = full.shape[0] // world
    local = full[rank * rows : (rank + 1) * rows].clone()
    meta = ShardMetadata(shard_offsets=[rank * rows, 0], shard_sizes=list(local.shape),
                         placement=f"rank:{rank}/cpu")
    return init_from_local_shards([LegacyShard(local, meta)], list(full.shape))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write(out: str, world: int = 4) -> None:
    mp.spawn(_run, args=(world, out, _free_port()), nprocs=world)


if __name__ == "__main__":
    write(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 4)
