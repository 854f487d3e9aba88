"""ckpt-inspector: inspect, hash, diff and migrate deep-learning checkpoints safely.

    import inspector
    ckpt = inspector.open("model.nemo")          # lazy: names, shapes, byte ranges
"""

from __future__ import annotations

from ._version import __version__
from .errors import CheckpointError, PlanError, WriteError

TYPE_CHECKING = False  # not typing's: `ckpt --version` does not import typing
if TYPE_CHECKING:
    from .model import Checkpoint, Record, Storage, TensorInfo  # noqa: F401 (in _LAZY)
    from .reader import open_checkpoint as open  # noqa: F401 (in _LAZY)

# Imported on first use, so that `import inspector` (and `ckpt --version`, `ckpt ls`) stays
# light. No submodule shares a name with a function here: importing `inspector.X` binds the
# module as attribute X of the package, which would shadow the function from then on.
_LAZY = {
    "open": ("reader", "open_checkpoint"),
    "Checkpoint": ("model", "Checkpoint"),
    "Record": ("model", "Record"),
    "Storage": ("model", "Storage"),
    "TensorInfo": ("model", "TensorInfo"),
    "diff": ("diffing", "diff"),
    "hash_tensors": ("hashing", "hash_tensors"),
    "checkpoint_digest": ("hashing", "checkpoint_digest"),
    "compare_tensors": ("compare", "compare_tensors"),
    "tensor_stats": ("compare", "tensor_stats"),
    "propose": ("mapping", "propose"),
    "Plan": ("mapping", "Plan"),
    "load_rules": ("mapping", "load_rules"),
    "apply": ("applying", "apply"),
    "convert": ("converting", "convert"),
    "average": ("averaging", "average"),
    "load_into": ("live", "load_into"),
    "check": ("checking", "check"),
    "scan": ("scanning", "scan"),
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(f"{__name__}.{module}"), attr)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "CheckpointError",
    "PlanError",
    "WriteError",
    "__version__",
    *_LAZY,
]
