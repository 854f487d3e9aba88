"""The ranks of a distributed command and the one collective it needs: every rank's bytes.

Outside torchrun (no RANK / WORLD_SIZE in the environment, or a world size of 1) and without a
process group, the command is a world of one and torch is not imported at all. Under torchrun a
gloo group is created on the CPU (env://) and destroyed afterwards; a group the caller
initialised, or passes, is used as it is and left alone. Payloads travel as bytes in uint8
tensors, never as pickles.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from datetime import timedelta
from typing import Any, Protocol

from ..errors import RankLostError

DEFAULT_TIMEOUT = 1800.0  # seconds; torch's own default for gloo


class Comm(Protocol):
    rank: int
    size: int

    def all_gather(self, data: bytes) -> list[bytes]:
        """Every rank's `data`, in rank order (the same list on every rank)."""
        ...


class Solo:
    """A world of one process: no group, no torch."""

    rank, size = 0, 1

    def all_gather(self, data: bytes) -> list[bytes]:
        return [data]


class Gloo:
    """The ranks of a torch.distributed group (None: the default group), over its CPU backend."""

    def __init__(self, group: Any, timeout: float):
        import torch.distributed as dist

        backend = str(dist.get_backend(group))
        if "gloo" not in backend:
            raise ValueError(
                f"inspector.distributed exchanges CPU tensors and needs a gloo group, not "
                f"{backend!r}: pass group=torch.distributed.new_group(backend='gloo')")
        self.group, self.timeout = group, timedelta(seconds=timeout)
        self.rank, self.size = dist.get_rank(group), dist.get_world_size(group)

    def all_gather(self, data: bytes) -> list[bytes]:
        import torch

        sizes = self._gather(torch.tensor([len(data)], dtype=torch.int64))
        longest = max(int(s.item()) for s in sizes)
        mine = torch.zeros(max(longest, 1), dtype=torch.uint8)
        if data:
            mine[: len(data)] = torch.frombuffer(bytearray(data), dtype=torch.uint8)
        chunks = self._gather(mine)
        return [c[: int(s.item())].numpy().tobytes() for c, s in zip(chunks, sizes, strict=True)]

    def _gather(self, tensor: Any) -> list[Any]:
        import torch
        import torch.distributed as dist

        out = [torch.empty_like(tensor) for _ in range(self.size)]
        try:
            dist.all_gather(out, tensor, group=self.group, async_op=True).wait(self.timeout)
        except RuntimeError as e:  # a rank died (connection closed) or did not answer in time
            raise RankLostError(
                f"rank {self.rank}: lost the other ranks (one died, or did not answer within "
                f"{self.timeout.total_seconds():g} s): {_first_line(e)}") from None
        return out


@contextlib.contextmanager
def joined(group: Any = None, timeout: float = DEFAULT_TIMEOUT) -> Iterator[Comm]:
    """The ranks to work with: `group`, else the caller's default group, else a gloo group made
    from torchrun's environment (destroyed on the way out), else a world of one."""
    if group is not None or _default_group_exists():
        yield Gloo(group, timeout)
        return
    if "RANK" not in os.environ or int(os.environ.get("WORLD_SIZE") or 1) <= 1:
        yield Solo()
        return
    import torch.distributed as dist

    try:
        dist.init_process_group("gloo", init_method="env://", timeout=timedelta(seconds=timeout))
    except (RuntimeError, ValueError) as e:
        raise RankLostError(
            f"rank {os.environ['RANK']}: cannot join the process group at "
            f"{os.environ.get('MASTER_ADDR')}:{os.environ.get('MASTER_PORT')} within "
            f"{timeout:g} s: {_first_line(e)}") from None
    try:
        yield Gloo(None, timeout)
    finally:
        dist.destroy_process_group()


def _default_group_exists() -> bool:
    """Whether the caller initialised torch.distributed (never imports torch to find out)."""
    dist = sys.modules.get("torch.distributed")
    return dist is not None and dist.is_available() and dist.is_initialized()


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
