"""pytest helpers: `assert_compatible(model_or_ckpt, against=...)` in a test suite.

    from inspector.testing import assert_compatible

    def test_new_config_fits_pretrained_encoder():
        assert_compatible(build_model(cfg), against="pretrained.nemo", require=["encoder.*"])

On failure the AssertionError lists every violation, layers folded (`layers.{0..15}`).
"""

from __future__ import annotations

from typing import Any

from .checking import CheckResult, check
from .findings import group_findings


def assert_compatible(ckpt: Any, **kwargs: Any) -> CheckResult:
    """`inspector.check(ckpt, **kwargs)`, raising AssertionError unless it passes."""
    result = check(ckpt, **kwargs)
    if not result.passed:
        raise AssertionError(failure_message(result))
    return result


def failure_message(result: CheckResult) -> str:
    lines = [f"{result.targets[0]} is not compatible ({len(result.failing)} violations):"]
    for g in group_findings(result.failing):
        where = g.key_text or g.file
        lines.append(f"  {where}: {g.message} [{g.code}]")
    return "\n".join(lines)
