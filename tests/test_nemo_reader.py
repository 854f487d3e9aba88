""".nemo archives: the real NeMo file in tests/data, and layouts built here with tarfile."""

from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path

import pytest
import torch
import yaml
from subproc import python

import inspector

DATA = Path(__file__).parent / "data"
FIXTURE = DATA / "conformer_ctc_bpe_small.nemo"


def _extract(nemo: Path, member: str, dest: Path) -> Path:
    """The test's own extraction (the reader never extracts): tarfile, for the reference."""
    with tarfile.open(nemo) as tar:
        f = tar.extractfile(member)
        assert f is not None
        dest.write_bytes(f.read())
    return dest


def _raw(t: torch.Tensor) -> bytes:
    return t.contiguous().view(-1).view(torch.uint8).numpy().tobytes()


def _assert_same_tensors(ckpt: inspector.Checkpoint, ref: dict[str, torch.Tensor]) -> None:
    assert list(ckpt) == list(ref)
    for name, t in ref.items():
        info = ckpt[name]
        assert info.dtype == str(t.dtype).removeprefix("torch."), name
        assert info.shape == tuple(t.shape), name
        assert info.strides == tuple(t.stride()), name
        assert ckpt.array(name).tobytes() == _raw(t), name


def test_real_nemo_file_matches_torch_load(tmp_path):
    ckpt = inspector.open(FIXTURE)
    assert ckpt.format == "nemo"
    ref = torch.load(
        _extract(FIXTURE, "./model_weights.ckpt", tmp_path / "w.ckpt"), weights_only=True
    )
    assert len(ref) == 90
    _assert_same_tensors(ckpt, ref)
    # Read in place: every byte range lies inside the .nemo, after the weights member's header.
    member = ckpt.metadata["weights"]
    assert member["member"] == "./model_weights.ckpt"
    for info in ckpt.values():
        assert info.storage.source.path == str(FIXTURE.resolve())
        start, end = info.byte_range  # type: ignore[misc]
        assert member["offset"] <= start <= end <= member["offset"] + member["size"]


def test_real_nemo_config_and_artifacts(tmp_path):
    ckpt = inspector.open(FIXTURE)
    config_text = _extract(FIXTURE, "./model_config.yaml", tmp_path / "c.yaml").read_text()
    assert ckpt.metadata["config"] == yaml.safe_load(config_text)
    assert ckpt.metadata["config"]["encoder"]["d_model"] == 144
    with tarfile.open(FIXTURE) as tar:
        files = {m.name.removeprefix("./"): m for m in tar.getmembers() if m.isfile()}
    artifacts = {a["name"]: a for a in ckpt.metadata["artifacts"]}
    assert set(artifacts) == set(files) - {"model_config.yaml", "model_weights.ckpt"}
    for name, a in artifacts.items():
        assert a["size"] == files[name].size
        assert a["offset"] == files[name].offset_data
        assert a["referenced"], name  # the tokenizer config points at each one as nemo:<name>
    assert ckpt.notes == []


def test_tar_gz_nemo_is_expanded_into_the_cache(tmp_path):
    gz = tmp_path / "old.nemo"
    with open(FIXTURE, "rb") as src, gzip.open(gz, "wb") as dst:
        dst.write(src.read())
    cache = tmp_path / "cache"
    ckpt = inspector.open(gz, cache_dir=cache)
    (expanded,) = cache.iterdir()
    assert ckpt.metadata["expanded_to"] == str(expanded)
    assert any(str(expanded) in n for n in ckpt.notes)
    assert expanded.read_bytes() == FIXTURE.read_bytes()
    ref = inspector.open(FIXTURE)
    assert [(n, t.shape, t.dtype) for n, t in ckpt.items()] == [
        (n, t.shape, t.dtype) for n, t in ref.items()
    ]
    assert ckpt.files == [str(expanded)]
    mtime = expanded.stat().st_mtime_ns
    inspector.open(gz, cache_dir=cache)  # unchanged source: the expanded copy is reused
    assert [p.stat().st_mtime_ns for p in cache.iterdir()] == [mtime]


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _torch_bytes(obj: object) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


@pytest.mark.parametrize("fmt", [tarfile.GNU_FORMAT, tarfile.PAX_FORMAT, tarfile.USTAR_FORMAT])
def test_built_nemo_without_dot_prefix(tmp_path, fmt):
    sd = {"encoder.w": torch.randn(4, 3), "decoder.b": torch.arange(6, dtype=torch.int32)}
    sd["decoder.tied"] = sd["encoder.w"]
    config = {
        "tokenizer": {"model_path": "nemo:abc_tokenizer.model", "gone": "nemo:missing.txt"},
        "n": 3,
    }
    path = tmp_path / "m.nemo"
    with tarfile.open(path, "w", format=fmt) as tar:
        _add(tar, "model_config.yaml", yaml.safe_dump(config).encode())
        _add(tar, "abc_tokenizer.model", b"tok")
        _add(tar, "unused_vocab.txt", b"a\nb\n")
        _add(tar, "model_weights.ckpt", _torch_bytes(sd))
    ckpt = inspector.open(path)
    ref = torch.load(_extract(path, "model_weights.ckpt", tmp_path / "w"), weights_only=True)
    _assert_same_tensors(ckpt, ref)
    assert ckpt.tied_groups() == [["encoder.w", "decoder.tied"]]
    assert ckpt.metadata["config"] == config
    referenced = {a["name"]: a["referenced"] for a in ckpt.metadata["artifacts"]}
    assert referenced == {"abc_tokenizer.model": True, "unused_vocab.txt": False}
    assert any("nemo:missing.txt" in n for n in ckpt.notes)


def test_model_parallel_ranks(tmp_path):
    ranks = {f"mp_rank_{r:02d}": {"layer.w": torch.full((2, r + 1), float(r))} for r in range(2)}
    path = tmp_path / "mp.nemo"
    with tarfile.open(path, "w") as tar:
        _add(tar, "./model_config.yaml", b"tensor_model_parallel_size: 2\n")
        for rank, sd in ranks.items():
            _add(tar, f"./{rank}/model_weights.ckpt", _torch_bytes(sd))
    ckpt = inspector.open(path)
    assert ckpt.metadata["model_parallel_ranks"] == ["mp_rank_00", "mp_rank_01"]
    assert any("model-parallel" in n for n in ckpt.notes)
    assert sorted(ckpt) == ["mp_rank_00.layer.w", "mp_rank_01.layer.w"]
    for rank, sd in ranks.items():
        assert ckpt.array(f"{rank}.layer.w").tobytes() == _raw(sd["layer.w"])
    assert ckpt.tied_groups() == []  # both ranks' record 0 are different storages
    assert ckpt.metadata["artifacts"] == []


@pytest.mark.filterwarnings("ignore:torch.distributed is disabled:UserWarning")
def test_distributed_model_weights_folder_read_in_place(tmp_path):
    import torch.distributed.checkpoint as dcp

    sd = {"decoder.w": torch.randn(3, 5), "encoder.b": torch.arange(4.0)}
    folder = tmp_path / "dist"
    dcp.save(sd, checkpoint_id=str(folder))
    path = tmp_path / "dist.nemo"
    with tarfile.open(path, "w") as tar:
        _add(tar, "./model_config.yaml", b"a: 1\n")
        for f in sorted(folder.iterdir()):
            _add(tar, f"./model_weights/{f.name}", f.read_bytes())
    ckpt = inspector.open(path)
    assert any("model_weights/" in n for n in ckpt.notes)
    assert sorted(ckpt) == sorted(sd)
    for name, t in sd.items():
        assert ckpt.array(name).tobytes() == _raw(t)
        assert ckpt[name].storage.source.path == str(path.resolve())
    assert ckpt.metadata["artifacts"] == []


def test_reading_a_nemo_file_does_not_import_torch():

    code = (
        "import sys, inspector; c = inspector.open(sys.argv[1]); c.array(next(iter(c))); "
        "assert len(c) == 90; assert 'torch' not in sys.modules, 'torch imported'"
    )
    python("-c", code, FIXTURE, check=True)


def _zeros_gz(path: Path, nbytes: int) -> Path:
    """A small, highly compressible tar.gz .nemo: a config, tiny weights and an artifact of
    `nbytes` zeros (compressed about 1000:1)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        _add(tar, "./model_config.yaml", b"tokenizer: nemo:zeros.bin\n")
        _add(tar, "./model_weights.ckpt", _torch_bytes({"w": torch.ones(3)}))
        _add(tar, "./zeros.bin", bytes(nbytes))
    with gzip.open(path, "wb") as f:
        f.write(raw.getvalue())
    return path


def test_gzip_expansion_past_the_cap_is_stopped(tmp_path, monkeypatch):
    from inspector.errors import ArchiveError
    from inspector.formats import nemo

    gz = _zeros_gz(tmp_path / "bomb.nemo", 8 << 20)
    assert gz.stat().st_size * nemo.MAX_GZIP_RATIO < 8 << 20
    monkeypatch.setattr(nemo, "MIN_GZIP_LIMIT", 2 << 20)  # the floor: above the ratio cap here
    cache = tmp_path / "cache"
    with pytest.raises(ArchiveError, match=r"bomb\.nemo: gzip data expands past 2,097,152 bytes"):
        inspector.open(gz, cache_dir=cache)
    assert list(cache.iterdir()) == []  # the partial copy is removed
    # The override lets a user expand a file that really is that compressible.
    monkeypatch.setenv(nemo.GZIP_LIMIT_ENV, str(16 << 20))
    ckpt = inspector.open(gz, cache_dir=cache)
    assert list(ckpt) == ["w"]
    monkeypatch.setenv(nemo.GZIP_LIMIT_ENV, "lots")
    with pytest.raises(ArchiveError, match="CKPT_INSPECTOR_MAX_EXPANDED_BYTES='lots'"):
        inspector.open(gz, cache_dir=tmp_path / "fresh")  # not the expanded copy of `cache`


def test_gzip_expansion_stops_when_the_disk_fills(tmp_path, monkeypatch):
    import shutil
    from collections import namedtuple

    from inspector.errors import ArchiveError
    from inspector.formats import nemo

    gz = _zeros_gz(tmp_path / "old.nemo", 4 << 20)
    usage = namedtuple("usage", "total used free")
    calls = []

    def fake_usage(path):  # plenty free at the start, then the disk fills up while writing
        calls.append(path)
        return usage(1 << 40, 0, (1 << 40) if len(calls) == 1 else nemo.MIN_FREE_BYTES - 1)

    monkeypatch.setattr(shutil, "disk_usage", fake_usage)
    monkeypatch.setattr(nemo, "_FREE_CHECK_EVERY", 2)
    cache = tmp_path / "cache"
    with pytest.raises(ArchiveError, match=r"old\.nemo: stopped expanding.*cache.*bytes free"):
        inspector.open(gz, cache_dir=cache)
    assert len(calls) == 2
    assert list(cache.iterdir()) == []


def _broken_weights_gz(path: Path) -> Path:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        _add(tar, "./model_config.yaml", b"sample_rate: 16000\n")
        _add(tar, "./model_weights.ckpt", _torch_bytes({"w": torch.ones(3)})[:200])
    with gzip.open(path, "wb") as f:
        f.write(raw.getvalue())
    return path


def test_tar_gz_errors_name_the_users_file(tmp_path):
    """The problem is in the user's old.nemo (and which member); the cached copy comes after."""
    from inspector.errors import CheckpointError

    gz = _broken_weights_gz(tmp_path / "old.nemo")
    cache = tmp_path / "cache"
    with pytest.raises(CheckpointError) as info:
        inspector.open(gz, cache_dir=cache)
    message = str(info.value)
    assert message.startswith(f"{gz}:./model_weights.ckpt: ")
    (copy,) = cache.iterdir()
    assert message.endswith(f"(in its expanded copy {copy})")
    assert info.value.path == f"{gz}:./model_weights.ckpt"


@pytest.mark.parametrize("fmt", [tarfile.GNU_FORMAT, tarfile.PAX_FORMAT, tarfile.USTAR_FORMAT])
def test_nemo_without_its_suffix_is_chosen_by_content(tmp_path, fmt):
    """A renamed .nemo (or `ckpt apply -o OUT` for a .nemo target) is a tar holding the config."""
    plain = tmp_path / "model"
    with tarfile.open(plain, "w", format=fmt) as tar:
        _add(tar, "./model_config.yaml", b"sample_rate: 16000\n")
        _add(tar, "./model_weights.ckpt", _torch_bytes({"w": torch.ones(3)}))
    ckpt = inspector.open(plain)
    assert ckpt.format == "nemo"
    assert list(ckpt.tensors) == ["w"]
    other = tmp_path / "other.tar"
    with tarfile.open(other, "w", format=fmt) as tar:
        _add(tar, "notes.txt", b"not a model\n")
    from inspector.errors import UnsupportedFormatError

    with pytest.raises(UnsupportedFormatError, match=r"other\.tar: not a checkpoint file"):
        inspector.open(other)
