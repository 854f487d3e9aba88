"""Sharded DCP checkpoints written by torch on 4 ranks behave like the same tensors in one file.

The sample (tests/dcp_samples.py) is written by real `dcp.save` calls in a gloo group: DTensors
sharded along dim 0, dim 1, on a 2-D mesh, with replication, and an FSDP2 model. Every command
is run as a user runs it (a subprocess); values are checked against the full tensors torch
gathers itself.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from subproc import child_env, ckpt, python

import inspector
from inspector.hashing import digest_array

pytestmark = pytest.mark.filterwarnings("ignore:torch.distributed is disabled:UserWarning")

SAMPLES = Path(__file__).with_name("dcp_samples.py")


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dcp") / "sharded"
    done = python(SAMPLES, out, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def _reference(sample: Path) -> dict[str, torch.Tensor]:
    return torch.load(f"{sample}.ref.pt", weights_only=True)["model"]


def _numpy(t: torch.Tensor):  # type: ignore[no-untyped-def]
    return (t.view(torch.uint16) if t.dtype == torch.bfloat16 else t).contiguous().numpy()


def test_ls_shows_each_sharded_tensor_once_with_its_global_shape_and_chunks(sample):
    done = ckpt("ls", "--json", sample)
    assert done.returncode == 0, done.stderr
    listed = {t["name"]: t for t in json.loads(done.stdout)["tensors"]}
    ref = _reference(sample)
    assert set(listed) == set(ref)
    for name, t in ref.items():
        assert listed[name]["shape"] == list(t.shape), name
    chunks = listed["mix"]["chunks"]  # 2x2 mesh: four boxes tiling [6, 8]
    assert sorted((c["offsets"], c["sizes"]) for c in chunks) == [
        ([0, 0], [3, 4]), ([0, 4], [3, 4]), ([3, 0], [3, 4]), ([3, 4], [3, 4])]
    assert {c["file"] for c in chunks} == {f"__{r}_0.distcp" for r in range(4)}
    assert all(c["length"] > 0 and c["offset"] >= 0 for c in chunks)
    assert "chunks" not in listed["plain"]  # saved whole: a plain tensor read in place
    assert listed["plain"]["byte_range"] is not None


def test_digests_equal_those_of_the_same_tensors_saved_whole(sample):
    runs = [ckpt("hash", "--json", p) for p in (sample, f"{sample}.ref.pt")]
    assert all(r.returncode == 0 for r in runs), [r.stderr for r in runs]
    sharded, whole, st = (json.loads(r.stdout) for r in [*runs, ckpt(
        "hash", "--json", f"{sample}.ref.safetensors")])
    assert sharded["digest"] == whole["digest"] == st["digest"]

    def by_name(manifest):  # type: ignore[no-untyped-def]
        return {t["name"]: t for t in manifest["tensors"]}

    assert by_name(sharded) == by_name(whole) == by_name(st)
    assert len(by_name(sharded)) == 12


def test_diff_against_the_full_checkpoint_exits_0_and_finds_a_changed_value(sample, tmp_path):
    same = ckpt("diff", sample, f"{sample}.ref.pt")
    assert same.returncode == 0, same.stdout + same.stderr
    ref = torch.load(f"{sample}.ref.pt", weights_only=True)
    ref["model"]["col"][2, 7] += 1  # an element of the third rank's column block
    torch.save(ref, tmp_path / "changed.pt")
    changed = ckpt("diff", sample, tmp_path / "changed.pt")
    assert changed.returncode == 1
    assert "col" in changed.stdout


def test_values_come_back_as_the_full_tensors_every_time(sample):
    ref = _reference(sample)
    with inspector.open(sample) as c:
        for _ in range(2):  # a second call reads again, from the same sources
            for name, t in ref.items():
                assert (c.array(name) == _numpy(t)).all(), name
        digests = inspector.hash_tensors(c)
        bf = c["bf"]
        assert digests["bf"] == digest_array(_numpy(ref["bf"]), "bfloat16")
        assert bf.storage.source.assembled
        assert bf.byte_range is None


def test_row_shards_are_read_in_place_and_column_shards_in_bounded_slabs(sample):
    with inspector.open(sample) as c:
        row = c.source(c["row"].storage.source.path)
        col = c.source(c["col"].storage.source.path)
        assert row.in_place
        assert not col.in_place
        pieces = list(row.pieces())
        assert len(pieces) == 4  # one view per rank's chunk, no copy
        assert all(isinstance(p.obj, __import__("mmap").mmap) for p in pieces)
        assert b"".join(pieces) == _numpy(_reference(sample)["row"]).tobytes()


def test_check_and_scan_accept_the_sharded_checkpoint(sample):
    check = ckpt("check", sample, "--against", f"{sample}.ref.pt")
    assert check.returncode == 0, check.stdout + check.stderr
    scan = ckpt("scan", sample)
    assert scan.returncode == 0, scan.stdout + scan.stderr


def test_a_truncated_rank_file_is_an_error_naming_file_and_tensor(sample, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(sample, broken)
    rank3 = broken / "__3_0.distcp"
    rank3.write_bytes(rank3.read_bytes()[:600])
    done = ckpt("hash", broken)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    assert "__3_0.distcp" in done.stderr


def test_a_nemo_whose_model_weights_folder_is_sharded_dcp(sample, tmp_path):
    """NeMo's `torch_dist` layout: the DCP folder as `model_weights/` members of the tar, read
    in place inside the archive."""
    import tarfile

    nemo = tmp_path / "sharded.nemo"
    with tarfile.open(nemo, "w") as tar:
        tar.add(sample, arcname="./model_weights")
        config = tmp_path / "model_config.yaml"
        config.write_text("target: demo\n")
        tar.add(config, arcname="./model_config.yaml")
    with inspector.open(nemo, root="model") as c, inspector.open(f"{sample}.ref.pt") as ref:
        assert c.format == "nemo"
        assert inspector.hash_tensors(c) == inspector.hash_tensors(ref)
        assert c.files == [str(nemo.resolve())]


def test_apply_takes_the_sharded_tensors_as_source(sample, tmp_path):
    """The sharded checkpoint as the source of a migration: map, apply, and the output loaded
    back by safetensors equals the tensors torch gathered."""
    from safetensors.torch import load_file

    ref = _reference(sample)
    target = tmp_path / "target.pt"
    torch.save({k: torch.zeros_like(v) for k, v in ref.items()}, target)
    plan, out = tmp_path / "plan.yaml", tmp_path / "out.safetensors"
    assert ckpt("map", sample, target, "-o", plan).returncode == 0
    done = ckpt("apply", plan, "--accept-proposed", "--strict", "-o", out)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "verified: OK: 12 replaced" in done.stdout
    back = load_file(out)
    assert set(back) == set(ref)
    for name, t in ref.items():
        assert torch.equal(back[name], t), name


def test_convert_to_one_pt_that_torch_loads_and_runs(sample, tmp_path):
    """`ckpt convert DCP -o out.pt`: what torch's dcp_to_torch_save does, streamed; the FSDP2
    model's weights load into a plain module whose forward pass matches the reference."""
    from torch import nn

    out = tmp_path / "whole.pt"
    done = ckpt("convert", sample, "-o", out)
    assert done.returncode == 0, done.stderr
    assert "verified: OK: 12 tensors" in done.stdout
    loaded = torch.load(out, weights_only=True)
    assert loaded["step"] == 3
    ref = _reference(sample)
    for name, t in ref.items():
        assert torch.equal(loaded["model"][name], t), name

    def module(weights):  # type: ignore[no-untyped-def]
        m = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
        m.load_state_dict({k.removeprefix("fsdp."): v for k, v in weights.items()
                           if k.startswith("fsdp.")}, strict=True)
        return m

    x = torch.randn(5, 8, generator=torch.Generator().manual_seed(3))
    assert torch.equal(module(loaded["model"])(x), module(ref)(x))


def test_torchrun_hash_of_the_sharded_folder_is_ckpt_hash(sample):
    """Two ranks share the sharded tensors' hashing (inspector.distributed); rank 0 prints what
    the single-process command prints."""
    from test_distributed import torchrun

    done = torchrun("-m", "inspector.distributed", "hash", sample)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout == ckpt("hash", sample).stdout


def test_the_review_ui_writes_from_the_sharded_source(sample, tmp_path):
    """ckpt-tui with the sharded folder as source: its tree shows the logical tensors, and the
    write path (accept, confirm) gives the full tensors, verified."""
    import asyncio

    from tui_waits import settled, until

    from inspector.tui.app import create_app
    from inspector.tui.screens.write import ResultScreen

    ref = _reference(sample)
    target, out = tmp_path / "target.pt", tmp_path / "out.pt"
    torch.save({k: torch.zeros_like(v) for k, v in ref.items()}, target)
    app = create_app([str(sample)], str(target), output=out, plan_path=tmp_path / "p.yaml")

    async def drive() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            await settled(pilot)
            assert app.review.source_tree.reveal("mix")
            await pilot.press("w", "a", "enter")  # accept the proposed rows, write
            await until(pilot, lambda: isinstance(app.screen, ResultScreen), "the result")
            await settled(pilot)
            assert app.review.last_report is not None
            assert app.review.last_report.verified

    asyncio.run(drive())
    written = torch.load(out, weights_only=True)
    for name, t in ref.items():
        assert torch.equal(written[name], t), name


def _dcp_nemo(sample: Path, nemo: Path) -> Path:
    import tarfile

    with tarfile.open(nemo, "w") as tar:
        config = nemo.with_name("model_config.yaml")
        config.write_text("target: demo\n")
        tar.add(config, arcname="./model_config.yaml")
        tar.add(sample, arcname="./model_weights")
    return nemo


@pytest.mark.filterwarnings("ignore:torch.distributed is disabled:UserWarning")
def test_a_dcp_nemo_is_written_as_a_dcp_nemo_again(sample, tmp_path):
    """A .nemo whose model_weights/ is DCP, migrated (the full .pt as source): the output .nemo
    keeps its config and holds DCP weights in as many rank files, which torch's dcp.load reads."""
    import tarfile

    import torch.distributed.checkpoint as dcp

    target = _dcp_nemo(sample, tmp_path / "target.nemo")
    out = tmp_path / "out.nemo"
    done = ckpt("apply", "--source", f"{sample}.ref.pt", "--target", target,
                "--accept-proposed", "-o", out)
    assert done.returncode == 0, done.stdout + done.stderr
    with tarfile.open(out) as tar:
        names = sorted(tar.getnames())
        assert "./model_config.yaml" in names
        assert [n for n in names if n.endswith(".distcp")] == [
            f"./model_weights/__{r}_0.distcp" for r in range(4)]
        tar.extractall(tmp_path / "x", filter="data")
    ref = _reference(sample)
    back = {"model": {k: torch.zeros_like(v) for k, v in ref.items()}}
    dcp.load(back, checkpoint_id=str(tmp_path / "x" / "model_weights"), no_dist=True)
    for name, t in ref.items():
        assert torch.equal(back["model"][name], t), name
    again = ckpt("diff", out, target)
    assert again.returncode == 0, again.stdout


def test_the_compiled_metadata_columns_read_the_sample_as_the_tree_does(sample):
    """DTensor placements, FSDP2, a legacy ShardedTensor, bytes items: `ckpt ls --json` and
    `ckpt hash --json` are the same with the compiled `.metadata` columns and without them."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent / "fuzz"))
    import fuzz_pickle_fast as harness

    from inspector.formats import pickle_fast

    data = (sample / ".metadata").read_bytes()
    assert pickle_fast.read_dcp_metadata(data)[0]
    assert harness.check_dcp_columns(data)
    for command in ("ls", "hash"):
        on = ckpt(command, "--json", sample, env=child_env(**{pickle_fast.ENV: "1"}))
        off = ckpt(command, "--json", sample, env=child_env(**{pickle_fast.ENV: "0"}))
        assert on.returncode == off.returncode == 0, on.stderr
        assert on.stdout == off.stdout
