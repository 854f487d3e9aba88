"""Megatron-core `torch_dist` checkpoints (DCP written by megatron-core's own planner on 2
ranks): each sharded tensor lists, hashes and diffs as the full tensor.

megatron-core lives in its own folder (`INSPECTOR_MEGATRON_SITE`, made by `.ci/run` with
`pip install --target`), put on the path of the child that writes the sample only, so that the
NeMo of this tier never sees it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from subproc import child_env, ckpt, python

import inspector

SITE = os.environ.get("INSPECTOR_MEGATRON_SITE")


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not SITE or not (Path(SITE) / "megatron" / "core").is_dir():
        pytest.skip("needs megatron-core in INSPECTOR_MEGATRON_SITE (see .ci/run)")
    out = tmp_path_factory.mktemp("megatron") / "torch_dist"
    env = child_env()
    env["PYTHONPATH"] = SITE + os.pathsep + env["PYTHONPATH"]
    done = python(Path(__file__).with_name("megatron_samples.py"), out, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (out / "metadata.json").is_file()  # megatron's own marker: a complete save
    return out


def test_sharded_tensors_are_the_full_tensors(sample: Path) -> None:
    ref = torch.load(f"{sample}.ref.pt", weights_only=True)
    with inspector.open(sample) as c:
        assert sorted(c) == sorted(ref)
        for name, t in ref.items():
            assert (c.array(name) == t.numpy()).all(), name


def test_hash_and_diff_equal_the_full_checkpoint(sample: Path) -> None:
    ours, whole = (json.loads(ckpt("hash", "--json", p).stdout) for p in (sample,
                                                                           f"{sample}.ref.pt"))
    assert ours["digest"] == whole["digest"]
    done = ckpt("diff", sample, f"{sample}.ref.pt")
    assert done.returncode == 0, done.stdout + done.stderr
