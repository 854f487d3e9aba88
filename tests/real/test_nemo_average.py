"""`ckpt average` of two .nemo files written by NeMo's own `save_to`: NeMo restores the output,
its weights are the mean, its config and tokenizer are the first model's."""

from __future__ import annotations

import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from real_helpers import NemoModels, state_arrays
from subproc import ckpt

pytest.importorskip("nemo.collections.asr", reason="the real-library tier needs nemo_toolkit[asr]")


def test_average_of_two_nemo_models_restores(nemo_models_built: NemoModels,
                                             tmp_path: Path) -> None:
    from nemo.collections.asr.models import EncDecRNNTBPEModel

    first = nemo_models_built
    other = EncDecRNNTBPEModel.restore_from(str(first.bpe_path), map_location="cpu").eval()
    with torch.no_grad():  # another "epoch": every float weight moved
        for t in other.state_dict().values():
            if t.is_floating_point():
                t.mul_(-0.5).add_(0.25)
    other.save_to(str(tmp_path / "other.nemo"))

    done = ckpt("average", first.bpe_path, tmp_path / "other.nemo", "-o", tmp_path / "avg.nemo")
    assert done.returncode == 0, done.stderr
    restored = EncDecRNNTBPEModel.restore_from(str(tmp_path / "avg.nemo"), map_location="cpu")

    a, b, got = state_arrays(first.bpe), state_arrays(other), state_arrays(restored)
    assert got.keys() == a.keys()
    for name, value in got.items():
        if np.issubdtype(value.dtype, np.floating):
            want = (a[name].astype(np.float64) + b[name].astype(np.float64)) / 2
            np.testing.assert_allclose(value, want, rtol=1e-6, atol=1e-7, err_msg=name)
        else:
            assert np.array_equal(value, (a[name] + b[name]) // 2), name
    assert restored.tokenizer.vocab_size == first.bpe.tokenizer.vocab_size
    kept, original = members(tmp_path / "avg.nemo"), members(first.bpe_path)
    assert kept.keys() == original.keys()
    for name, data in original.items():  # config, tokenizer model, vocab: byte for byte
        if not name.endswith("model_weights.ckpt"):
            assert kept[name] == data, name


def members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as tar:
        return {m.name: tar.extractfile(m).read()  # type: ignore[union-attr]
                for m in tar.getmembers() if m.isfile()}
