"""The cache of expanded tar.gz .nemo files: bounded by size (least recently used evicted
first), chosen with --cache-dir, safe when processes share it, and refused up front when the
folder lacks the space."""

from __future__ import annotations

import gzip
import io
import shutil
import subprocess
import tarfile
from collections import namedtuple
from pathlib import Path

import pytest
import torch
from subproc import ckpt

import inspector
from inspector.errors import ArchiveError
from inspector.formats import expand_cache, nemo

SIZE = 256 << 10  # bytes of zeros in each archive: its expanded copy is a little larger


def _gz_nemo(path: Path, fill: int = SIZE) -> Path:
    raw = io.BytesIO()
    buf = io.BytesIO()
    torch.save({"w": torch.ones(3)}, buf)
    members = {"./model_config.yaml": b"x: 1\n", "./model_weights.ckpt": buf.getvalue(),
               "./pad.bin": bytes(fill)}
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    with gzip.open(path, "wb") as f:
        f.write(raw.getvalue())
    return path


def _cached(cache: Path) -> list[str]:
    return sorted(p.name.rsplit("-", 1)[0] for p in cache.iterdir())


def test_least_recently_used_entries_are_evicted(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    files = {n: _gz_nemo(tmp_path / f"{n}.nemo") for n in "abc"}
    cache = tmp_path / "cache"
    monkeypatch.setenv(expand_cache.CACHE_MAX_ENV, str(SIZE * 5 // 2))  # room for two
    inspector.open(files["a"], cache_dir=cache)
    inspector.open(files["b"], cache_dir=cache)
    assert _cached(cache) == ["a", "b"]
    inspector.open(files["a"], cache_dir=cache)  # a used again: b is now the oldest
    inspector.open(files["c"], cache_dir=cache)
    assert _cached(cache) == ["a", "c"]
    assert sum(size for _, size, _ in expand_cache.entries(cache)) <= SIZE * 5 // 2


def test_an_entry_larger_than_the_cap_is_still_expanded_and_kept_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setenv(expand_cache.CACHE_MAX_ENV, "1")
    inspector.open(_gz_nemo(tmp_path / "a.nemo"), cache_dir=cache)
    ckpt = inspector.open(_gz_nemo(tmp_path / "b.nemo"), cache_dir=cache)
    assert list(ckpt) == ["w"]
    assert _cached(cache) == ["b"]


def test_bad_cache_cap_is_an_error_naming_the_variable(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(expand_cache.CACHE_MAX_ENV, "lots")
    with pytest.raises(ArchiveError, match="CKPT_INSPECTOR_CACHE_MAX_BYTES='lots'"):
        inspector.open(_gz_nemo(tmp_path / "a.nemo"), cache_dir=tmp_path / "cache")


def test_too_little_space_is_refused_before_expanding(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    usage = namedtuple("usage", "total used free")
    free = nemo.MIN_FREE_BYTES + SIZE // 2  # less than the copy needs above the reserve
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(1 << 40, 0, free))
    cache = tmp_path / "cache"
    gz = _gz_nemo(tmp_path / "old.nemo")
    with pytest.raises(ArchiveError) as info:
        inspector.open(gz, cache_dir=cache)
    message = str(info.value)
    assert message.startswith(f"{gz}: expanding it needs about ")
    assert f"{free:,} bytes free" in message
    assert "--cache-dir" in message
    assert list(cache.iterdir()) == []


def test_cli_cache_dir_option_and_environment(tmp_path: Path) -> None:
    gz = _gz_nemo(tmp_path / "old.nemo")
    chosen, env_dir = tmp_path / "chosen", tmp_path / "from-env"
    done = ckpt("ls", "--cache-dir", chosen, gz, timeout=120)
    assert done.returncode == 0, done.stderr
    assert _cached(chosen) == ["old"]
    done = ckpt("hash", gz, env={**_env(), expand_cache.CACHE_DIR_ENV: str(env_dir)}, timeout=120)
    assert done.returncode == 0, done.stderr
    assert _cached(env_dir) == ["old"]


def _env() -> dict[str, str]:
    from subproc import child_env

    return child_env()


def test_processes_expanding_the_same_file_share_one_entry(tmp_path: Path) -> None:
    from subproc import popen

    gz = _gz_nemo(tmp_path / "old.nemo", fill=8 << 20)
    cache = tmp_path / "cache"
    children = [popen("-m", "inspector.cli", "ls", "--cache-dir", str(cache), str(gz),
                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for _ in range(3)]
    for child in children:
        _, err = child.communicate(timeout=120)
        assert child.returncode == 0, err
    assert [p.name for p in cache.iterdir() if not p.name.endswith(".tar")] == []  # no .part
    assert _cached(cache) == ["old"]
