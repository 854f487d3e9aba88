"""Helpers the real-library tests share (a module, not conftest.py: tests/ has several
conftest.py files, and `from conftest import` would pick whichever was imported last)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


def state_arrays(module: Any) -> dict[str, np.ndarray]:
    """A live module's state dict as numpy arrays (name -> array)."""
    return {k: v.detach().cpu().numpy() for k, v in module.state_dict().items()}


@dataclass
class NemoModels:
    char: Any  # EncDecRNNTModel, eval mode
    bpe: Any  # EncDecRNNTBPEModel
    ctc: Any  # EncDecCTCModelBPE
    char_path: Path
    bpe_path: Path
    ctc_path: Path
