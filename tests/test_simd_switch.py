"""INSPECTOR_DISABLE_SIMD is one rule for every fast path of the core (csrc/simd.hpp): unset,
empty, "0", "false", "no" or "off" leave them on; any other value turns all of them off (the
xxh3 stripe loop, CRC-32's carry-less multiply, the AVX2 kernels of compare and copy_cast).
The switch is read once per process, so each value is tried in a child process."""

from __future__ import annotations

import json

import pytest
from subproc import child_env, python

_PROBE = (
    "import json; from inspector._native import core; "
    "print(json.dumps([core._numeric_simd(), core._crc32_has_pclmul(), core.xxh3_kernel]))"
)
ALL_OFF = [False, False, "scalar"]


def fast_paths(value: str | None) -> list[object]:
    """[compare/copy AVX2, CRC-32 pclmul, xxh3 kernel] in a child with the variable at `value`."""
    env = child_env()
    for name in ("INSPECTOR_DISABLE_SIMD", "INSPECTOR_XXH3_KERNEL"):
        env.pop(name, None)
    if value is not None:
        env["INSPECTOR_DISABLE_SIMD"] = value
    result: list[object] = json.loads(python("-c", _PROBE, env=env, check=True).stdout)
    return result


@pytest.fixture(scope="module")
def cpu_default() -> list[object]:
    default = fast_paths(None)
    if default == ALL_OFF:
        pytest.skip("this CPU has none of the fast paths: nothing to turn off")
    return default


@pytest.mark.parametrize("value", ["1", "yes", "true", "On", "2"])
def test_any_other_value_turns_every_fast_path_off(value: str, cpu_default: list[object]) -> None:
    assert fast_paths(value) == ALL_OFF


@pytest.mark.parametrize("value", ["", "0", "false", "no", "OFF"])
def test_empty_or_a_no_leaves_the_fast_paths_on(value: str, cpu_default: list[object]) -> None:
    assert fast_paths(value) == cpu_default
