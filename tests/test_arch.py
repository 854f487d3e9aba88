"""Architecture inference from names and shapes."""

from __future__ import annotations

from mapping_fixtures import nemo_rnnt

import inspector
from inspector.mapping import arch, propose


def test_infer_nemo_rnnt() -> None:
    mods = arch.infer(inspector.open(nemo_rnnt(1024, n_layers=3, d=64, heads=8)))
    assert list(mods) == ["preprocessor", "encoder", "decoder", "joint"]
    (layers,) = [s for s in mods["encoder"].stacks if s.path == "encoder.layers"]
    assert (layers.n_layers, layers.d_model, layers.ffn, layers.heads, layers.conv_kernels) == (3, 64, 256, 8, ((9,),))
    assert mods["decoder"].vocab == 1025
    assert mods["joint"].vocab == 1025


def test_explain_vocabulary_change_and_summary() -> None:
    src, tgt = inspector.open(nemo_rnnt(28)), inspector.open(nemo_rnnt(1024))
    plan = propose(src, tgt)
    assert arch.explain(plan, {"source": src}, tgt) == [
        "decoder, joint: vocabulary changed 29 -> 1025 (kept at target init)"]
    assert arch.transfer_summary(plan) == ["preprocessor 100%", "encoder 100% (4/4 layers)", "decoder 0%", "joint 0%"]
