"""Remote checkpoints (issue 14): URLs read by range requests through `inspector.remote`.

Real servers on 127.0.0.1 only, always stopped: `range_server` (an http.server honouring Range
and If-Match, counting the bytes it serves) for the byte budgets, and moto's S3 server for
s3://. Files are written by torch and safetensors here; the CLI runs in child processes.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
import safetensors.torch
import torch
from moto_s3 import BUCKET, free_port, serving_s3
from range_server import Counts, serving
from subproc import child_env, ckpt, python

import inspector
from inspector import hashing, remote
from inspector.demo import build_demo
from inspector.errors import (
    FileChangedError,
    RemoteAccessError,
    RemoteError,
    RemoteNotFoundError,
    RemoteThrottledError,
)
from inspector.hashing import checkpoint_digest, hash_tensors
from inspector.reader import split_root

MB = 1 << 20


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A multi-MB safetensors file and its torch.save twin (48 tensors, 12 MiB), the demo files,
    and one 3 MiB tensor (streamed when hashing)."""
    root = tmp_path_factory.mktemp("remote")
    gen = torch.Generator().manual_seed(0)
    sd = {f"layers.{i}.weight": torch.randn(256, 256, generator=gen) for i in range(48)}
    safetensors.torch.save_file(sd, str(root / "model.safetensors"))
    torch.save(sd, root / "model.pt")
    big = {"embed.weight": torch.randn(768, 1024, generator=gen), "head.bias": torch.zeros(3)}
    safetensors.torch.save_file(big, str(root / "big.safetensors"))
    torch.save(big, root / "legacy.pt", _use_new_zipfile_serialization=False)
    build_demo(root)
    return root


@pytest.fixture
def server(folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
           ) -> Iterator[tuple[str, Counts]]:
    remote.clear_cache()  # each test counts its own fetches
    monkeypatch.setenv("CKPT_INSPECTOR_CACHE_DIR", str(tmp_path / "cache"))  # children too
    with serving(folder) as (base, counts):
        yield base, counts


def _local_digest(path: Path) -> str:
    with inspector.open(path) as c:
        return str(checkpoint_digest(hash_tensors(c)))


# Byte budgets -----------------------------------------------------------------------------------


def test_listing_a_remote_safetensors_fetches_only_its_header(server, folder) -> None:
    base, counts = server
    size = (folder / "model.safetensors").stat().st_size
    with inspector.open(f"{base}/model.safetensors") as c:
        assert c.format == "safetensors"
        assert str(c.path) == f"{base}/model.safetensors"
        assert list(c) == list(inspector.open(folder / "model.safetensors"))
        src = c.sources[f"{base}/model.safetensors"]
        assert src.bytes_fetched == counts.bytes
    assert counts.bytes < MB < size
    assert counts.gets <= 2


def test_listing_a_remote_torch_zip_fetches_directory_and_pickle_only(server, folder) -> None:
    base, counts = server
    size = (folder / "model.pt").stat().st_size
    with inspector.open(f"{base}/model.pt") as c:
        assert c.format == "torch-zip"
        assert len(c) == 48
    # end records + central directory + data.pkl (two cache blocks) and 48 local headers
    assert counts.bytes < MB
    assert counts.bytes < size / 10
    assert counts.gets <= 48 + 4  # the local headers go out together, in parallel


def test_listing_a_remote_nemo_walks_the_tar_by_offset(server, folder) -> None:
    base, counts = server
    size = (folder / "rnnt_bpe.nemo").stat().st_size
    with inspector.open(f"{base}/rnnt_bpe.nemo") as c:
        local = inspector.open(folder / "rnnt_bpe.nemo")
        assert c.format == "nemo"
        assert list(c) == list(local)
        assert c.metadata["config"] == local.metadata["config"]
    assert counts.bytes < size / 4


def test_hashing_remote_files_gives_the_local_digests(server, folder, monkeypatch) -> None:
    base, _counts = server
    monkeypatch.setattr(hashing, "STREAM_BYTES", MB)  # the 3 MiB tensor is streamed
    monkeypatch.setattr(remote, "CHUNK", 256 << 10)  # in 12 parallel range requests
    for name in ("model.safetensors", "model.pt", "rnnt_bpe.nemo", "big.safetensors",
                 "legacy.pt"):
        seen: list[tuple[int, int]] = []
        with inspector.open(f"{base}/{name}") as c:
            digests = hash_tensors(c, progress=lambda d, t, seen=seen: seen.append((d, t)))
            assert str(checkpoint_digest(digests)) == _local_digest(folder / name), name
        assert seen, name
        assert seen[-1][0] == seen[-1][1], name


def test_hashing_a_remote_file_fetches_it_once(server, folder) -> None:
    base, counts = server
    for name in ("model.pt", "model.safetensors"):
        size = (folder / name).stat().st_size
        with inspector.open(f"{base}/{name}") as c:  # the listing pins the zip's local headers
            counts.reset()
            hash_tensors(c)
        assert size * 0.95 < counts.bytes < size * 1.05, (name, counts.bytes, size)


def test_a_url_root_and_an_ipv6_host_split_as_paths_do() -> None:
    assert split_root("http://[::1]:8000/train.pt") == ("http://[::1]:8000/train.pt", None)
    assert split_root("s3://b/train.pt::model") == ("s3://b/train.pt", "model")


def test_a_presigned_url_without_a_suffix_keeps_its_query(server, folder) -> None:
    """An http(s) URL is read as one file (HTTP lists no folders), with its query: the
    signature of a presigned URL is sent with every request, and never shown."""
    base, _ = server
    (folder / "weights").write_bytes((folder / "model.safetensors").read_bytes())
    r = ckpt("ls", f"{base}/signed/weights?sig=ok")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"{base}/signed/weights  (safetensors: 48 tensors"), r.stdout
    assert "sig=ok" not in r.stdout + r.stderr
    r = ckpt("ls", f"{base}/signed/weights?sig=no")
    assert r.returncode == 2
    assert "access denied" in r.stderr


def test_names_never_carry_credentials_or_query_strings() -> None:
    url = "https://user:secret@host.example/a/model.pt?X-Amz-Signature=abc&token=t#frag"
    assert remote.public_name(url) == "https://host.example/a/model.pt"
    assert "abc" not in remote.redact(f"GET {url} failed")
    assert remote.is_url("hf://org/repo/model.safetensors")
    assert not remote.is_url("ftp://host/x")
    assert not remote.is_url("model.pt")


# The command line ------------------------------------------------------------------------------


def test_ckpt_ls_hash_and_diff_take_urls(server, folder) -> None:
    base, _ = server
    url = f"{base}/model.pt"
    r = ckpt("ls", url, "-v")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"{url}  (torch-zip: 48 tensors")
    assert f"{url}: fetched" in r.stderr
    assert "requests" in r.stderr
    r = ckpt("ls", "--json", f"{base}/model.safetensors")
    assert r.returncode == 0, r.stderr
    (stats,) = json.loads(r.stdout)["remote"]
    assert 0 < stats["bytes_fetched"] < MB
    assert stats["requests"] >= 2
    r = ckpt("hash", "--json", url)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["digest"] == _local_digest(folder / "model.pt")
    r = ckpt("diff", url, folder / "model.safetensors")
    assert r.returncode == 0, r.stdout + r.stderr
    r = ckpt("check", folder / "model.safetensors", "--against", url)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize(
    ("path", "what"), [("nope/model.pt", "not found (404)"), ("forbidden/x.pt", "access denied")]
)
def test_a_missing_or_forbidden_url_is_a_clear_error(server, path, what) -> None:
    base, _ = server
    url = f"{base}/{path}?X-Amz-Signature=s3cr3t"
    r = ckpt("ls", url)
    assert r.returncode == 2
    assert f"{base}/{path}: {what}" in r.stderr
    assert "Traceback" not in r.stderr
    assert "s3cr3t" not in r.stderr
    error = RemoteNotFoundError if "404" in what else RemoteAccessError
    with pytest.raises(error):
        inspector.open(url)


# Changed objects --------------------------------------------------------------------------------


def test_a_changed_object_is_never_served_from_the_cache(server, folder) -> None:
    base, counts = server
    target = folder / "changing.safetensors"
    safetensors.torch.save_file({"a": torch.ones(4)}, str(target))
    with inspector.open(f"{base}/changing.safetensors") as c:
        assert list(c) == ["a"]
    with inspector.open(f"{base}/changing.safetensors") as c:  # same ETag: from the cache
        counts.reset()
        assert list(c) == ["a"]
    assert counts.gets == 0
    safetensors.torch.save_file({"b": torch.ones(4), "c": torch.ones(2)}, str(target))
    os.utime(target, ns=(1, 1))  # a new ETag whatever the clock's resolution
    counts.reset()
    with inspector.open(f"{base}/changing.safetensors") as c:
        assert sorted(c) == ["b", "c"]
    assert counts.gets >= 1


def test_an_object_changed_while_hashed_is_refused(server, folder) -> None:
    base, _ = server
    target = folder / "moving.safetensors"
    safetensors.torch.save_file({"a": torch.ones(4)}, str(target))
    with inspector.open(f"{base}/moving.safetensors") as c:
        os.utime(target, ns=(2, 2))
        with pytest.raises(FileChangedError, match="changed since it was opened"):
            hash_tensors(c)


def test_a_server_ignoring_ranges_is_refused(folder) -> None:
    src = remote.RemoteFile.__new__(remote.RemoteFile)  # a stub filesystem, no network
    src.url = src.name = "http://127.0.0.1:1/x"
    src.size, src.version, src.bytes_fetched, src.requests = 100, "v", 0, 0
    src._range_kwargs, src._path = {}, "x"
    src._lock = __import__("threading").Lock()

    class _WholeBody:
        def cat_file(self, path, start, end):
            return bytes(100)

    src._fs = _WholeBody()
    with pytest.raises(RemoteError, match="does not honour range requests"):
        src._fetch(10, 5)


# Without the extra --------------------------------------------------------------------------------

_NO_FSSPEC = """
import sys
sys.modules["fsspec"] = None  # as if the remote extra were not installed
from inspector.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_without_fsspec_a_url_names_the_extra(folder) -> None:
    r = python("-c", _NO_FSSPEC, "ls", "https://127.0.0.1:9/model.safetensors")
    assert r.returncode == 2
    assert "pip install 'ckpt-inspector[remote]'" in r.stderr
    assert "Traceback" not in r.stderr


def test_a_store_without_its_package_names_it() -> None:
    pytest.importorskip("fsspec")
    try:
        import huggingface_hub  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("huggingface_hub is installed: hf:// would reach the Hub")
    with pytest.raises(RemoteError, match="hf:// URLs need huggingface_hub"):
        inspector.open("hf://org/repo/model.safetensors")


def test_without_a_url_fsspec_is_not_imported(folder) -> None:
    code = ("import sys; from inspector.cli import main; main(['ls', sys.argv[1]]); "
            "print('fsspec' in sys.modules, 'inspector.remote' in sys.modules)")
    r = python("-c", code, folder / "model.safetensors")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[-1] == "False False"


# S3 (moto) ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def s3(folder: Path) -> Iterator[dict[str, str]]:
    """A moto S3 server holding bucket `ckpts` with model.safetensors; the environment a
    client needs (fake credentials, AWS_ENDPOINT_URL)."""
    with serving_s3() as (env, client):
        client.upload_file(str(folder / "model.safetensors"), BUCKET, "model.safetensors")
        yield env


def test_ckpt_ls_and_hash_read_s3(s3, folder, tmp_path) -> None:
    env = child_env(**s3, CKPT_INSPECTOR_CACHE_DIR=str(tmp_path))  # nothing cached yet
    r = ckpt("ls", "-v", "s3://ckpts/model.safetensors", env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("s3://ckpts/model.safetensors  (safetensors: 48 tensors")
    fetched = r.stderr.split("fetched ", 1)[1]
    assert fetched.split(" of ")[0].endswith("KiB")  # the header, not the 12 MiB
    r = ckpt("hash", "--json", "s3://ckpts/model.safetensors", env=env)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["digest"] == _local_digest(folder / "model.safetensors")
    r = ckpt("ls", "s3://ckpts/missing.safetensors", env=env)
    assert r.returncode == 2
    assert "s3://ckpts/missing.safetensors: not found (404)" in r.stderr, r.stderr


def test_a_url_with_a_malformed_header_names_the_url(server, folder) -> None:
    base, _ = server
    (folder / "bad.safetensors").write_bytes(struct.pack("<Q", 10**12) + b"{}")
    r = ckpt("ls", f"{base}/bad.safetensors")
    assert r.returncode == 2
    assert r.stderr.startswith(f"ckpt ls: error: {base}/bad.safetensors")


# Every command -----------------------------------------------------------------------------------


def test_ckpt_scan_of_a_url_finds_what_the_local_scan_finds(server, folder) -> None:
    base, _ = server
    for name in ("rnnt_char.pt", "rnnt_bpe.nemo"):
        remote_doc = json.loads(ckpt("scan", "--format", "json", f"{base}/{name}").stdout)
        local_doc = json.loads(ckpt("scan", "--format", "json", name, cwd=folder).stdout)
        assert json.dumps(remote_doc).replace(f"{base}/", "") == json.dumps(local_doc), name


def test_map_apply_and_convert_take_remote_sources(server, folder, tmp_path) -> None:
    base, _ = server
    plan = tmp_path / "plan.yaml"
    r = ckpt("map", f"{base}/rnnt_char.pt", folder / "rnnt_bpe.nemo", "-o", plan)
    assert r.returncode == 0, r.stderr
    assert f"path: {base}/rnnt_char.pt" in plan.read_text()  # a URL is never rebased
    r = ckpt("apply", plan, "-o", tmp_path / "out.nemo", "--accept-proposed")
    assert r.returncode == 0, r.stderr
    assert "verified: OK" in r.stdout
    r = ckpt("convert", f"{base}/rnnt_bpe.nemo", "-o", tmp_path / "out.safetensors")
    assert r.returncode == 0, r.stderr
    assert _local_digest(tmp_path / "out.safetensors") == _local_digest(folder / "rnnt_bpe.nemo")


def test_url_outputs_and_remote_nemo_targets_are_refused(server, folder, tmp_path) -> None:
    base, _ = server
    r = ckpt("convert", folder / "model.pt", "-o", "s3://bucket/out.safetensors?sig=s3cr3t")
    assert r.returncode == 2
    assert "s3://bucket/out.safetensors: outputs are written to local paths only" in r.stderr
    assert "s3cr3t" not in r.stderr
    plan = tmp_path / "plan.yaml"
    assert ckpt("map", folder / "rnnt_char.pt", f"{base}/rnnt_bpe.nemo", "-o", plan).returncode == 0
    r = ckpt("apply", plan, "-o", tmp_path / "out.nemo", "--accept-proposed")
    assert r.returncode == 2
    assert f"{base}/rnnt_bpe.nemo: the target is remote" in r.stderr
    assert not (tmp_path / "out.nemo").exists()
    r = ckpt("apply", plan, "-o", tmp_path / "out.pt", "--format", "torch-zip", "--accept-proposed")
    assert r.returncode == 0, r.stderr


def test_server_errors_and_throttling_are_retried_with_backoff(server, monkeypatch) -> None:
    base, counts = server
    monkeypatch.setattr(remote, "BACKOFF", 0.01)
    counts.fail = [503, 500, 429]
    with inspector.open(f"{base}/model.safetensors") as c:
        assert len(c) == 48
    assert counts.fail == []
    counts.fail = [503] * 50  # more than every retry asks (fsspec tries HEAD, then GET)
    with pytest.raises(RemoteThrottledError, match="throttling requests"):
        inspector.open(f"{base}/model.safetensors")
    assert counts.fail  # it gave up: no endless retrying


def test_a_second_ls_reads_its_blocks_from_the_disk_cache(server, folder, tmp_path) -> None:
    base, counts = server
    cache = tmp_path / "blocks"
    target = folder / "cached.pt"
    target.write_bytes((folder / "model.pt").read_bytes())
    url = f"{base}/cached.pt"
    assert ckpt("ls", url, "--cache-dir", cache).returncode == 0
    assert counts.gets > 0
    assert list((cache / "remote").glob("*/*"))
    counts.reset()
    r = ckpt("ls", "-v", url, "--cache-dir", cache)
    assert r.returncode == 0, r.stderr
    assert counts.gets == 0  # blocks and prefetched local headers: all from the disk
    assert "fetched 0 B" in r.stderr
    target.write_bytes((folder / "model.safetensors").read_bytes())  # a new object, new ETag
    os.utime(target, ns=(3, 3))
    counts.reset()
    r = ckpt("ls", url, "--cache-dir", cache)
    assert r.returncode == 0, r.stderr
    assert "(safetensors: 48 tensors" in r.stdout
    assert counts.gets >= 1


def test_the_disk_cache_stays_under_its_cap(tmp_path) -> None:
    root = tmp_path / "remote"
    for key in ("a", "b"):
        (root / key).mkdir(parents=True)
        for i in range(4):
            (root / key / str(i)).write_bytes(bytes(1000))
            os.utime(root / key / str(i), ns=(i + (10 if key == "b" else 0), 0))
    remote.trim(root, 4500)
    kept = sorted(str(p.relative_to(root)) for p in root.glob("*/*"))
    assert kept == ["b/0", "b/1", "b/2", "b/3"]  # the least recently used went first


def test_an_unreachable_host_is_not_called_missing(monkeypatch) -> None:
    monkeypatch.setattr(remote, "BACKOFF", 0.01)
    url = f"http://127.0.0.1:{free_port()}/model.pt"  # nothing listens there
    with pytest.raises(RemoteError, match="cannot read its size") as caught:
        inspector.open(url)
    assert not isinstance(caught.value, RemoteNotFoundError)
