"""Bad transforms in a plan are refused before any work: a PlanError naming the entry and the
transform, exit 2 from `ckpt apply`, nothing written, nothing large allocated."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from subproc import ckpt, python

from inspector.applying import apply
from inspector.errors import PlanError
from inspector.mapping import propose
from inspector.mapping.transforms import TRANSFORMS, check_chain, transform_from_dict
from inspector.writers.produce import ArrayValue, materialize
from inspector.writers.transformed import apply_transforms

BAD = {
    "split-index": [{"op": "split", "axis": 0, "sizes": [2, 2], "index": 5}],
    "split-sizes-null": [{"op": "split", "axis": 0, "sizes": None, "index": 0}],
    "split-sizes-wrong": [{"op": "split", "axis": 0, "sizes": [1, 1], "index": 0}],
    "transpose-perm": [{"op": "transpose", "perm": [0, 5]}],
    "transpose-perm-3d": [{"op": "transpose", "perm": [2, 0, 1]}],
    "cast-qint8": [{"op": "cast", "dtype": "qint8"}],
    "cast-complex": [{"op": "cast", "dtype": "complex64"}],
    "cast-int": [{"op": "cast", "dtype": "int32"}],
    "cast-unknown": [{"op": "cast", "dtype": "float128"}],
    "pad-huge": [{"op": "pad", "axis": 0, "after": 2_000_000_000, "init": "zeros"}],
    "pad-axis": [{"op": "pad", "axis": 7, "after": 1, "init": "zeros"}],
    "pad-target-shape": [{"op": "pad", "axis": 0, "after": 3, "init": "target"}],
    "reshape-huge": [{"op": "pad", "axis": 0, "after": 4, "init": "zeros"},
                     {"op": "reshape", "shape": [2, -1, 3]}, {"op": "slice", "axis": 9}],
    "slice-range": [{"op": "slice", "axis": 0, "start": 3, "stop": 1}],
    "weight-norm-one-input": [{"op": "weight_norm_fuse", "dim": 0}],
}


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("plans")
    torch.save({"w": torch.randn(4, 6), "b": torch.randn(6)}, d / "src.pt")
    torch.save({"w": torch.zeros(4, 6), "b": torch.zeros(6)}, d / "tgt.pt")
    plan = propose(d / "src.pt", d / "tgt.pt")
    plan.approve(list(plan.entries))
    plan.save(d / "plan.yaml")
    return d


def _bad_plan(files: Path, folder: Path, transform: list[dict[str, Any]]) -> Path:
    data = yaml.safe_load((files / "plan.yaml").read_text())
    data["entries"]["w"]["transform"] = transform
    for ref in [*data["sources"], data["target"]]:  # absolute: the plan lives elsewhere
        ref["path"] = str(files / Path(ref["path"]).name)
    plan = folder / "plan.yaml"
    plan.write_text(yaml.safe_dump(data))
    return plan


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_transform_is_a_plan_error_naming_the_entry(files: Path, tmp_path: Path,
                                                         case: str) -> None:
    plan = _bad_plan(files, tmp_path, BAD[case])
    with pytest.raises(PlanError, match=r"entries\['w'\]") as info:
        apply(plan, tmp_path / "out.pt")
    assert BAD[case][-1]["op"] in str(info.value) or "transform" in str(info.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plan.yaml"]


@pytest.mark.parametrize("case", ["split-index", "split-sizes-null", "transpose-perm",
                                  "cast-qint8", "pad-huge"])
def test_ckpt_apply_refuses_bad_transform_with_exit_2(files: Path, tmp_path: Path,
                                                     case: str) -> None:
    plan = _bad_plan(files, tmp_path, BAD[case])
    done = ckpt("apply", plan, "-o", tmp_path / "out.pt", timeout=120)
    assert done.returncode == 2, done.stderr
    assert "entries['w']" in done.stderr
    assert BAD[case][0]["op"] in done.stderr
    assert "Traceback" not in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plan.yaml"]


def test_huge_pad_is_refused_without_allocating(files: Path, tmp_path: Path) -> None:
    # The child may not grow its address space by more than 1 GiB: a pad by 2e9 rows of six
    # float32 would need 48 GB; it must be refused by the check, not by a MemoryError.
    plan = _bad_plan(files, tmp_path, BAD["pad-huge"])
    code = textwrap.dedent(f"""
        import resource, sys
        import inspector.cli, torch  # everything imported before the cap
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[0])
        cap = pages * resource.getpagesize() + (1 << 30)
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
        sys.argv = ["ckpt", "apply", {str(plan)!r}, "-o", {str(tmp_path / "out.pt")!r}]
        sys.exit(inspector.cli.main())
    """)
    done = python("-c", code, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "exceeds the limit" in done.stderr
    assert "MemoryError" not in done.stderr


# -- property: whatever the parameters, a PlanError or a chain that really runs ---------------

_ANY = st.one_of(st.none(), st.booleans(), st.text(max_size=3),
                 st.integers(-3, 8), st.integers(-(2**70), 2**70),
                 st.lists(st.integers(-2, 6), max_size=4),
                 st.lists(st.text(max_size=2), max_size=2))
_VALUES = {"dtype": st.sampled_from(["float32", "float16", "bfloat16", "int8", "bool",
                                     "complex64", "qint8", "nope"]),
           "init": st.sampled_from(["zeros", "mean", "normal", "target", "other"])}


@st.composite
def _transform(draw: st.DrawFn) -> dict[str, Any]:
    op = draw(st.sampled_from(sorted(TRANSFORMS)))
    names = [f for f in TRANSFORMS[op].__dataclass_fields__ if f != "op"]
    params = {}
    for name in draw(st.lists(st.sampled_from(names), unique=True)) if names else []:
        params[name] = draw(st.one_of(_VALUES.get(name, _ANY), _ANY))
    return {"op": op, **params}


_DTYPES = ["float32", "float16", "bfloat16", "int8", "int64", "uint8", "bool", "complex64"]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chain=st.lists(_transform(), min_size=1, max_size=3),
       shapes=st.lists(st.lists(st.integers(0, 4), max_size=3).map(tuple), min_size=1,
                       max_size=3),
       dtype=st.sampled_from(_DTYPES), target_dtype=st.sampled_from(_DTYPES))
def test_random_transforms_raise_only_plan_errors(chain: list[dict[str, Any]],
                                                   shapes: list[tuple[int, ...]], dtype: str,
                                                   target_dtype: str) -> None:
    try:
        transforms = [transform_from_dict(t, f"t[{i}]") for i, t in enumerate(chain)]
        target_shape, _ = check_chain(transforms, shapes, [dtype] * len(shapes),
                                      max_bytes=1 << 16)
        check_chain(transforms, shapes, [dtype] * len(shapes),
                    target=(target_shape, target_dtype), max_bytes=1 << 16)
    except PlanError:
        return
    # The check passed: the chain must run on real values and give what it promised.
    rng = np.random.default_rng(0)
    values = [ArrayValue(_random(rng, s, dtype), dtype) for s in shapes]
    target = ArrayValue(_random(rng, target_shape, target_dtype), target_dtype)
    out = apply_transforms(values, transforms, target)
    assert tuple(out.shape) == target_shape
    materialize(out, out.dtype, out.shape)


def _random(rng: np.random.Generator, shape: tuple[int, ...], dtype: str) -> np.ndarray:
    from inspector import dtypes

    item = dtypes.get(dtype).itemsize
    n = int(np.prod(shape, dtype=np.int64))
    raw = rng.integers(0, 2, size=n * item, dtype=np.uint8) if dtype == "bool" else \
        np.zeros(n * item, dtype=np.uint8)
    return raw.view(dtypes.numpy_view_dtype(dtypes.get(dtype))).reshape(shape)
