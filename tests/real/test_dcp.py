"""torch.distributed.checkpoint folders saved by `dcp.save` in one process (no process group):
listed equal to the state dict, hashed equal to the same tensors saved with torch.save."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from subproc import ckpt

import inspector

dcp = pytest.importorskip("torch.distributed.checkpoint", reason="needs torch.distributed")

pytestmark = pytest.mark.filterwarnings("ignore:torch.distributed is disabled:UserWarning")


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, object], Path, Path]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv1d(4, 8, 3), torch.nn.BatchNorm1d(8),
                                torch.nn.Linear(5, 6))
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    state["half"] = torch.randn(3, 5).to(torch.bfloat16)
    root = tmp_path_factory.mktemp("dcp")
    dcp.save(state, checkpoint_id=str(root / "dcp"))
    torch.save(state, root / "same.pt")
    return state, root / "dcp", root / "same.pt"


def test_listing_equals_state_dict(saved: tuple[dict[str, object], Path, Path]) -> None:
    state, folder, _ = saved
    ck = inspector.open(folder)
    assert sorted(ck) == sorted(state)
    for name, t in state.items():
        info = ck[name]
        assert info.shape == tuple(t.shape), name
        assert info.dtype == str(t.dtype).removeprefix("torch."), name
        raw = t.contiguous().view(-1).view(torch.uint8).numpy().tobytes()
        assert np.ascontiguousarray(ck.array(name)).tobytes() == raw, name


def test_cli_digests_equal_torch_save(saved: tuple[dict[str, object], Path, Path]) -> None:
    _, folder, pt = saved
    digests = []
    for path in (folder, pt):
        r = ckpt("hash", "--json", path)
        assert r.returncode == 0, r.stderr
        body = json.loads(r.stdout)
        digests.append((body["digest"], {t["name"]: t["digest"] for t in body["tensors"]}))
    assert digests[0] == digests[1]
    for args in (["ls", folder], ["scan", folder], ["check", folder, "--against", pt]):
        r = ckpt(*args)
        assert r.returncode == 0, (args, r.stdout, r.stderr)
