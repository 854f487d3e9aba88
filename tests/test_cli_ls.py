from __future__ import annotations

from pathlib import Path

import yaml
from subproc import ckpt

NEMO = Path(__file__).parent / "data" / "conformer_ctc_bpe_small.nemo"


def test_ls_shows_the_nemo_config_and_artifacts():
    out = ckpt("ls", NEMO, "--depth", "1")
    assert out.returncode == 0, out.stderr
    assert (
        "config: 17 keys, nemo.collections.asr.models.ctc_bpe_models.EncDecCTCModelBPE"
        in out.stdout
    )
    artifacts = [line for line in out.stdout.splitlines() if line.startswith("artifact: ")]
    assert len(artifacts) == 3
    assert any(line.startswith("artifact: ") and "_tokenizer.model" in line for line in artifacts)


def test_ls_config_prints_model_config_yaml_as_parsed():
    import tarfile

    out = ckpt("ls", NEMO, "--config")
    assert out.returncode == 0, out.stderr
    with tarfile.open(NEMO) as tar:
        member = tar.extractfile("./model_config.yaml")
        assert member is not None
        expected = yaml.safe_load(member.read())
    assert yaml.safe_load(out.stdout) == expected


def test_ls_config_without_a_config_is_an_input_error(tmp_path):
    import numpy as np
    from safetensors import numpy as safetensors_numpy

    safetensors_numpy.save_file({"w": np.ones(2, np.float32)}, tmp_path / "w.safetensors")
    out = ckpt("ls", tmp_path / "w.safetensors", "--config")
    assert out.returncode == 2
    assert "w.safetensors" in out.stderr
    assert "no model config" in out.stderr


def test_ls_of_names_thousands_of_segments_deep(tmp_path):
    """A name of 5000 segments, and 2000 names each one level deeper than the last (no chain to
    collapse): listed at any depth, as a tree, flat and as JSON (a RecursionError traceback
    before)."""
    import json

    import numpy as np
    from safetensors import numpy as safetensors_numpy

    tensors = {".".join(["a"] * 5000): np.ones(2, np.float32)}
    tensors.update({".".join(["b"] * k + ["w"]): np.ones(2, np.float32) for k in range(1, 2000)})
    path = tmp_path / "deep.safetensors"
    safetensors_numpy.save_file(tensors, path)
    for args in (["--depth", "3000"], [], ["--flat"], ["--json"]):
        out = ckpt("ls", path, *args)
        assert out.returncode == 0, out.stderr[-2000:]
        assert "Traceback" not in out.stderr
    assert len(json.loads(out.stdout)["tensors"]) == 2000
