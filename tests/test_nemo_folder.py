"""Extracted .nemo folders: the real NeMo file extracted here with tarfile, layouts built here."""

from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path

import pytest
import torch
import yaml
from subproc import python

import inspector
from inspector.applying import apply
from inspector.cli import main
from inspector.errors import MissingRecordError, UnsafeArchiveMemberError, WriteError
from inspector.mapping import propose

FIXTURE = Path(__file__).parent / "data" / "conformer_ctc_bpe_small.nemo"


def _extracted(dest: Path) -> Path:
    with tarfile.open(FIXTURE) as tar:
        tar.extractall(dest, filter="data")
    return dest


def _raw(t: torch.Tensor) -> bytes:
    return t.contiguous().view(-1).view(torch.uint8).numpy().tobytes()


def _tensors(ckpt: inspector.Checkpoint) -> list[tuple[str, tuple[int, ...], str, bytes]]:
    return [(n, t.shape, t.dtype, ckpt.array(n).tobytes()) for n, t in ckpt.items()]


def _config(folder: Path, **config: object) -> Path:
    folder.mkdir()
    (folder / "model_config.yaml").write_text(yaml.safe_dump(config))
    return folder


def test_extracted_folder_reads_like_the_nemo_and_torch_load(tmp_path):
    folder = _extracted(tmp_path / "model")
    ckpt = inspector.open(folder)
    nemo = inspector.open(FIXTURE)
    assert ckpt.format == "nemo-folder"
    assert _tensors(ckpt) == _tensors(nemo)
    ref = torch.load(folder / "model_weights.ckpt", weights_only=True)
    assert list(ckpt) == list(ref)
    assert len(ref) == 90
    for name, t in ref.items():
        info = ckpt[name]
        assert (info.dtype, info.shape, info.strides) == (
            str(t.dtype).removeprefix("torch."), tuple(t.shape), tuple(t.stride())
        ), name
        assert ckpt.array(name).tobytes() == _raw(t), name
        # read in place: the byte ranges lie in the extracted weights file
        assert info.storage.source.path == str((folder / "model_weights.ckpt").resolve())
    assert ckpt.tied_groups() == nemo.tied_groups()
    assert ckpt.notes == []


def test_extracted_folder_config_and_artifacts(tmp_path):
    folder = _extracted(tmp_path / "model")
    ckpt = inspector.open(folder)
    config = yaml.safe_load((folder / "model_config.yaml").read_text())
    assert ckpt.metadata["config"] == config == inspector.open(FIXTURE).metadata["config"]
    artifacts = {a["name"]: a for a in ckpt.metadata["artifacts"]}
    on_disk = {p.name for p in folder.iterdir()} - {"model_config.yaml", "model_weights.ckpt"}
    assert set(artifacts) == on_disk
    assert len(on_disk) == 3
    for name, a in artifacts.items():
        assert a["size"] == (folder / name).stat().st_size
        assert a["referenced"], name  # the tokenizer config points at each as nemo:<name>
    weights = ckpt.metadata["weights"]
    assert weights["member"] == "model_weights.ckpt"
    assert weights["size"] == (folder / "model_weights.ckpt").stat().st_size


def test_unreferenced_artifact_and_missing_reference(tmp_path):
    folder = _config(tmp_path / "m", tokenizer={"model": "nemo:tok.model", "gone": "nemo:x.txt"})
    torch.save({"w": torch.ones(2)}, folder / "model_weights.ckpt")
    (folder / "tok.model").write_bytes(b"tok")
    (folder / "extra.txt").write_bytes(b"e")
    ckpt = inspector.open(folder)
    referenced = {a["name"]: a["referenced"] for a in ckpt.metadata["artifacts"]}
    assert referenced == {"extra.txt": False, "tok.model": True}
    assert any("nemo:x.txt" in n and "not in the folder" in n for n in ckpt.notes)


def test_ckpt_ls_on_the_folder(tmp_path, capsys):
    folder = _extracted(tmp_path / "model")
    assert main(["ls", "--json", str(folder)]) == 0
    doc = json.loads(capsys.readouterr().out)
    ref = torch.load(folder / "model_weights.ckpt", weights_only=True)
    assert {t["name"]: tuple(t["shape"]) for t in doc["tensors"]} == {
        k: tuple(v.shape) for k, v in ref.items()
    }
    assert main(["ls", str(folder)]) == 0
    assert "nemo-folder" in capsys.readouterr().out


def test_model_parallel_rank_folders(tmp_path):
    folder = _config(tmp_path / "mp", tensor_model_parallel_size=2)
    ranks = {f"mp_rank_{r:02d}": {"layer.w": torch.full((2, r + 1), float(r))} for r in range(2)}
    for rank, sd in ranks.items():
        (folder / rank).mkdir()
        torch.save(sd, folder / rank / "model_weights.ckpt")
    ckpt = inspector.open(folder)
    assert ckpt.metadata["model_parallel_ranks"] == list(ranks)
    assert sorted(ckpt) == ["mp_rank_00.layer.w", "mp_rank_01.layer.w"]
    for rank, sd in ranks.items():
        assert ckpt.array(f"{rank}.layer.w").tobytes() == _raw(sd["layer.w"])
    assert ckpt.tied_groups() == []  # both ranks' record 0 are different storages
    assert ckpt.metadata["artifacts"] == []


@pytest.mark.filterwarnings("ignore:torch.distributed is disabled:UserWarning")
def test_distributed_model_weights_folder(tmp_path):
    import torch.distributed.checkpoint as dcp

    folder = _config(tmp_path / "dist", a=1)
    sd = {"decoder.w": torch.randn(3, 5), "encoder.b": torch.arange(4.0)}
    dcp.save(sd, checkpoint_id=str(folder / "model_weights"))
    ckpt = inspector.open(folder)
    assert sorted(ckpt) == sorted(sd)
    for name, t in sd.items():
        assert ckpt.array(name).tobytes() == _raw(t)
    assert ckpt.metadata["artifacts"] == []


def test_config_without_weights_is_a_missing_record(tmp_path):
    folder = _config(tmp_path / "empty", a=1)
    (folder / "tokenizer.model").write_bytes(b"tok")
    with pytest.raises(MissingRecordError, match="no weights in the folder") as e:
        inspector.open(folder)
    assert str(folder) in str(e.value)
    assert "model_weights.ckpt" in str(e.value)


def test_weights_symlink_escaping_the_folder_is_refused(tmp_path):
    outside = tmp_path / "elsewhere.ckpt"
    torch.save({"w": torch.ones(2)}, outside)
    folder = _config(tmp_path / "m", a=1)
    (folder / "model_weights.ckpt").symlink_to(outside)
    with pytest.raises(UnsafeArchiveMemberError, match="outside the folder") as e:
        inspector.open(folder)
    assert e.value.key == "model_weights.ckpt"
    (folder / "model_weights.ckpt").unlink()
    (folder / "model_weights.ckpt").symlink_to("../elsewhere.ckpt")  # relative: the same
    with pytest.raises(UnsafeArchiveMemberError, match="outside the folder"):
        inspector.open(folder)


def test_escaping_artifact_and_folder_links_are_refused(tmp_path):
    folder = _config(tmp_path / "m", a=1)
    torch.save({"w": torch.ones(2)}, folder / "model_weights.ckpt")
    (folder / "tok.model").symlink_to("/etc/hostname")
    with pytest.raises(UnsafeArchiveMemberError, match="outside the folder"):
        inspector.open(folder)
    (folder / "tok.model").unlink()
    (folder / "sub").symlink_to(tmp_path, target_is_directory=True)
    with pytest.raises(UnsafeArchiveMemberError, match="outside the folder") as e:
        inspector.open(folder)
    assert e.value.key == "sub"


def test_links_inside_the_folder_are_followed(tmp_path):
    folder = _config(tmp_path / "m", a=1)
    (folder / "blobs").mkdir()
    sd = {"w": torch.arange(6.0).reshape(2, 3)}
    torch.save(sd, folder / "blobs" / "abc")
    (folder / "model_weights.ckpt").symlink_to("blobs/abc")
    ckpt = inspector.open(folder)
    assert ckpt.array("w").tobytes() == _raw(sd["w"])
    assert ckpt["w"].storage.source.path == str((folder / "blobs" / "abc").resolve())
    assert [a["name"] for a in ckpt.metadata["artifacts"]] == ["blobs/abc"]


def test_folder_link_loop_dangling_link_and_fifo_are_refused(tmp_path):
    folder = _config(tmp_path / "m", a=1)
    torch.save({"w": torch.ones(2)}, folder / "model_weights.ckpt")
    (folder / "sub").mkdir()
    (folder / "sub" / "up").symlink_to("..", target_is_directory=True)
    with pytest.raises(UnsafeArchiveMemberError, match="loop") as e:
        inspector.open(folder)
    assert e.value.key == "sub/up"
    (folder / "sub" / "up").unlink()
    (folder / "sub" / "gone").symlink_to("nothing-here")
    with pytest.raises(MissingRecordError, match="does not exist"):
        inspector.open(folder)
    (folder / "sub" / "gone").unlink()
    os.mkfifo(folder / "sub" / "pipe")  # opening it would block: refused before any read
    with pytest.raises(UnsafeArchiveMemberError, match="FIFO"):
        inspector.open(folder)


def test_reading_the_folder_does_not_import_torch(tmp_path):
    folder = _extracted(tmp_path / "model")
    code = (
        "import sys, inspector; c = inspector.open(sys.argv[1]); c.array(next(iter(c))); "
        "assert len(c) == 90; assert 'torch' not in sys.modules, 'torch imported'"
    )
    python("-c", code, folder, check=True)


# Writing a folder target --------------------------------------------------------------------------


def _plan(tmp_path: Path, folder: Path) -> dict[str, torch.Tensor]:
    state = torch.load(folder / "model_weights.ckpt", weights_only=True)
    src = {k: v + 1 if v.is_floating_point() else v for k, v in state.items()}
    torch.save(src, tmp_path / "src.pt")
    return src


def test_folder_target_is_written_as_its_weights_file(tmp_path):
    folder = _extracted(tmp_path / "model")
    src = _plan(tmp_path, folder)
    plan = propose(tmp_path / "src.pt", folder)
    plan.approve(plan.under("encoder"))
    plan.reject([n for n in plan.entries if not n.startswith("encoder")])
    out = tmp_path / "new_weights"  # no suffix: the target's own format
    report = apply(plan, out)
    assert report.format == "torch-zip"
    assert report.verification is not None
    assert report.verification.ok
    got = torch.load(out, weights_only=True)
    before = torch.load(folder / "model_weights.ckpt", weights_only=True)
    assert list(got) == list(before)
    for k, v in got.items():
        assert torch.equal(v, src[k] if k.startswith("encoder") else before[k]), k


def test_folder_target_to_a_nemo_output_is_refused(tmp_path):
    folder = _extracted(tmp_path / "model")
    _plan(tmp_path, folder)
    plan = propose(tmp_path / "src.pt", folder)
    plan.approve(plan.under("encoder"))
    plan.reject([n for n in plan.entries if not n.startswith("encoder")])
    with pytest.raises(WriteError, match=r"\.nemo target"):
        apply(plan, tmp_path / "out.nemo")
    assert not (tmp_path / "out.nemo").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model", "src.pt"]


def test_weights_read_from_bytes_equal_the_tar_member(tmp_path):
    """The folder's weights file is byte for byte the .nemo member the .nemo reader parses."""
    folder = _extracted(tmp_path / "model")
    weights = inspector.open(FIXTURE).metadata["weights"]
    with open(FIXTURE, "rb") as f:
        f.seek(weights["offset"])
        member = f.read(weights["size"])
    assert (folder / "model_weights.ckpt").read_bytes() == member
    assert torch.load(io.BytesIO(member), weights_only=True).keys() == inspector.open(folder).keys()
