"""Hash, verify and diff checkpoints over the ranks of a torch.distributed job (gloo, CPU).

    import inspector.distributed
    manifest = inspector.distributed.hash("ckpt/step_1000")   # under torchrun, after dcp.save

`python -m inspector.distributed hash|verify|diff ...` under torchrun prints on rank 0 what
`ckpt hash` / `ckpt diff` print. See docs/distributed.md. torch is imported only when there are
several ranks (and only by `inspector.distributed.group`).
"""

from __future__ import annotations

from .api import Mismatch, VerifyResult, diff, hash, verify
from .assign import assign, file_owners
from .group import DEFAULT_TIMEOUT

__all__ = [
    "DEFAULT_TIMEOUT",
    "Mismatch",
    "VerifyResult",
    "assign",
    "diff",
    "file_owners",
    "hash",
    "verify",
]
