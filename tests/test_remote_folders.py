"""Folders and multi-file checkpoints at a URL (issue 14; remote DCP for issue 13): a sharded
safetensors repo, an HF model folder, torch.distributed.checkpoint folders (written by one
process, and by four ranks with DTensors), a model-parallel and a distributed `.nemo`, all in
moto's S3 server on 127.0.0.1. Each behaves as its local copy does (names, shapes, digests, a
diff that finds them equal), and listing fetches the index, metadata and headers, not the data.
Files are written by torch, safetensors and torch.distributed.checkpoint here; the CLI runs in
child processes.
"""

from __future__ import annotations

import json
import posix
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import safetensors.torch
import torch
from moto_s3 import BUCKET, serving_s3, upload_folder
from scan_corpus import Reduce
from store_server import store_packages
from subproc import child_env, ckpt, python
from test_megatron_lm import megatron_names, tp_ranks, write_iteration
from test_nemo_reader import _add
from test_tensor_parallel import CONFIG, full_state, shard, write_nemo

import inspector
from inspector.errors import RemoteError
from inspector.remote_folder import RemotePath

pytestmark = pytest.mark.filterwarnings("ignore:torch.distributed is disabled:UserWarning")

MB = 1 << 20
SAMPLES = Path(__file__).with_name("dcp_samples.py")


def _state(n: int, rows: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(7)
    return {f"model.layers.{i}.w": torch.randn(rows, 256, generator=g) for i in range(n)}


def _sharded_repo(folder: Path, sd: dict[str, torch.Tensor]) -> None:
    folder.mkdir()
    names = list(sd)
    halves = {"model-00001-of-00002.safetensors": names[: len(names) // 2],
              "model-00002-of-00002.safetensors": names[len(names) // 2 :]}
    weight_map = {}
    for file, part in halves.items():
        safetensors.torch.save_file({n: sd[n] for n in part}, folder / file)
        weight_map.update(dict.fromkeys(part, file))
    index = {"metadata": {"total_size": sum(t.nbytes for t in sd.values())},
             "weight_map": weight_map}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    (folder / "config.json").write_text(json.dumps({"model_type": "llama"}))


def _distributed_nemo(path: Path, sd: dict[str, torch.Tensor], work: Path) -> None:
    import torch.distributed.checkpoint as dcp

    dcp.save(sd, checkpoint_id=str(work))
    with tarfile.open(path, "w") as tar:
        _add(tar, "./model_config.yaml", b"a: 1\n")
        for f in sorted(work.iterdir()):
            _add(tar, f"./model_weights/{f.name}", f.read_bytes())


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The checkpoints, locally: what the bucket holds, and what its URLs are compared with."""
    import torch.distributed.checkpoint as dcp

    root = tmp_path_factory.mktemp("folders")
    sd = _state(16, 512)  # 16 tensors of 512 KiB: 8 MiB
    torch.save(sd, root / "full.pt")
    _sharded_repo(root / "sharded", sd)
    (root / "hf").mkdir()
    safetensors.torch.save_file(sd, root / "hf" / "model.safetensors")
    (root / "hf" / "config.json").write_text(json.dumps({"model_type": "llama"}))
    dcp.save(sd, checkpoint_id=str(root / "dcp"))
    state = full_state(gated=True)
    write_nemo(root / "tp.nemo", shard(state, 2, gated=True), CONFIG.format("swiglu"))
    torch.save(state, root / "tp_full.pt")
    with tarfile.open(root / "tp.nemo") as tar:  # the same .nemo, extracted
        tar.extractall(root / "tp_nemo_folder", filter="data")
    mstate = megatron_names(full_state(gated=False))
    save = root / "megatron"
    write_iteration(save, "iter_0000100", tp_ranks(mstate, 2, False), 100, tp=2)
    (save / "latest_checkpointed_iteration.txt").write_text("100")
    torch.save(mstate, root / "megatron_full.pt")
    _distributed_nemo(root / "dist.nemo", _state(4, 8), root / "dist_work")
    (root / "evil").mkdir()  # an HF folder whose weights carry a payload
    (root / "evil" / "config.json").write_text(json.dumps({"model_type": "bert"}))
    torch.save({"w": torch.zeros(2), "hook": Reduce(posix.system, "true")},
               root / "evil" / "pytorch_model.bin")
    done = python(SAMPLES, root / "ranks4", timeout=300)  # DTensors saved by 4 ranks (gloo)
    assert done.returncode == 0, done.stderr[-3000:]
    return root


@pytest.fixture(scope="module")
def bucket(local: Path) -> Iterator[dict[str, str]]:
    with serving_s3() as (env, client):
        for name in ("sharded", "hf", "dcp", "ranks4", "evil", "tp_nemo_folder", "megatron"):
            upload_folder(client, local / name, name)
        for name in ("tp.nemo", "dist.nemo"):
            client.upload_file(str(local / name), BUCKET, name)
        client.upload_file(str(local / "full.pt"), BUCKET, "loose/full.pt")
        yield env


def _run(env: dict[str, str], *args: Any) -> Any:
    """`ckpt ARGS` in a child, with a cache of its own: what it fetched is what it needed."""
    with tempfile.TemporaryDirectory(prefix="ckpt-cache-") as cache:
        return ckpt(*args, env=child_env(**env, CKPT_INSPECTOR_CACHE_DIR=cache))


def _json(env: dict[str, str], *args: Any) -> dict[str, Any]:
    r = _run(env, *args, "--json")
    assert r.returncode == 0, r.stderr
    found: dict[str, Any] = json.loads(r.stdout)
    return found


def _shapes(listing: dict[str, Any]) -> dict[str, list[int]]:
    return {t["name"]: t["shape"] for t in listing["tensors"]}


def _fetched(listing: dict[str, Any]) -> int:
    return sum(r["bytes_fetched"] for r in listing["remote"])


@pytest.mark.parametrize("url", ["s3://ckpts/sharded", "s3://ckpts/sharded/",
                                 "s3://ckpts/sharded/model.safetensors.index.json"])
def test_a_sharded_safetensors_repo_is_listed_from_its_index_and_headers(bucket, local, url):
    listing = _json(bucket, "ls", url)
    assert _shapes(listing) == _shapes(_json({}, "ls", local / "sharded"))
    # the index and two headers (a 256 KiB cache block each) of an 8 MiB model
    assert 0 < _fetched(listing) < 3 * 256 * 1024
    files = {r["url"] for r in listing["remote"] if not r.get("listing")}
    assert files >= {f"s3://ckpts/sharded/model-0000{i}-of-00002.safetensors" for i in (1, 2)}


def test_folders_at_urls_hash_and_diff_as_their_local_copies(bucket, local):
    want = _json({}, "hash", local / "full.pt")["digest"]
    for url in ("s3://ckpts/sharded", "s3://ckpts/hf", "s3://ckpts/dcp"):
        assert _json(bucket, "hash", url)["digest"] == want, url
        r = _run(bucket, "diff", url, local / "full.pt")
        assert r.returncode == 0, r.stdout + r.stderr
        assert r.stdout.startswith(f"A: {url}\n"), r.stdout
    r = _run(bucket, "diff", "s3://ckpts/sharded", "s3://ckpts/dcp")
    assert r.returncode == 0, r.stdout + r.stderr


def test_an_hf_folder_at_a_url_keeps_its_config(bucket):
    r = _run(bucket, "ls", "-v", "s3://ckpts/hf")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("s3://ckpts/hf  (hf: 16 tensors")
    assert "llama" in r.stdout
    assert "s3://ckpts/hf/: looked up and listed in" in r.stderr


def test_listing_a_dcp_folder_fetches_its_metadata_and_the_ends_of_each_record(bucket, local):
    listing = _json(bucket, "ls", "s3://ckpts/dcp")
    assert _shapes(listing) == _shapes(_json({}, "ls", local / "full.pt"))
    data = sum(p.stat().st_size for p in (local / "dcp").iterdir())
    # .metadata, then 8 KiB at most per record (its zip headers), of 8 MiB of tensors
    assert _fetched(listing) <= (local / "dcp" / ".metadata").stat().st_size + 16 * 8192
    assert _fetched(listing) < data // 32


def test_a_dcp_folder_written_by_four_ranks_reads_as_its_local_copy(bucket, local):
    url = "s3://ckpts/ranks4"
    remote, here = _json(bucket, "ls", url), _json({}, "ls", local / "ranks4")
    assert _shapes(remote) == _shapes(here)
    chunks = {t["name"]: t.get("chunks") for t in remote["tensors"]}
    assert len(chunks["mix"]) == 4  # a 2x2 mesh: four boxes, one logical tensor
    assert _json(bucket, "hash", url)["digest"] == _json({}, "hash", local / "ranks4")["digest"]
    r = _run(bucket, "diff", url, f"{local / 'ranks4'}.ref.pt::model")
    assert r.returncode == 0, r.stdout + r.stderr


def test_model_parallel_and_distributed_nemo_files_at_urls(bucket, local):
    merged = _json(bucket, "ls", "s3://ckpts/tp.nemo")
    assert _shapes(merged) == {n: list(t.shape) for n, t in full_state(gated=True).items()}
    assert _json(bucket, "hash", "s3://ckpts/tp.nemo")["digest"] == \
        _json({}, "hash", local / "tp_full.pt")["digest"]
    assert _json(bucket, "hash", "s3://ckpts/dist.nemo")["digest"] == \
        _json({}, "hash", local / "dist.nemo")["digest"]


@pytest.mark.parametrize(("name", "full"), [("tp_nemo_folder", "tp_full.pt"),
                                           ("megatron", "megatron_full.pt")])
def test_an_extracted_nemo_and_a_megatron_save_folder_at_urls(bucket, local, name, full):
    url = f"s3://ckpts/{name}"
    assert _shapes(_json(bucket, "ls", url)) == _shapes(_json({}, "ls", local / full))
    assert _json(bucket, "hash", url)["digest"] == _json({}, "hash", local / full)["digest"]
    r = _run(bucket, "diff", url, local / full)
    assert r.returncode == 0, r.stdout + r.stderr


def test_opening_a_folder_url_twice_in_one_process(bucket, local, monkeypatch):
    for name, value in bucket.items():
        monkeypatch.setenv(name, value)
    ref = torch.load(local / "full.pt", weights_only=True)
    for _ in range(2):
        with inspector.open("s3://ckpts/sharded") as c:
            assert isinstance(c.path, RemotePath)
            assert str(c.path) == "s3://ckpts/sharded"
            name = "model.layers.9.w"
            assert (c.array(name) == ref[name].numpy()).all()


def test_a_missing_folder_and_a_folder_of_no_checkpoint_are_clear_errors(bucket):
    r = _run(bucket, "ls", "s3://ckpts/nothing/here")
    assert r.returncode == 2
    assert "s3://ckpts/nothing/here: not found (404)" in r.stderr, r.stderr
    r = _run(bucket, "ls", "s3://ckpts/loose")
    assert r.returncode == 2
    assert "s3://ckpts/loose: not a checkpoint folder" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


def test_a_remote_folder_is_an_apply_source(bucket, local, tmp_path):
    out = tmp_path / "out.safetensors"
    plan = tmp_path / "plan.yaml"
    r = _run(bucket, "map", "s3://ckpts/sharded", local / "hf", "-o", plan)
    assert r.returncode == 0, r.stderr
    assert "s3://ckpts/sharded" in plan.read_text()
    r = _run(bucket, "apply", plan, "-o", out, "--accept-proposed")
    assert r.returncode == 0, r.stderr
    assert "verified: OK" in r.stdout
    assert _json({}, "hash", out)["digest"] == _json({}, "hash", local / "full.pt")["digest"]


def test_paths_under_a_url_refuse_to_write(bucket, monkeypatch):
    for name, value in bucket.items():
        monkeypatch.setenv(name, value)
    from inspector.remote_folder import open_folder

    where = open_folder("s3://ckpts/sharded")
    assert where.is_dir()
    assert (where / "config.json").is_file()
    assert where.parent.is_dir()
    assert str(where.parent) == "s3://ckpts"
    for write in (lambda: where.mkdir(), lambda: (where / "x").write_bytes(b""),
                  lambda: (where / "x").unlink(), lambda: (where / "config.json").open("w")):
        with pytest.raises(RemoteError, match="read only"):
            write()
    with pytest.raises(RemoteError, match=r"'\.\.'"):
        _ = where / ".." / "elsewhere"


@pytest.mark.parametrize("name", ["evil", "sharded"])
def test_scanning_a_folder_at_a_url_finds_what_the_local_scan_finds(bucket, local, name):
    remote = _run(bucket, "scan", "--format", "json", f"s3://ckpts/{name}")
    here = ckpt("scan", "--format", "json", name, cwd=local)
    assert remote.returncode == here.returncode == (1 if name == "evil" else 0), remote.stderr
    doc = json.loads(remote.stdout)
    assert json.dumps(doc).replace("s3://ckpts/", "") == json.dumps(json.loads(here.stdout))
    if name == "evil":
        assert any("posix.system" in f["message"] for f in doc["findings"]), doc


@pytest.fixture(scope="module")
def stores(local: Path, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[dict[str, tuple[dict[str, str], Any]]]:
    """The same folders in a fake GCS bucket and in fake Hub repos (tests/fake_gcs.py,
    tests/fake_hub.py): scheme -> (environment, counts)."""
    store_packages()
    import fake_gcs
    import fake_hub

    repos = {f"org/{name}": local / name for name in ("sharded", "dcp", "ranks4")}
    with fake_gcs.serving({"ckpts": local}) as gs, \
            fake_hub.serving(repos, tmp_path_factory.mktemp("hf")) as hf:
        yield {"gs": gs, "hf": hf}


@pytest.mark.parametrize("scheme", ["gs", "hf"])
@pytest.mark.parametrize("name", ["sharded", "dcp", "ranks4"])
def test_folders_on_gcs_and_the_hub_read_as_their_local_copies(stores, local, scheme, name):
    env, counts = stores[scheme]
    url = f"gs://ckpts/{name}" if scheme == "gs" else f"hf://org/{name}"
    counts.reset()
    listing = _json(env, "ls", url)
    assert _shapes(listing) == _shapes(_json({}, "ls", local / name))
    data = sum(p.stat().st_size for p in (local / name).iterdir())
    assert counts.bytes < data // 4, counts.bytes  # the index, headers, metadata: not the data
    assert _json(env, "hash", url)["digest"] == _json({}, "hash", local / name)["digest"]


def test_a_remote_hf_folder_is_an_apply_target_written_locally(bucket, local, tmp_path):
    plan, out = tmp_path / "plan.yaml", tmp_path / "out"
    assert _run(bucket, "map", local / "full.pt", "s3://ckpts/hf", "-o", plan).returncode == 0
    r = _run(bucket, "apply", plan, "-o", out, "--accept-proposed")
    assert r.returncode == 0, r.stderr
    assert "verified: OK" in r.stdout
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]
    assert (out / "config.json").read_bytes() == (local / "hf" / "config.json").read_bytes()
    assert _json({}, "hash", out)["digest"] == _json({}, "hash", local / "full.pt")["digest"]
