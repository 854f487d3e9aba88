"""`inspector.distributed` (issue 13): hash, verify and diff over the ranks of a torch.distributed
job. Real `torchrun --nproc-per-node 2` runs (gloo on 127.0.0.1, a free port, a timeout on
each) on an HF sharded safetensors folder, a .pt and a DCP folder written by `dcp.save`; rank 0
must print what `ckpt hash` / `ckpt diff` print, byte for byte, and failures on one rank must end
every rank with a message naming the rank and the file. The work split is a pure function,
tested with hypothesis.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import textwrap
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from safetensors.numpy import save_file
from subproc import child_env, ckpt, popen, python

import inspector
import inspector.distributed as dist_api
from inspector.distributed import assign, file_owners
from inspector.errors import CheckpointError

RUN_TIMEOUT = 60  # seconds per torchrun; the commands get --timeout 30
pytestmark = pytest.mark.filterwarnings("ignore:torch.distributed is disabled:UserWarning")


# -- files -----------------------------------------------------------------------------------------
def _hf_sharded(folder: Path, seed: int, n_shards: int = 3) -> Path:
    """Shards named like transformers' `save_pretrained`, plus the index it writes."""
    folder.mkdir()
    rng = np.random.default_rng(seed)
    sd = {f"layers.{i}.weight": rng.standard_normal((16, 8 + i), dtype=np.float32)
          for i in range(6)}
    sd["head.bias"] = np.arange(5, dtype=np.int64)
    weight_map = {}
    names = list(sd)
    for s in range(n_shards):
        shard = f"model-{s + 1:05d}-of-{n_shards:05d}.safetensors"
        part = {k: sd[k] for k in names[s::n_shards]}
        save_file(part, str(folder / shard), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(part, shard))
    index = {"metadata": {"total_size": sum(a.nbytes for a in sd.values())},
             "weight_map": dict(sorted(weight_map.items()))}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    return folder


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    torch = pytest.importorskip("torch")
    import torch.distributed.checkpoint as dcp

    root = tmp_path_factory.mktemp("dist")
    g = torch.Generator().manual_seed(3)
    state = {f"enc.{i}.w": torch.randn(12, 4 + i, generator=g) for i in range(5)}
    state["enc.scale"] = torch.randn(3, generator=g).to(torch.bfloat16)
    torch.save(state, root / "model.pt")
    dcp.save({"model": state}, checkpoint_id=str(root / "dcp"))
    hf = _hf_sharded(root / "hf", seed=0)
    other = _hf_sharded(root / "hf_other", seed=0)  # the same, but for one tensor's values
    _rewrite_one_tensor(other)
    return {"hf": hf, "hf_other": other, "pt": root / "model.pt", "dcp": root / "dcp",
            "root": root}


def _rewrite_one_tensor(folder: Path) -> None:
    from safetensors.numpy import load_file

    shard = folder / "model-00002-of-00003.safetensors"
    sd = load_file(str(shard))
    sd["layers.1.weight"] = sd["layers.1.weight"] + 1
    save_file(sd, str(shard), metadata={"format": "pt"})


# -- running ---------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def torchrun(*args: str | Path, nproc: int = 2) -> subprocess.CompletedProcess[str]:
    """`torchrun --nproc-per-node N ARGS` on 127.0.0.1 (through `python -m torch.distributed.run`,
    so that the child imports the tests' `inspector`)."""
    return python("-m", "torch.distributed.run", "--nproc-per-node", str(nproc),
                  "--master-addr", "127.0.0.1", "--master-port", str(_free_port()),
                  *map(str, args), timeout=RUN_TIMEOUT, env=_env())


def _env(**extra: str) -> dict[str, str]:
    env = child_env(GLOO_SOCKET_IFNAME="lo", OMP_NUM_THREADS="1")
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR",
                 "MASTER_PORT"):
        env.pop(name, None)
    return {**env, **extra}


def _worker_codes(stderr: str) -> dict[int, int]:
    """rank -> exit code of each worker that failed, from torchrun's report (torchrun itself
    exits 1 when any worker exits non-zero, whatever the worker's code)."""
    found = re.findall(r"rank\s*: (\d+) \(local_rank: \d+\)\n\s*exitcode\s*: (-?\d+)", stderr)
    return {int(r): int(c) for r, c in found}


def _exited_with(stderr: str, code: int) -> bool:
    """Whether the workers exited with `code`: the first one to exit does; torchrun's agent then
    stops the others, so they exit with `code` or by its SIGTERM (-15)."""
    codes = set(_worker_codes(stderr).values())
    return code in codes and codes <= {code, -15}


def by_hand(*args: str | Path) -> list[tuple[int, str, str]]:
    """Two ranks started the way torchrun starts them, without its agent (which stops the other
    workers once one fails): (exit code, stdout, stderr) of each rank."""
    port = str(_free_port())
    procs = [
        popen(*map(str, args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
              env=_env(RANK=str(r), LOCAL_RANK=str(r), WORLD_SIZE="2", LOCAL_WORLD_SIZE="2",
                       MASTER_ADDR="127.0.0.1", MASTER_PORT=port))
        for r in (0, 1)
    ]
    try:
        outputs = [p.communicate(timeout=RUN_TIMEOUT) for p in procs]
    finally:
        for p in procs:
            p.kill()
    return [(p.returncode, out, err) for p, (out, err) in zip(procs, outputs, strict=True)]


def _no_inspector_traceback(stderr: str) -> bool:
    """torchrun's agent prints its own traceback when a worker fails; inspector prints none."""
    return not any(line.startswith('  File "') and "inspector" in line
                   for line in stderr.splitlines())


def _distributed(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return torchrun("-m", "inspector.distributed", *args, "--timeout", "30")


# -- the CLI under torchrun: the same bytes as the single-process commands ------------------------
@pytest.mark.parametrize(("kind", "json_flag"), [
    ("hf", False), ("hf", True), ("pt", False), ("dcp", False), ("dcp", True),
])
def test_rank_zero_prints_what_ckpt_hash_prints(files, kind: str, json_flag: bool) -> None:
    flags = ["--json"] if json_flag else []
    want = ckpt("hash", files[kind], *flags)
    assert want.returncode == 0, want.stderr
    got = _distributed("hash", files[kind], *flags)
    assert got.returncode == 0, got.stderr
    assert got.stdout == want.stdout  # rank 1 printed nothing, rank 0 the same bytes
    assert "Traceback" not in got.stderr


def test_verify_names_the_one_changed_tensor_and_exits_1(files, tmp_path: Path) -> None:
    manifest = json.loads(ckpt("hash", "--json", files["hf"]).stdout)
    entry = next(t for t in manifest["tensors"] if t["name"] == "layers.3.weight")
    real = entry["digest"]
    entry["digest"] = "ckh1:" + "0" * 32
    (tmp_path / "m.json").write_text(json.dumps(manifest))
    r = _distributed("verify", files["hf"], "--expected", tmp_path / "m.json")
    assert r.returncode == 1, r.stderr
    assert _exited_with(r.stderr, 1)
    lines = r.stdout.splitlines()
    assert lines[0] == f"changed     layers.3.weight  expected ckh1:{'0' * 32}, got {real}"
    assert lines[1].startswith("mismatch: 1 tensor(s) differ")
    assert len(lines) == 2  # rank 1 printed nothing


def test_diff_on_rank_zero_is_ckpt_diff(files) -> None:
    want = ckpt("diff", files["hf"], files["hf_other"])
    assert want.returncode == 1, want.stderr
    assert "layers.1.weight" in want.stdout
    got = _distributed("diff", files["hf"], files["hf_other"])
    assert (got.returncode, got.stdout) == (want.returncode, want.stdout), got.stderr
    assert _exited_with(got.stderr, 1)


def test_an_input_error_exits_as_ckpt_does_with_every_rank_named(files, tmp_path: Path) -> None:
    broken = tmp_path / "hf"
    shutil.copytree(files["hf"], broken)
    (broken / "model-00002-of-00003.safetensors").unlink()
    want = ckpt("hash", broken)
    assert want.returncode == 2
    assert "'model-00002-of-00003.safetensors'" in want.stderr
    message = want.stderr.removeprefix("ckpt hash: error: ").strip()
    (code0, out0, err0), (code1, out1, err1) = by_hand(
        "-m", "inspector.distributed", "hash", broken, "--timeout", "30")
    assert code0 == code1 == 2  # each rank exits as `ckpt hash` does
    assert err0 == f"ckpt hash: error: ranks 0-1: {message}\n"  # said once, by rank 0
    assert out0 == out1 == err1 == ""
    under_torchrun = _distributed("hash", broken)
    assert _exited_with(under_torchrun.stderr, 2)
    assert _no_inspector_traceback(under_torchrun.stderr)


SAVE_THEN_HASH = """
import os, sys
import torch, torch.distributed as dist, torch.distributed.checkpoint as dcp
import inspector.distributed
import inspector.distributed.api as api

dist.init_process_group("gloo")
g = torch.Generator().manual_seed(0)
state = {f"layers.{i}.weight": torch.randn(32, 8 + i, generator=g) for i in range(8)}
dcp.save(state, checkpoint_id=sys.argv[1])  # the ranks share the writing: __0_0, __1_0.distcp
real, mine = api.hash_tensors, []
api.hash_tensors = lambda ckpt, names, **kw: (mine.extend(names), real(ckpt, names, **kw))[1]
m = inspector.distributed.hash(sys.argv[1], timeout=30)
os.write(1, (f"{dist.get_rank()} {m['digest']} {' '.join(sorted(mine))}\\n").encode())
dist.destroy_process_group()
"""


def test_right_after_dcp_save_each_rank_hashes_the_file_it_wrote(tmp_path: Path) -> None:
    script = tmp_path / "train.py"
    script.write_text(SAVE_THEN_HASH)
    r = torchrun(script, tmp_path / "ckpt")
    assert r.returncode == 0, r.stderr
    digest = json.loads(ckpt("hash", "--json", tmp_path / "ckpt").stdout)["digest"]
    opened = inspector.open(tmp_path / "ckpt")
    for line in r.stdout.splitlines():
        rank, got, *names = line.split()
        assert got == digest
        assert {Path(opened[n].storage.source.path).name for n in names} == {f"__{rank}_0.distcp"}
    hashed = [n for line in r.stdout.splitlines() for n in line.split()[2:]]
    assert sorted(hashed) == sorted(opened)


# -- failures seen by one rank ---------------------------------------------------------------------
ONE_RANK_MISSES_A_FILE = """
import os, sys
import torch.distributed as dist
import inspector.distributed
import inspector.distributed.api as api
from inspector.errors import RankFailedError

def say(line):  # one write of a short line to the pipe both ranks share: never interleaved
    os.write(1, (line + "\\n").encode())


dist.init_process_group("gloo")  # the caller's own group: inspector must leave it alone
rank = dist.get_rank()
real, mine = api.hash_tensors, []
api.hash_tensors = lambda ckpt, names, **kw: (mine.extend(names), real(ckpt, names, **kw))[1]
m = inspector.distributed.hash(sys.argv[1], timeout=30)
say(f"rank {rank} hashed {len(mine)} of {len(m['tensors'])}: {m['digest']}")
try:
    inspector.distributed.hash(sys.argv[1 + rank], timeout=30)
except RankFailedError as e:
    say(f"rank {rank} raised: {e}")
assert dist.is_initialized()
dist.barrier()  # the group still works
dist.destroy_process_group()
"""


def test_a_file_missing_on_one_rank_stops_both_with_its_name(files, tmp_path: Path) -> None:
    seen_by_one = tmp_path / "hf"
    shutil.copytree(files["hf"], seen_by_one)
    (seen_by_one / "model-00003-of-00003.safetensors").unlink()
    script = tmp_path / "script.py"
    script.write_text(ONE_RANK_MISSES_A_FILE)
    r = torchrun(script, files["hf"], seen_by_one)
    assert r.returncode == 0, r.stderr
    lines = sorted(r.stdout.splitlines())
    # first, both ranks hashed the whole folder together: a share each, the same manifest
    digest = json.loads(ckpt("hash", "--json", files["hf"]).stdout)["digest"]
    hashed = [line for line in lines if " hashed " in line]
    shares = [re.fullmatch(rf"rank (\d) hashed (\d+) of 7: {digest}", line) for line in hashed]
    assert len(shares) == 2
    assert all(shares), lines
    assert sorted(int(m[2]) for m in shares if m) in ([3, 4], [2, 5], [1, 6])
    lines = [line for line in lines if " hashed " not in line]
    assert [line.split(" raised: ")[0] for line in lines] == ["rank 0", "rank 1"]
    for line in lines:  # the same message on both: rank 1's, naming its missing file
        message = line.split(" raised: ")[1]
        assert message.startswith(f"rank 1: {seen_by_one}")
        assert "'model-00003-of-00003.safetensors'" in message
        assert "rank 0" not in message


RANK_ONE_DIES = """
import os, sys
import inspector.distributed.api as api
from inspector.distributed.__main__ import main

if os.environ["RANK"] == "1":
    api.hash_tensors = lambda *a, **k: os._exit(9)  # dies after joining, before the exchange
sys.exit(main(["hash", sys.argv[1], "--timeout", "20"]))
"""


def test_a_rank_that_dies_ends_the_other_with_a_message(files, tmp_path: Path) -> None:
    """The ranks started by hand, as torchrun starts them, without torchrun's agent (which
    would stop the survivor itself): the survivor must notice on its own."""
    script = tmp_path / "script.py"
    script.write_text(RANK_ONE_DIES)
    (code0, out0, err0), (code1, _, _) = by_hand(script, files["hf"])
    assert code1 == 9
    assert code0 == 2, err0
    assert err0.startswith("ckpt hash: error: rank 0: lost the other ranks (one died, or did "
                           "not answer within 20 s): ")
    assert "Traceback" not in err0
    assert out0 == ""


RANK_ONE_HANGS = """
import os, sys, time
import inspector.distributed.api as api
from inspector.distributed.__main__ import main

if os.environ["RANK"] == "1":
    api.hash_tensors = lambda *a, **k: time.sleep(8) or {}  # alive, but late past the timeout
sys.exit(main(["hash", sys.argv[1], "--timeout", "3"]))
"""


def test_a_rank_that_does_not_answer_ends_the_other_at_the_timeout(files, tmp_path) -> None:
    script = tmp_path / "script.py"
    script.write_text(RANK_ONE_HANGS)
    (code0, out0, err0), (code1, _, err1) = by_hand(script, files["hf"])
    assert code0 == 2, err0
    assert err0.startswith("ckpt hash: error: rank 0: lost the other ranks (one died, or did "
                           "not answer within 3 s): ")
    assert out0 == ""
    assert code1 == 2, err1  # and the late rank, finding rank 0 gone, ends too
    assert err1.startswith("ckpt hash: error: rank 1: lost the other ranks")


def test_a_rank_that_cannot_join_ends_at_the_timeout_with_the_address(files) -> None:
    port = str(_free_port())  # nobody listens there: rank 0 never started
    r = python("-m", "inspector.distributed", "hash", files["hf"], "--timeout", "2",
               env=_env(RANK="1", WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=port),
               timeout=RUN_TIMEOUT)
    assert r.returncode == 2
    assert (f"ckpt hash: error: rank 1: cannot join the process group at 127.0.0.1:{port} "
            "within 2 s: ") in r.stderr
    assert "Traceback" not in r.stderr


# -- a world of one: no torchrun, no torch ---------------------------------------------------------
def test_without_torchrun_it_is_ckpt_hash_and_imports_no_torch(files) -> None:
    for flags in ([], ["--json"]):
        want = ckpt("hash", files["hf"], *flags)
        got = python("-m", "inspector.distributed", "hash", files["hf"], *flags, env=_env())
        assert (got.returncode, got.stdout) == (0, want.stdout), got.stderr
    probe = python("-c", textwrap.dedent(f"""
        import sys, inspector.distributed as d
        d.verify({str(files['hf'])!r})
        print('torch' in sys.modules)"""), env=_env())
    assert probe.stdout.strip() == "False", probe.stderr


def test_verify_alone_takes_a_manifest_path_dict_or_digest(files, tmp_path: Path) -> None:
    text = ckpt("hash", "--json", files["hf"]).stdout
    (tmp_path / "m.json").write_text(text)
    manifest = json.loads(text)
    for expected in (tmp_path / "m.json", manifest, manifest["digest"], None):
        result = dist_api.verify(files["hf"], expected)
        assert result.ok
        assert result.mismatches == ()
        assert result.manifest == manifest
    wrong = dist_api.verify(files["hf_other"], manifest)
    assert not wrong.ok
    assert [(m.name, m.kind) for m in wrong.mismatches] == [("layers.1.weight", "changed")]
    first = manifest["tensors"][0]["name"]
    extra = {"name": "extra", "digest": manifest["digest"]}
    manifest["tensors"] = [*manifest["tensors"][1:], extra]
    partial = dist_api.verify(files["hf"], manifest)
    assert sorted((m.kind, m.name) for m in partial.mismatches) == [
        ("missing", "extra"), ("unexpected", first)]
    assert not dist_api.verify(files["hf"], "ckh1:" + "1" * 32).ok


def test_a_bad_manifest_is_an_input_error(files, tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"bad\.json: not a `ckpt hash --json` manifest"):
        dist_api.verify(files["hf"], tmp_path / "bad.json")
    with pytest.raises(CheckpointError, match="cannot read manifest"):
        dist_api.verify(files["hf"], tmp_path / "absent.json")


def test_diff_alone_is_inspector_diff(files) -> None:
    got = dist_api.diff(files["hf"], files["hf_other"])
    assert got.to_json() == inspector.diff(files["hf"], files["hf_other"]).to_json()
    assert got.counts() == {"changed": 1, "identical": 6}


# -- the split ------------------------------------------------------------------------------------
sizes_and_owners = st.integers(1, 6).flatmap(lambda world: st.tuples(
    st.just(world),
    st.lists(st.tuples(st.integers(0, 10**9), st.none() | st.integers(0, world - 1)),
             max_size=60)))


@given(sizes_and_owners)
def test_every_item_goes_to_exactly_one_rank_within_the_balance_bound(case) -> None:
    world, items = case
    sizes, owners = [s for s, _ in items], [o for _, o in items]
    ranks = assign(sizes, owners, world)
    assert len(ranks) == len(sizes)
    assert all(0 <= r < world for r in ranks)
    load = [0] * world
    for s, r in zip(sizes, ranks, strict=True):
        load[r] += s
    assert sum(load) == sum(sizes)
    # no rank above the average plus the largest item (integers: times the world size)
    assert max(load) * world <= sum(sizes) + world * max(sizes, default=0)
    assert assign(sizes, owners, world) == ranks  # a pure function: every rank computes it


@given(st.integers(1, 5), st.lists(st.integers(0, 10**6), max_size=12))
def test_ranks_owning_equal_shares_keep_their_own_items(world: int, share: list[int]) -> None:
    sizes = share * world
    owners = [r for r in range(world) for _ in share]
    assert assign(sizes, owners, world) == owners


def test_dcp_files_belong_to_their_writer_and_others_go_round_robin() -> None:
    files = ["/c/__3_0.distcp", "/c/__0_1.distcp", "/c/__1_0.distcp", "/m/b.st", "/m/a.st",
             "/m/c.st"]
    assert file_owners(files, 2) == {
        "/c/__3_0.distcp": 1, "/c/__0_1.distcp": 0, "/c/__1_0.distcp": 1,
        "/m/a.st": 0, "/m/b.st": 1, "/m/c.st": 0,
    }
    with pytest.raises(ValueError, match="owner rank 2 is not in a world of 2"):
        assign([1], [2], 2)


# -- messages and refusals -------------------------------------------------------------------------
def test_failures_are_grouped_by_message_and_capped() -> None:
    from inspector.errors import RankFailedError

    same = RankFailedError([(r, "OSError", "f.bin: gone") for r in range(1000) if r != 7]
                           + [(7, "TensorDataError", "g.bin: 'w': bad chunk")])
    assert str(same) == "ranks 0-6, 8-999: f.bin: gone; rank 7: g.bin: 'w': bad chunk"
    many = RankFailedError([(r, "E", f"m{r}") for r in range(8)])
    assert str(many).endswith("rank 4: m4; and 3 other errors")
    assert isinstance(many, CheckpointError)


def test_a_group_that_is_not_gloo_is_refused_with_advice(monkeypatch) -> None:
    torch_dist = pytest.importorskip("torch.distributed")
    from inspector.distributed.group import Gloo

    monkeypatch.setattr(torch_dist, "get_backend", lambda group=None: "nccl")
    with pytest.raises(ValueError, match=r"needs a gloo group, not 'nccl'.*new_group"):
        Gloo(object(), 10)
