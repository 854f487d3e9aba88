"""DCP output (`ckpt apply --format dcp [--shards N]`), read back by torch.distributed.checkpoint.

The outputs are written by the real command line; torch loads them on one process and, under
`torchrun --nproc-per-node 2` (gloo), into DTensors sharded Shard(0) on a 1-D mesh.
"""

from __future__ import annotations

import errno
import pickle
import shutil
import socket
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed.checkpoint as dcp
from subproc import ckpt
from torch import nn

import inspector
from inspector.errors import WriteError
from inspector.hashing import hash_tensors
from inspector.writers import dcp as dcp_writer

pytestmark = pytest.mark.filterwarnings("ignore:torch.distributed is disabled:UserWarning")


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(6, 10)  # weight (10, 6): two chunks of 5 rows
        self.fc2 = nn.Linear(10, 5)  # weight (5, 10): 3 + 2 rows, as torch.chunk splits
        self.scale = nn.Parameter(torch.rand(1, 5) + 0.5)  # one row: written whole
        self.register_buffer("count", torch.tensor(2.0))  # 0-d: written whole

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x))) * self.scale * self.count


def _checkpoint(seed: int) -> dict[str, Any]:
    torch.manual_seed(seed)
    return {"state_dict": Tiny().state_dict(), "epoch": 3 + seed,
            "hyper": {"lr": 0.1, "sizes": [6, 10, 5]}}


@pytest.fixture(scope="module")
def outputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """source.pt (trained), init.pt (the target), and the DCP outputs of the same apply."""
    d = tmp_path_factory.mktemp("dcp_out")
    torch.save(_checkpoint(1), d / "source.pt")
    torch.save(_checkpoint(0), d / "init.pt")
    found = {"dir": d, "source": d / "source.pt", "init": d / "init.pt"}
    for name, extra in (("one", ["--format", "dcp"]),
                        ("two", ["--format", "dcp", "--shards", "2"])):
        r = ckpt("apply", "--source", d / "source.pt", "--target", d / "init.pt",
                 "--accept-proposed", "-o", d / name, *extra)
        assert r.returncode == 0, r.stderr
        assert "verified: OK" in r.stdout
        found[name] = d / name
    return found


def _empty_like(src: dict[str, Any]) -> dict[str, Any]:
    return {"state_dict": {k: torch.zeros_like(v) for k, v in src["state_dict"].items()},
            "epoch": 0, "hyper": {"lr": 0.0, "sizes": []}}


def _module(state: dict[str, torch.Tensor]) -> Tiny:
    m = Tiny()
    m.load_state_dict(state)
    return m


@pytest.mark.parametrize("name", ["one", "two"])
def test_torch_loads_the_output_on_one_process(outputs, name):
    src = torch.load(outputs["source"], weights_only=True)
    sd = _empty_like(src)
    dcp.load(sd, checkpoint_id=outputs[name], no_dist=True)
    for k, v in src["state_dict"].items():
        assert torch.equal(sd["state_dict"][k], v), k
    # the target's non-tensor entries are kept (the target is init.pt: epoch 3)
    assert sd["epoch"] == 3
    assert sd["hyper"] == {"lr": 0.1, "sizes": [6, 10, 5]}
    x = torch.randn(4, 6)
    assert torch.equal(_module(sd["state_dict"])(x), _module(src["state_dict"])(x))


_RANKS = """
    import os, sys
    import torch, torch.distributed as dist, torch.distributed.checkpoint as dcp
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import DTensor, Shard, distribute_tensor

    dist.init_process_group("gloo")
    rank, mesh = dist.get_rank(), init_device_mesh("cpu", (2,))
    src = torch.load(sys.argv[1], weights_only=True)["state_dict"]
    for folder in sys.argv[2:]:
        sd = {"state_dict": {k: distribute_tensor(torch.zeros_like(v), mesh, [Shard(0)])
                             if v.dim() else torch.zeros_like(v) for k, v in src.items()},
              "epoch": 0}
        dcp.load(sd, checkpoint_id=folder)
        assert sd["epoch"] == 3, sd["epoch"]
        for k, v in src.items():
            got = sd["state_dict"][k]
            if v.dim():
                assert isinstance(got, DTensor) and got.placements == (Shard(0),), k
                parts = torch.chunk(v, 2)
                mine = parts[rank] if rank < len(parts) else v[:0]
                assert torch.equal(got.to_local(), mine), (folder, k, rank)
                got = got.full_tensor()
            assert torch.equal(got, v), (folder, k)
        print(f"rank {rank}: {folder} ok", flush=True)
    dist.barrier()  # both ranks are done with every collective
    # Skip gloo's teardown: with a DeviceMesh on CPU it sometimes aborts a rank at exit
    # ("terminate called without an active exception") after all the work has passed.
    sys.stdout.flush()
    os._exit(0)
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_torchrun_two_ranks_load_dtensors(outputs, tmp_path):
    script = tmp_path / "ranks.py"
    script.write_text(textwrap.dedent(_RANKS))
    cmd = ["timeout", "120", sys.executable, "-m", "torch.distributed.run",
           "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
           "--master-port", str(_free_port()), str(script), str(outputs["source"]),
           str(outputs["one"]), str(outputs["two"])]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path,
                       env={**_env(), "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stdout + r.stderr
    for rank in (0, 1):
        for name in ("one", "two"):
            assert f"rank {rank}: {outputs[name]} ok" in r.stdout


def _env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def test_layout_matches_torch_chunk_and_balances_whole_tensors(outputs):
    meta = pickle.loads((outputs["two"] / ".metadata").read_bytes())
    where = {(i.fqn, tuple(i.offset) if i.offset is not None else None): s.relative_path
             for i, s in meta.storage_data.items()}
    fc2 = meta.state_dict_metadata["state_dict.fc2.weight"]
    assert [(tuple(c.offsets), tuple(c.sizes)) for c in fc2.chunks] == [((0, 0), (3, 10)),
                                                                        ((3, 0), (2, 10))]
    assert where[("state_dict.fc1.weight", (0, 0))] == "__0_0.distcp"
    assert where[("state_dict.fc1.weight", (5, 0))] == "__1_0.distcp"
    assert len(meta.state_dict_metadata["state_dict.scale"].chunks) == 1
    assert where[("epoch", None)] == where[("hyper.sizes", None)] == "__0_0.distcp"
    sizes = [(outputs["two"] / f"__{r}_0.distcp").stat().st_size for r in (0, 1)]
    assert abs(sizes[0] - sizes[1]) <= 2 * 1600  # whole tensors go to the lighter file
    assert meta.planner_data["state_dict.fc1.weight"] == ("state_dict", "fc1.weight")


@pytest.mark.parametrize("n", [1, 2, 3, 4])
@pytest.mark.parametrize("rows", [0, 1, 2, 3, 5, 7, 8, 9])
def test_row_blocks_are_torch_chunk(rows, n):
    blocks = dcp_writer.row_blocks((rows, 2), n)
    if rows >= n > 1:
        assert [r1 - r0 for r0, r1 in blocks] == [c.shape[0] for c in torch.chunk(
            torch.empty(rows, 2), n)]
    else:
        assert blocks == [(0, rows)]


def test_same_layout_as_torch_dcp_save(tmp_path):
    """One process: our .metadata holds what dcp.save's does, with the same byte ranges."""
    sd = _checkpoint(2)
    torch.save(sd, tmp_path / "c.pt")
    dcp.save(sd, checkpoint_id=tmp_path / "torch", no_dist=True)
    r = ckpt("apply", "--source", tmp_path / "c.pt", "--target", tmp_path / "c.pt",
             "--accept-proposed", "--format", "dcp", "-o", tmp_path / "ours")
    assert r.returncode == 0, r.stderr
    theirs = pickle.loads((tmp_path / "torch" / ".metadata").read_bytes())
    ours = pickle.loads((tmp_path / "ours" / ".metadata").read_bytes())
    assert ours.state_dict_metadata == theirs.state_dict_metadata
    assert ours.planner_data == theirs.planner_data
    assert list(ours.storage_data.items()) == list(theirs.storage_data.items())
    assert ours.version == theirs.version


@pytest.mark.parametrize("name", ["one", "two"])
def test_our_reader_reads_the_output_back(outputs, name):
    """A tensor split over rank files (--shards 2) opens as one logical tensor, whose digest is
    the source tensor's."""
    out, src = inspector.open(outputs[name]), inspector.open(outputs["source"])
    assert out.format == "dcp"
    assert out.root == ("state_dict",)
    assert sorted(out.tensors) == sorted(src.tensors)
    assert hash_tensors(out, list(out.tensors)) == hash_tensors(src, list(out.tensors))
    assert out.tree["epoch"] == 3


def test_dcp_target_gives_dcp_output_by_default(outputs, tmp_path):
    r = ckpt("apply", "--source", outputs["source"], "--target", outputs["one"],
             "--accept-proposed", "-o", tmp_path / "again")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "again" / ".metadata").is_file()
    assert inspector.open(tmp_path / "again").format == "dcp"


def test_existing_dcp_folder_as_output_picks_dcp(outputs, tmp_path):
    dest = tmp_path / "existing"
    shutil.copytree(outputs["one"], dest)
    before = (dest / ".metadata").read_bytes()
    r = ckpt("apply", "--source", outputs["source"], "--target", outputs["init"],
             "--accept-proposed", "-o", dest)
    assert r.returncode == 0, r.stderr
    assert (dest / ".metadata").read_bytes() != before  # a new save id: written again
    assert sorted(p.name for p in dest.iterdir()) == [".metadata", "__0_0.distcp"]


def test_refuses_to_overwrite_an_input(outputs):
    before = {p.name: p.read_bytes() for p in outputs["one"].iterdir()}
    r = ckpt("apply", "--source", outputs["source"], "--target", outputs["one"],
             "--accept-proposed", "-o", outputs["one"])
    assert r.returncode == 2
    assert "refusing to overwrite an input" in r.stderr
    assert "Traceback" not in r.stderr
    assert {p.name: p.read_bytes() for p in outputs["one"].iterdir()} == before


def test_shards_needs_dcp_output(outputs, tmp_path):
    r = ckpt("apply", "--source", outputs["source"], "--target", outputs["init"],
             "--accept-proposed", "--shards", "2", "-o", tmp_path / "x.pt")
    assert r.returncode == 2
    assert "--shards applies to DCP output" in r.stderr
    assert not (tmp_path / "x.pt").exists()


def test_failure_mid_write_leaves_no_folder(outputs, tmp_path, monkeypatch):
    calls = []

    def fail_fourth_zip(fd, base, plan, jobs):
        calls.append(base)
        if len(calls) > 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(fd, base, plan, jobs)

    real = dcp_writer.write_records
    monkeypatch.setattr(dcp_writer, "write_records", fail_fourth_zip)
    with pytest.raises(WriteError, match="no space left"):
        inspector.apply(_plan(outputs), tmp_path / "out", accept_proposed=True,
                        format="dcp", shards=2)
    assert len(calls) > 3
    assert list(tmp_path.iterdir()) == []


def _plan(outputs: dict[str, Path]) -> Any:
    from inspector.mapping.propose import propose

    return propose(inspector.open(outputs["source"]), inspector.open(outputs["init"]), [])


def test_tensor_inside_a_non_tensor_entry_is_refused(tmp_path):
    t = torch.ones(2)
    torch.save({"state_dict": {"w": t}, "pair": (torch.zeros(2), 1)}, tmp_path / "c.pt")
    r = ckpt("apply", "--source", tmp_path / "c.pt", "--target", tmp_path / "c.pt",
             "--accept-proposed", "--format", "dcp", "-o", tmp_path / "out")
    assert r.returncode == 2
    assert "'pair': a tensor inside a non-tensor entry" in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pt"]


def test_a_chunk_with_the_wrong_rows_fails_verification(outputs, tmp_path, monkeypatch):
    real = dcp_writer.take_rows

    def first_rows(value, r0, r1):
        return real(value, 0, r1 - r0)  # every chunk gets the tensor's first rows

    monkeypatch.setattr(dcp_writer, "take_rows", first_rows)
    with pytest.raises(WriteError, match="verification failed, nothing written"):
        inspector.apply(_plan(outputs), tmp_path / "out", accept_proposed=True,
                        format="dcp", shards=2)
    assert list(tmp_path.iterdir()) == []


def test_every_tensor_split_is_verified(tmp_path):
    """No tensor left whole: the weights root is still the target's, every chunk is checked."""
    sd = {"state_dict": {"a": torch.randn(4, 3), "b": torch.randn(2)}, "epoch": 1}
    torch.save(sd, tmp_path / "c.pt")
    c = inspector.open(tmp_path / "c.pt")
    from inspector.mapping.propose import propose

    seen: list[tuple[int, int]] = []
    report = inspector.apply(propose(c, c, []), tmp_path / "out", accept_proposed=True,
                             format="dcp", shards=2, progress=lambda d, t: seen.append((d, t)))
    assert seen[-1] == (14 * 4, 14 * 4)  # progress over both rank files ends at the total
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert report.verification is not None
    assert report.verification.ok
    assert report.verification.checked == 2
    back = {"state_dict": {k: torch.zeros_like(v) for k, v in sd["state_dict"].items()}}
    dcp.load(back, checkpoint_id=tmp_path / "out", no_dist=True)
    assert all(torch.equal(back["state_dict"][k], v) for k, v in sd["state_dict"].items())


def test_tui_write_path_keeps_a_dcp_target_dcp(outputs, tmp_path):
    from inspector.mapping.propose import propose
    from inspector.tui.config import default_output
    from inspector.tui.jobs import write

    target = tmp_path / "run_dcp"
    shutil.copytree(outputs["one"], target)
    out = default_output(target)
    assert out is not None
    plan = propose(inspector.open(outputs["source"]), inspector.open(target), [])
    done = write(plan, out, True, lambda a, b: None)
    assert done.verified, done.verification
    assert inspector.open(out).format == "dcp"


@pytest.mark.filterwarnings("ignore:ComplexHalf support is experimental:UserWarning")
def test_every_dtype_and_empty_and_0d_tensors_load_back(tmp_path):
    from torch_helpers import all_dtypes_case

    sd = all_dtypes_case(False)
    torch.save(sd, tmp_path / "c.pt")
    c = inspector.open(tmp_path / "c.pt")
    from inspector.mapping.propose import propose

    inspector.apply(propose(c, c, []), tmp_path / "out", accept_proposed=True, format="dcp",
                    shards=3)
    back = {k: torch.empty_like(v) for k, v in sd.items()}
    dcp.load(back, checkpoint_id=tmp_path / "out", no_dist=True)
    for k, v in sd.items():
        assert back[k].dtype == v.dtype, k
        assert back[k].shape == v.shape, k
        assert back[k].contiguous().view(-1).view(torch.uint8).tolist() == \
            v.contiguous().view(-1).view(torch.uint8).tolist(), k


@pytest.mark.filterwarnings("ignore:ComplexHalf support is experimental:UserWarning")
def test_dtypes_without_typed_storage_pickle_as_torch_save(tmp_path):
    """float8, uint16-64 and complex32 have no typed storage class in torch: torch.save writes
    them with `_rebuild_tensor_v3` and an untyped storage, and so does our pickler (the chunks of
    a DCP output and every .pt output), byte for byte."""
    import zipfile

    from inspector.writers import torch_zip
    from inspector.writers.build import build_output

    sd = {"a": torch.zeros(3, dtype=torch.float8_e4m3fn), "b": torch.ones(2, dtype=torch.uint16),
          "c": torch.zeros(2, dtype=torch.complex32), "d": torch.ones(2),
          "p": nn.Parameter(torch.ones(2, dtype=torch.float8_e5m2), requires_grad=False)}
    torch.save(sd, tmp_path / "t.pt")
    torch_zip.write(build_output(inspector.open(tmp_path / "t.pt"), {}, set()), tmp_path / "o.pt")
    with zipfile.ZipFile(tmp_path / "t.pt") as a, zipfile.ZipFile(tmp_path / "o.pt") as b:
        assert b.read("t/data.pkl") == a.read("t/data.pkl")
    back = torch.load(tmp_path / "o.pt", weights_only=True)
    for k, v in sd.items():
        assert back[k].dtype == v.dtype
        assert torch.equal(back[k].view(torch.uint8), v.view(torch.uint8))


SAMPLES = Path(__file__).with_name("dcp_samples.py")


@pytest.mark.slow
def test_torch_sharded_dcp_target_rewritten_as_dcp(tmp_path):
    """A checkpoint torch saved on 2 ranks (DTensors Shard(0)/Shard(1), 2-D mesh, FSDP2) as the
    target: the output is DCP again (its own format), re-split by --shards 2, and loads into the
    tensors torch gathered itself."""
    from subproc import python

    sample = tmp_path / "sharded"
    done = python(SAMPLES, sample, "2", timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    out = tmp_path / "out"
    r = ckpt("apply", "--source", f"{sample}.ref.pt", "--target", sample, "--accept-proposed",
             "--shards", "2", "-o", out)
    assert r.returncode == 0, r.stderr
    assert "verified: OK" in r.stdout
    ref = torch.load(f"{sample}.ref.pt", weights_only=True)["model"]
    back = {"model": {k: torch.zeros_like(v) for k, v in ref.items()}, "step": 0}
    dcp.load(back, checkpoint_id=out, no_dist=True)
    assert back["step"] == 3
    for k, v in ref.items():
        assert torch.equal(back["model"][k], v), k
    a, b = inspector.open(out), inspector.open(sample)
    assert hash_tensors(a, list(a.tensors)) == hash_tensors(b, list(a.tensors))
