"""ckpt-inspector: inspect, hash, diff and migrate deep-learning checkpoints safely.

    import inspector
    ckpt = inspector.open("model.nemo")          # lazy: names, shapes, byte ranges
"""

from __future__ import annotations

from .errors import CheckpointError, PlanError, WriteError
from .model import Checkpoint, Record, Storage, TensorInfo
from .reader import open_checkpoint as open

__version__ = "0.1.0"

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "PlanError",
    "Record",
    "Storage",
    "TensorInfo",
    "WriteError",
    "__version__",
    "open",
]
