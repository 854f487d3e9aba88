"""gs:// and hf:// end to end: the CLI in child processes reads checkpoints through gcsfs and
huggingface_hub's HfFileSystem, pointed at fake stores on 127.0.0.1 (tests/fake_gcs.py,
tests/fake_hub.py) that count the bytes they serve. Files are written by torch and
safetensors here, as in tests/test_remote.py."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import fake_gcs
import fake_hub
import pytest
import safetensors.torch
import torch
from range_server import Counts
from store_server import store_packages
from subproc import child_env, ckpt, python

import inspector
from inspector import remote
from inspector.errors import RemoteAccessError
from inspector.hashing import checkpoint_digest, hash_tensors

store_packages()

MB = 1 << 20
HF_SHA = fake_hub.commit("org/repo")


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 12 MiB safetensors file of 48 tensors and its torch.save twin (a torch zip)."""
    root = tmp_path_factory.mktemp("stores")
    gen = torch.Generator().manual_seed(0)
    sd = {f"layers.{i}.weight": torch.randn(256, 256, generator=gen) for i in range(48)}
    safetensors.torch.save_file(sd, str(root / "model.safetensors"))
    torch.save(sd, root / "model.pt")
    return root


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Nested folders, for the stores' listings."""
    root = tmp_path_factory.mktemp("tree")
    for name in ("config.json", "ckpt/.metadata", "ckpt/__0_0.distcp", "ckpt/sub/x.bin"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(name.encode())
    return root


@pytest.fixture(scope="module")
def gcs(folder: Path, tree: Path) -> Iterator[tuple[dict[str, str], Counts]]:
    with fake_gcs.serving({"ckpts": folder, "tree": tree}) as served:
        yield served


@pytest.fixture(scope="module")
def hub(folder: Path, tree: Path, tmp_path_factory: pytest.TempPathFactory
        ) -> Iterator[tuple[dict[str, str], Counts]]:
    with fake_hub.serving({"org/repo": folder, "org/tree": tree},
                          tmp_path_factory.mktemp("hf")) as served:
        yield served


@pytest.fixture
def store(request: pytest.FixtureRequest) -> tuple[dict[str, str], Counts]:
    """The store a test's `url` names (gs:// or hf://), its counts reset."""
    url: str = request.node.callspec.params["url"]
    env, counts = request.getfixturevalue("gcs" if url.startswith("gs://") else "hub")
    counts.reset()
    return env, counts


def _env(env: dict[str, str], cache: Path) -> dict[str, str]:
    return child_env(**env, CKPT_INSPECTOR_CACHE_DIR=str(cache))  # nothing cached yet


def _local_digest(path: Path) -> str:
    with inspector.open(path) as c:
        return str(checkpoint_digest(hash_tensors(c)))


CASES = [
    ("gs://ckpts/model.safetensors", "model.safetensors"),
    ("gs://ckpts/model.pt", "model.pt"),
    ("hf://org/repo/model.safetensors", "model.safetensors"),
    ("hf://org/repo@main/model.pt", "model.pt"),
    (f"hf://org/repo@{HF_SHA}/model.safetensors", "model.safetensors"),
]


@pytest.mark.parametrize(("url", "local"), CASES)
def test_listing_fetches_the_headers_only(store, folder, tmp_path, url, local) -> None:
    env, counts = store
    size = (folder / local).stat().st_size
    fmt = "safetensors" if local.endswith(".safetensors") else "torch-zip"
    r = ckpt("ls", "-v", url, env=_env(env, tmp_path / "a"))
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"{url}  ({fmt}: 48 tensors")
    assert f"{url}: fetched" in r.stderr
    assert counts.bytes < size / 10
    if fmt == "safetensors":
        assert counts.bytes < MB
        assert counts.gets <= 2
    else:
        assert counts.gets <= 48 + 4  # directory, data.pkl, the 48 local headers
    counts.reset()
    r = ckpt("ls", "--json", url, env=_env(env, tmp_path / "b"))
    assert r.returncode == 0, r.stderr
    (stats,) = json.loads(r.stdout)["remote"]
    assert stats["bytes_fetched"] == counts.bytes  # what the store served, nothing more


@pytest.mark.parametrize(("url", "local"), CASES[::2])
def test_hash_and_diff_agree_with_the_local_file(store, folder, tmp_path, url, local) -> None:
    env, _ = store
    r = ckpt("hash", "--json", url, env=_env(env, tmp_path))
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["digest"] == _local_digest(folder / local)
    r = ckpt("diff", url, folder / local, env=_env(env, tmp_path))
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize(
    ("url", "what"),
    [
        ("gs://ckpts/nope.safetensors", "not found (404)"),
        ("gs://nobucket/model.safetensors", "not found (404)"),
        ("gs://ckpts/forbidden/x.safetensors", "access denied"),
        ("hf://org/repo/nope.safetensors", "not found (404)"),
        ("hf://org/repo@v9/model.safetensors", "not found (404)"),
        ("hf://org/nope/model.safetensors", "not found (404)"),
        ("hf://forbidden/repo/x.safetensors", "access denied"),
    ],
)
def test_a_missing_or_forbidden_object_is_a_clear_error(store, tmp_path, url, what) -> None:
    env, _ = store
    r = ckpt("ls", url, env=_env(env, tmp_path))
    assert r.returncode == 2
    assert f"{url}: {what}" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


# In this process ---------------------------------------------------------------------------------


@pytest.fixture
def gs_here(gcs, tmp_path, monkeypatch) -> Iterator[Counts]:
    env, counts = gcs
    remote.clear_cache()
    monkeypatch.setenv("CKPT_INSPECTOR_CACHE_DIR", str(tmp_path))
    counts.reset()
    with fake_gcs.anonymous(env):
        yield counts


def test_open_a_gs_url_twice(gs_here, folder) -> None:
    local = list(inspector.open(folder / "model.safetensors"))
    for _ in range(2):
        c = inspector.open("gs://ckpts/model.safetensors")
        assert c.format == "safetensors"
        assert list(c) == local
        c.close()
    assert gs_here.gets == 1  # the second open: the same generation, from the block cache


def test_a_rewritten_gs_object_is_read_again(gs_here, folder) -> None:
    target = folder / "changing.safetensors"
    safetensors.torch.save_file({"a": torch.ones(4)}, str(target))
    with inspector.open("gs://ckpts/changing.safetensors") as c:
        assert list(c) == ["a"]
    safetensors.torch.save_file({"b": torch.ones(4), "c": torch.ones(2)}, str(target))
    os.utime(target, ns=(1, 1))  # a new generation whatever the clock's resolution
    with inspector.open("gs://ckpts/changing.safetensors") as c:
        assert sorted(c) == ["b", "c"]


def test_gcsfs_errors_are_classified() -> None:
    from gcsfs.retry import HttpError

    denied = remote._classify(HttpError({"code": 401, "message": "Invalid Credentials"}), "u", "x")
    assert isinstance(denied, RemoteAccessError)
    assert isinstance(remote._classify(OSError("Forbidden: u\nno"), "u", "x"), RemoteAccessError)
    assert remote._classify(HttpError({"code": 503, "message": "later"}), "u", "x") is None


# The fakes' listings (for tests of folders at gs:// and hf:// URLs) -----------------------------

_LIST = """
import fsspec, json, sys
fs, path = fsspec.core.url_to_fs(sys.argv[1])
print(json.dumps([sorted(fs.ls(path, detail=False)), fs.find(path), fs.isdir(path + "/ckpt"),
                  fs.info(path + "/ckpt/sub/x.bin", refresh=True)["size"],  # hf: paths-info
                  fs.cat_file(path + "/config.json")]
                 , default=bytes.decode))
"""


@pytest.mark.parametrize(
    "url", ["gs://tree", "hf://org/tree", f"hf://org/tree@{fake_hub.commit('org/tree')}"]
)
def test_the_fakes_list_nested_folders(store, tmp_path, url) -> None:
    env, _ = store
    r = python("-c", _LIST, url, env=_env(env, tmp_path))
    assert r.returncode == 0, r.stderr
    top, every, isdir, size, config = json.loads(r.stdout)
    path = url.split("://", 1)[1]
    assert top == [f"{path}/ckpt", f"{path}/config.json"]
    assert every == [f"{path}/{n}" for n in
                     ("ckpt/.metadata", "ckpt/__0_0.distcp", "ckpt/sub/x.bin", "config.json")]
    assert isdir
    assert size == len("ckpt/sub/x.bin")
    assert config == "config.json"
