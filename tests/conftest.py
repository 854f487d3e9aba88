"""Shared test setup. Fixture files are built by the tests themselves (torch.save, safetensors,
tarfile) under pytest's tmp_path; nothing reaches outside the repository."""

from __future__ import annotations

# The TUI tests' shared fixtures (`files`, `state`), found by every test module.
pytest_plugins = ["tui_fixtures"]
