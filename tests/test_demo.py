from __future__ import annotations

import tarfile

import numpy as np
import pytest

import inspector
from inspector.demo import BPE_VOCAB_SIZE, CHAR_VOCAB, build_demo


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return build_demo(tmp_path_factory.mktemp("demo"))


def test_demo_files_load_with_the_real_consumers(demo):
    import torch
    src = torch.load(demo.source, weights_only=True)
    assert src["epoch"] == 41
    assert src["state_dict"]["joint.joint_net.2.weight"].shape == (len(CHAR_VOCAB) + 1, 160)
    with tarfile.open(demo.target) as tar:
        names = tar.getnames()
        assert "./model_config.yaml" in names
        assert "./model_weights.ckpt" in names
        weights = tar.extractfile("./model_weights.ckpt")
        assert weights is not None
        sd = torch.load(weights, weights_only=True)
    assert sd["decoder.prediction.embed.weight"].shape == (BPE_VOCAB_SIZE + 1, 160)
    ckpt = inspector.open(demo.target)
    for name in ("encoder.layers.1.conv.depthwise_conv.weight", "joint.enc.weight"):
        np.testing.assert_array_equal(ckpt.array(name), sd[name].numpy())


def test_demo_proposal_has_the_documented_mismatches(demo):
    plan = inspector.propose(demo.source, demo.target)
    flags = {name: e.flags for name, e in plan.entries.items()}
    vocab = {n for n, f in flags.items() if "vocab-change" in f}
    shape = {n for n, f in flags.items() if "shape-mismatch" in f}
    assert vocab == {n for n in plan.entries if n.startswith(("decoder.", "joint."))}
    assert shape == {f"encoder.layers.{i}.conv.depthwise_conv.{leaf}"
                     for i in range(4) for leaf in ("weight", "bias")}  # a bias follows
    copied = {n for n, e in plan.entries.items() if e.decision == "copy"}
    assert copied == set(plan.entries) - vocab - shape
