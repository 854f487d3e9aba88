"""Shared test setup. Fixture files are built by the tests themselves (torch.save, safetensors,
tarfile) under pytest's tmp_path; nothing reaches outside the repository."""

from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest

# The TUI tests' shared fixtures (`files`, `state`), found by every test module.
pytest_plugins = ["tui_fixtures"]


@pytest.fixture
def ctrl_c_raises() -> Iterator[None]:
    """Ctrl-C raises KeyboardInterrupt in this process while the test runs: a test runner
    started in the background by a non-interactive shell inherits SIGINT ignored, and Python then
    installs no KeyboardInterrupt handler, so the Ctrl-C under test would never arrive (children:
    subproc.CTRL_C_RAISES)."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, before)
