"""Shared test setup. Fixture files are built by the tests themselves (torch.save, safetensors,
tarfile) under pytest's tmp_path; nothing reaches outside the repository."""

from __future__ import annotations

import os

# Tests must not depend on the machine's thread count or colour settings.
os.environ.setdefault("NO_COLOR", "1")
