"""A plan past 2,000 rows in the compact form, on folders transformers wrote: a 130-layer BERT
encoder moved into a BertForMaskedLM (its names under `bert.`), reviewed and applied with the
installed `ckpt`, and the output loaded by from_pretrained with the encoder's forward pass."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from subproc import ckpt

from inspector.mapping.plan import Plan

transformers = pytest.importorskip("transformers", reason="the real tier needs transformers")


def _config() -> object:
    return transformers.BertConfig(vocab_size=100, hidden_size=16, num_hidden_layers=130,
                                   num_attention_heads=2, intermediate_size=32,
                                   max_position_embeddings=32)


def test_a_compact_plan_moves_a_bert_encoder_into_a_masked_lm(tmp_path: Path) -> None:
    torch.manual_seed(0)
    source = transformers.BertModel(_config())
    source.save_pretrained(tmp_path / "base")
    torch.manual_seed(1)
    transformers.BertForMaskedLM(_config()).save_pretrained(tmp_path / "mlm")
    plan_file, out = tmp_path / "plan.yaml", tmp_path / "out"

    done = ckpt("map", tmp_path / "base", tmp_path / "mlm", "-o", plan_file)
    assert done.returncode == 0, done.stderr
    assert plan_file.read_text().startswith("version: 2\n")  # past 2,000 rows: compact
    done = ckpt("plan", "approve", plan_file, "bert.*")
    assert done.returncode == 0, done.stderr
    plan = Plan.load(plan_file)
    assert len(plan.entries) == 2090  # what save_pretrained wrote (tied weights once)
    assert all(e.status == "approved" for n, e in plan.entries.items() if n.startswith("bert."))
    done = ckpt("apply", plan_file, "-o", out, "--accept-proposed")
    assert done.returncode == 0, done.stderr

    model, info = transformers.BertForMaskedLM.from_pretrained(out, output_loading_info=True)
    assert not info["missing_keys"]
    assert not info["unexpected_keys"]
    expected = source.state_dict()
    for name, tensor in model.bert.state_dict().items():
        assert torch.equal(tensor, expected[name]), name
    ids = torch.randint(0, 100, (2, 12), generator=torch.Generator().manual_seed(2))
    source.eval()  # from_pretrained's model is in eval mode: no dropout on either side
    with torch.no_grad():
        assert torch.allclose(model.bert(ids).last_hidden_state, source(ids).last_hidden_state)
