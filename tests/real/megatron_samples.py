"""A Megatron-core `torch_dist` checkpoint, written by megatron-core itself on 2 CPU ranks.

    python tests/real/megatron_samples.py OUT_FOLDER

`megatron.core.dist_checkpointing.save` of sharded tensors the way Megatron's layers declare
them (`ShardedTensor.from_rank_offsets`): a column-parallel weight split along dim 0, a
row-parallel one along dim 1, a replicated norm. Rank 0 also writes the same tensors whole with
`torch.save` (`OUT_FOLDER.ref.pt`). Megatron-core is meant for GPUs: on CPU two of its calls
that only synchronise or place a flag on the device are pointed at the CPU (test data only).
"""

from __future__ import annotations

import os
import socket
import sys

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

WORLD = 2


def full_tensors() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(5)
    return {
        "decoder.layers.0.mlp.linear_fc1.weight": torch.randn(8, 6, generator=g),
        "decoder.layers.0.mlp.linear_fc2.weight": torch.randn(6, 8, generator=g),
        "decoder.final_layernorm.weight": torch.randn(6, generator=g),
    }


def _run(rank: int, out: str, port: int) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    torch.cuda.synchronize = lambda *a, **k: None  # type: ignore[assignment]
    torch.cuda.current_device = lambda: "cpu"  # type: ignore[assignment,return-value]
    from megatron.core import dist_checkpointing
    from megatron.core.dist_checkpointing import ShardedTensor

    full = full_tensors()
    fc1, fc2, norm = full.values()
    keys = list(full)
    state = {
        "fc1": ShardedTensor.from_rank_offsets(keys[0], fc1.chunk(WORLD, 0)[rank].clone(),
                                               (0, rank, WORLD)),
        "fc2": ShardedTensor.from_rank_offsets(keys[1], fc2.chunk(WORLD, 1)[rank].clone(),
                                               (1, rank, WORLD)),
        "norm": ShardedTensor.from_rank_offsets(keys[2], norm.clone(), replica_id=rank),
    }
    dist_checkpointing.save(state, out)
    if rank == 0:
        torch.save(full, out + ".ref.pt")
    dist.destroy_process_group()


def main(out: str) -> None:
    os.makedirs(out, exist_ok=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_run, args=(out, port), nprocs=WORLD)


if __name__ == "__main__":
    main(sys.argv[1])
