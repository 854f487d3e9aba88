"""`ckpt convert` / `inspector.convert`: the same tensors in another format, verified.

Outputs are loaded back by their real consumers (torch.load, safetensors); the command runs as
a user runs it (a subprocess); the API is called twice.
"""

from __future__ import annotations

import types

import pytest
import torch
from safetensors.torch import load_file
from subproc import ckpt

import inspector
from inspector import converting
from inspector.demo import build_demo


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    return build_demo(tmp_path_factory.mktemp("demo"))


def _weights(path) -> dict[str, torch.Tensor]:  # type: ignore[no-untyped-def]
    return torch.load(path, weights_only=True)["state_dict"]


def test_convert_pt_to_safetensors_loads_back_in_safetensors(demo, tmp_path):
    out = tmp_path / "char.safetensors"
    done = ckpt("convert", demo.source, "-o", out)
    assert done.returncode == 0, done.stderr
    assert "verified: OK" in done.stdout
    back, ref = load_file(out), _weights(demo.source)
    assert set(back) == set(ref)
    for name, t in ref.items():
        assert torch.equal(back[name], t), name


def test_convert_keeps_the_container_in_a_pt_output(demo, tmp_path):
    out = tmp_path / "char.pt"
    done = ckpt("convert", demo.source, "-o", out, "--json")
    assert done.returncode == 0, done.stderr
    loaded = torch.load(out, weights_only=True)
    assert loaded["epoch"] == 41
    assert set(loaded["state_dict"]) == set(_weights(demo.source))


def test_convert_refuses_to_write_over_its_input(demo, tmp_path):
    copy = tmp_path / "in.pt"
    copy.write_bytes(demo.source.read_bytes())
    before = copy.read_bytes()
    done = ckpt("convert", copy, "-o", copy)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert copy.read_bytes() == before


def test_api_twice_gives_the_same_verified_output(demo, tmp_path):
    for i in range(2):
        report = inspector.convert(demo.source, tmp_path / f"out{i}.safetensors")
        assert report.verified == report.tensors > 0
        assert report.mismatches == []
    assert (tmp_path / "out0.safetensors").read_bytes() == (
        tmp_path / "out1.safetensors").read_bytes()


def test_a_corrupted_output_fails_verification_and_nothing_is_written(demo, tmp_path,
                                                                       monkeypatch):
    real = converting.writer

    def corrupting(fmt):  # type: ignore[no-untyped-def]
        spec, mod = real(fmt)

        def write(output, path, **kw):  # type: ignore[no-untyped-def]
            getattr(mod, spec.function)(output, path, **kw)
            data = bytearray(path.read_bytes())
            data[-1] ^= 0xFF  # the last byte of the last tensor
            path.write_bytes(bytes(data))

        return spec, types.SimpleNamespace(**{spec.function: write})

    monkeypatch.setattr(converting, "writer", corrupting)
    out = tmp_path / "bad.safetensors"
    with pytest.raises(inspector.WriteError, match="verification failed"):
        inspector.convert(demo.source, out)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.filterwarnings("ignore:torch.distributed is disabled:UserWarning")
def test_convert_to_dcp_with_shards_loads_in_torch(demo, tmp_path):
    import torch.distributed.checkpoint as dcp

    out = tmp_path / "dcp"
    done = ckpt("convert", demo.source, "--format", "dcp", "--shards", "2", "-o", out)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in out.glob("*.distcp")) == ["__0_0.distcp", "__1_0.distcp"]
    ref = _weights(demo.source)
    back = {"state_dict": {k: torch.zeros_like(v) for k, v in ref.items()}}
    dcp.load(back, checkpoint_id=str(out), no_dist=True)
    for name, t in ref.items():
        assert torch.equal(back["state_dict"][name], t), name


def test_shards_with_another_format_is_refused(demo, tmp_path):
    done = ckpt("convert", demo.source, "--shards", "2", "-o", tmp_path / "x.safetensors")
    assert done.returncode == 2
    assert "--shards applies to DCP output" in done.stderr
