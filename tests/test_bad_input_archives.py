"""Malformed safetensors files, indexes, tars and .nemo archives, each built here.

Every one must raise its own error class from inspector.errors, with a message naming the file
and (where there is one) the tensor or member; none may crash, hang or be silently skipped.
"""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from safetensors_cases import CASES

import inspector
from inspector import errors

# safetensors (the cases are in safetensors_cases.py) --------------------------------------------


def _expect(
    path: Path, error: type[errors.CheckpointError], key: str | None = None
) -> errors.CheckpointError:
    with pytest.raises(errors.CheckpointError) as info:
        inspector.open(path)
    err = info.value
    assert type(err) is error, f"{type(err).__name__}: {err}"
    assert str(path) in str(err)
    if key is not None:
        assert err.key == key
        assert repr(key) in str(err)
    return err


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_bad_safetensors(tmp_path, case):
    err = _expect(case.make(tmp_path), case.error, case.key)
    if case.says is not None:
        assert case.says in str(err)


# Sharded indexes and HF folders -----------------------------------------------------------------


def _index(folder: Path, weight_map: dict[str, str]) -> Path:
    path = folder / "model.safetensors.index.json"
    path.write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return path


@pytest.mark.parametrize(
    "shard", ["../outside.safetensors", "/abs/outside.safetensors", "sub/../../x.safetensors"]
)
def test_index_points_outside_its_folder(tmp_path, shard):
    folder = tmp_path / "ckpt"
    folder.mkdir()
    save_file({"a": torch.ones(1)}, str(tmp_path / "outside.safetensors"))
    _expect(_index(folder, {"a": shard}), errors.HeaderError, shard)


def test_index_names_missing_shard(tmp_path):
    _expect(_index(tmp_path, {"a": "model-00001-of-00002.safetensors"}), errors.MissingRecordError)


def test_index_names_tensor_the_shard_lacks(tmp_path):
    save_file({"a": torch.ones(1)}, str(tmp_path / "s1.safetensors"))
    index = _index(tmp_path, {"a": "s1.safetensors", "ghost": "s1.safetensors"})
    with pytest.raises(errors.MissingRecordError) as info:
        inspector.open(index)
    assert info.value.key == "ghost"
    assert "s1.safetensors" in str(info.value)


def test_index_tensor_in_two_shards(tmp_path):
    save_file({"a": torch.ones(1)}, str(tmp_path / "s1.safetensors"))
    save_file({"a": torch.ones(1), "b": torch.ones(1)}, str(tmp_path / "s2.safetensors"))
    index = _index(tmp_path, {"a": "s1.safetensors", "b": "s2.safetensors"})
    with pytest.raises(errors.DuplicateKeyError) as info:
        inspector.open(index)
    assert info.value.key == "a"
    assert "s2.safetensors" in str(info.value)


def test_index_weight_map_not_a_map(tmp_path):
    path = tmp_path / "model.safetensors.index.json"
    path.write_text(json.dumps({"weight_map": ["a", "b"]}))
    _expect(path, errors.HeaderError, "weight_map")


def test_hf_config_not_json(tmp_path):
    save_file({"a": torch.ones(1)}, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(errors.HeaderError) as info:
        inspector.open(tmp_path)
    assert "config.json" in str(info.value)


# Tar members and .nemo archives -----------------------------------------------------------------


def _weights_bytes() -> bytes:
    buf = io.BytesIO()
    torch.save({"w": torch.ones(2)}, buf)
    return buf.getvalue()


def _nemo(path: Path, extra: list[tarfile.TarInfo], *, fmt: int = tarfile.PAX_FORMAT) -> Path:
    with tarfile.open(path, "w", format=fmt) as tar:
        for name, data in (
            ("./model_config.yaml", b"a: 1\n"),
            ("./model_weights.ckpt", _weights_bytes()),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for info in extra:
            tar.addfile(info, io.BytesIO(b"x" * info.size) if info.isfile() else None)
    return path


def _member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    info.size = 3 if kind == tarfile.REGTYPE else 0
    return info


UNSAFE_MEMBERS = {
    "dotdot": (_member("../evil.txt"), "../evil.txt"),
    "dotdot-inside": (_member("./a/../../evil.txt"), "./a/../../evil.txt"),
    "absolute": (_member("/etc/evil.txt"), "/etc/evil.txt"),
    "symlink": (_member("./link", tarfile.SYMTYPE, "/etc/passwd"), "./link"),
    "hardlink": (_member("./hard", tarfile.LNKTYPE, "./model_config.yaml"), "./hard"),
    "chardev": (_member("./dev", tarfile.CHRTYPE), "./dev"),
    "fifo": (_member("./fifo", tarfile.FIFOTYPE), "./fifo"),
}


@pytest.mark.parametrize("case", sorted(UNSAFE_MEMBERS))
@pytest.mark.parametrize("fmt", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT])
def test_unsafe_tar_members_are_refused(tmp_path, case, fmt):
    info, name = UNSAFE_MEMBERS[case]
    path = _nemo(tmp_path / "bad.nemo", [info], fmt=fmt)
    with tarfile.open(path) as tar:  # the archive really holds that member
        assert name in tar.getnames() or name.rstrip("/") in tar.getnames()
    err = _expect(path, errors.UnsafeArchiveMemberError, name)
    assert "refused" in str(err)


def test_long_pax_name_with_dotdot_is_refused(tmp_path):
    name = "./" + "d" * 120 + "/../../../evil.txt"
    path = _nemo(tmp_path / "bad.nemo", [_member(name)], fmt=tarfile.PAX_FORMAT)
    _expect(path, errors.UnsafeArchiveMemberError, name)


def test_long_gnu_name_with_dotdot_is_refused(tmp_path):
    name = "./" + "d" * 120 + "/../../../evil.txt"
    path = _nemo(tmp_path / "bad.nemo", [_member(name)], fmt=tarfile.GNU_FORMAT)
    _expect(path, errors.UnsafeArchiveMemberError, name)


def test_nemo_without_weights(tmp_path):
    path = tmp_path / "noweights.nemo"
    with tarfile.open(path, "w") as tar:
        info = tarfile.TarInfo("./model_config.yaml")
        info.size = 5
        tar.addfile(info, io.BytesIO(b"a: 1\n"))
    err = _expect(path, errors.MissingRecordError)
    assert "model_weights.ckpt" in str(err)


def test_nemo_bad_yaml(tmp_path):
    path = tmp_path / "badyaml.nemo"
    with tarfile.open(path, "w") as tar:
        for name, data in (
            ("./model_config.yaml", b"a: [1, 2\n  b: }"),
            ("./model_weights.ckpt", _weights_bytes()),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    _expect(path, errors.HeaderError, "./model_config.yaml")


@pytest.mark.parametrize("where", ["in-header", "in-weights", "before-end-marker"])
def test_truncated_tar(tmp_path, where):
    good = _nemo(tmp_path / "good.nemo", []).read_bytes()
    with tarfile.open(tmp_path / "good.nemo") as tar:
        weights = tar.getmember("./model_weights.ckpt")
    cut = {
        "in-header": weights.offset + 100,
        "in-weights": weights.offset_data + weights.size // 2,
        "before-end-marker": weights.offset_data + -(-weights.size // 512) * 512,
    }[where]
    path = tmp_path / "cut.nemo"
    path.write_bytes(good[:cut])
    _expect(path, errors.TruncatedFileError)


def test_bad_tar_checksum(tmp_path):
    data = bytearray(_nemo(tmp_path / "good.nemo", []).read_bytes())
    data[5] ^= 0xFF  # inside the first header's name field
    path = tmp_path / "bad.nemo"
    path.write_bytes(bytes(data))
    err = _expect(path, errors.ArchiveError)
    assert "checksum" in str(err)


@pytest.mark.parametrize("fraction", [0.3, 0.9])
def test_truncated_tar_gz(tmp_path, fraction):
    tar_bytes = _nemo(tmp_path / "plain.nemo", []).read_bytes()
    gz = gzip.compress(tar_bytes)
    path = tmp_path / "old.nemo"
    path.write_bytes(gz[: int(len(gz) * fraction)])
    cache = tmp_path / "cache"
    err = _expect_with_cache(path, cache, errors.TruncatedFileError)
    assert "gzip" in str(err)
    assert not list(cache.iterdir())  # no partial file left behind


def test_corrupt_tar_gz(tmp_path):
    gz = bytearray(gzip.compress(_nemo(tmp_path / "plain.nemo", []).read_bytes()))
    gz[len(gz) // 2 : len(gz) // 2 + 64] = bytes(64)
    path = tmp_path / "old.nemo"
    path.write_bytes(bytes(gz))
    _expect_with_cache(path, tmp_path / "cache", errors.ArchiveError)


def _expect_with_cache(
    path: Path, cache: Path, error: type[errors.CheckpointError]
) -> errors.CheckpointError:
    with pytest.raises(errors.CheckpointError) as info:
        inspector.open(path, cache_dir=cache)
    assert type(info.value) is error, f"{type(info.value).__name__}: {info.value}"
    assert str(path) in str(info.value)
    return info.value
