"""Fixtures the TUI tests share: the char -> BPE RNNT pair as files written by torch.save, and a
review state over the same pair in memory. A pytest plugin of tests/conftest.py: every test
module sees them; a module's own fixture of the same name takes precedence there."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import inspector
from inspector.demo import RNNTConfig, random_state, rnnt_shapes
from inspector.mapping.propose import propose
from inspector.tui.state import ReviewState


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    """A char-vocabulary source and a BPE target written by torch.save."""
    src = {k: torch.from_numpy(v) for k, v in random_state(rnnt_shapes(RNNTConfig(28)), 1).items()}
    tgt = {k: torch.from_numpy(v) for k, v in random_state(rnnt_shapes(RNNTConfig(256)), 2).items()}
    torch.save({"epoch": 3, "state_dict": src}, tmp_path / "char.pt")
    torch.save(tgt, tmp_path / "bpe.pt")
    return tmp_path / "char.pt", tmp_path / "bpe.pt"


@pytest.fixture
def state() -> ReviewState:
    """The proposed review of the same pair, opened from memory."""
    src = inspector.open(random_state(rnnt_shapes(RNNTConfig(vocab_size=28)), 1))
    tgt = inspector.open(random_state(rnnt_shapes(RNNTConfig(vocab_size=256)), 2))
    plan = propose(src, tgt)
    return ReviewState(plan, {plan.sources[0].label: src}, tgt)
