"""fairseq wav2vec2 and HuBERT -> HF, with the built-in rules, against transformers' own models.

For each configuration transformers' fairseq conversion scripts handle (wav2vec2: CTC fine-tuned,
pretraining with quantizer, sequence classification; HuBERT: CTC fine-tuned into HubertForCTC,
pretrained into the bare HubertModel; group or layer norm feature extractor; base or large
(do_stable_layer_norm); conv bias on or off; weight_g/weight_v or parametrizations names) an HF
model with random weights is written out as the fairseq checkpoint it would have been converted
from: names from the script's own MAPPING turned around (w2v2_plain_reference, which shares
nothing with the rule data), in fairseq's file layout. `ckpt apply` then moves that checkpoint
into a differently initialised HF folder with `--rules wav2vec2-fairseq-to-hf` or
`hubert-fairseq-to-hf`; the output must load in transformers with nothing missing, hold every
tensor of the original model, and compute the same outputs.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch

transformers = pytest.importorskip(
    "transformers", reason="needs transformers: run in the real-library venv (/work/venv-real)"
)

from real_helpers import assert_applied_like_reference  # noqa: E402
from w2v2_plain_reference import fairseq_name  # noqa: E402

import inspector  # noqa: E402
from inspector.mapping import propose  # noqa: E402

LAYERS = 2


@dataclass(frozen=True)
class Case:
    model: str  # "wav2vec2" or "hubert"
    head: str  # "ctc", "pretraining", "seqclass" (wav2vec2), "base" (the bare *Model)
    norm: str  # feat_extract_norm
    conv_bias: bool
    stable: bool = False  # do_stable_layer_norm: the large models (fairseq layer_norm_first)
    args_style: bool = False  # fairseq < 0.10: an argparse.Namespace `args`, no `cfg`
    parametrized: bool = False  # pos_conv weight norm saved as parametrizations.weight.original0/1
    adapter: bool = False  # MMS attention adapters (adapter_attn_dim; large models only)

    @property
    def id(self) -> str:
        extra = "-large" if self.stable else ""
        extra += "-args" if self.args_style else ""
        extra += "-parametrized" if self.parametrized else ""
        extra += "-adapter" if self.adapter else ""
        bias = "bias" if self.conv_bias else "nobias"
        return f"{self.model}-{self.head}-{self.norm}-{bias}{extra}"

    @property
    def rules(self) -> str:
        return f"{self.model}-fairseq-to-hf"

    @property
    def finetuned(self) -> bool:
        return self.head in ("ctc", "seqclass")


CASES = [
    Case("wav2vec2", "ctc", "group", conv_bias=False),
    Case("wav2vec2", "ctc", "layer", conv_bias=True, stable=True, args_style=True),
    Case("wav2vec2", "ctc", "group", conv_bias=False, parametrized=True),
    Case("wav2vec2", "pretraining", "group", conv_bias=False),
    Case("wav2vec2", "pretraining", "layer", conv_bias=True, stable=True),
    Case("wav2vec2", "seqclass", "layer", conv_bias=True, stable=True),
    Case("wav2vec2", "ctc", "layer", conv_bias=True, stable=True, adapter=True),
    Case("wav2vec2", "base", "group", conv_bias=False),  # older scripts' Wav2Vec2Model
    Case("hubert", "ctc", "group", conv_bias=False),
    Case("hubert", "ctc", "layer", conv_bias=True, stable=True, parametrized=True),
    Case("hubert", "base", "group", conv_bias=False, args_style=True),
    Case("hubert", "base", "layer", conv_bias=True, stable=True),
]

_CLASSES = {
    ("wav2vec2", "ctc"): "Wav2Vec2ForCTC",
    ("wav2vec2", "pretraining"): "Wav2Vec2ForPreTraining",
    ("wav2vec2", "seqclass"): "Wav2Vec2ForSequenceClassification",
    ("wav2vec2", "base"): "Wav2Vec2Model",
    ("hubert", "ctc"): "HubertForCTC",
    ("hubert", "base"): "HubertModel",
}


def _config(case: Case) -> Any:
    config_class = transformers.Wav2Vec2Config if case.model == "wav2vec2" else (
        transformers.HubertConfig)
    return config_class(
        hidden_size=32,
        num_hidden_layers=LAYERS,
        num_attention_heads=4,
        intermediate_size=48,
        conv_dim=(16, 24, 24),  # the last conv width differs from hidden_size
        conv_stride=(5, 2, 2),
        conv_kernel=(10, 3, 3),
        conv_bias=case.conv_bias,
        feat_extract_norm=case.norm,
        do_stable_layer_norm=case.stable,
        num_conv_pos_embeddings=8,
        num_conv_pos_embedding_groups=4,
        vocab_size=12,
        num_codevectors_per_group=8,
        num_codevector_groups=2,
        codevector_dim=16,
        proj_codevector_dim=12,
        classifier_proj_size=10,
        num_labels=3,
        adapter_attn_dim=8 if case.adapter else None,
    )


def _model_class(case: Case) -> Any:
    return getattr(transformers, _CLASSES[case.model, case.head])


def _build(case: Case, seed: int) -> Any:
    torch.manual_seed(seed)
    return _model_class(case)(_config(case)).eval()


def _extra(case: Case) -> list[str]:
    """fairseq tensors the script's table has no entry for: HuBERT's pretraining heads."""
    if case.model != "hubert":
        return []
    if case.finetuned:  # HubertEncoder's remove_pretraining_modules drops final_proj only
        return ["w2v_encoder.w2v_model.label_embs_concat"]
    return ["label_embs_concat", "final_proj.weight", "final_proj.bias"]


def _fairseq_state_dict(case: Case, model: Any) -> dict[str, Any]:
    sd = {}
    # the bare Wav2Vec2Model is what earlier 4.x wav2vec2 scripts wrote a pretraining checkpoint
    # into: the same table, the names without `wav2vec2.`
    prefix = "wav2vec2." if (case.model, case.head) == ("wav2vec2", "base") else ""
    for hf_name, value in model.state_dict().items():
        name = fairseq_name(
            prefix + hf_name, model=case.model, norm=case.norm, finetuned=case.finetuned
        )
        if case.parametrized:
            name = name.replace("weight_g", "parametrizations.weight.original0")
            name = name.replace("weight_v", "parametrizations.weight.original1")
        value = value.detach().clone()
        if ".adapter_layer." in name:  # fairseq stacks the adapters: 3 here, HF's is the first
            value = torch.stack([value, torch.randn_like(value), torch.randn_like(value)])
        sd[name] = value
    for name in _extra(case):
        sd[name] = torch.randn(5, 4)
    return sd


def _save_fairseq(case: Case, sd: dict[str, Any], path: Path) -> None:
    """What fairseq's checkpoint_utils.save_state writes (the parts a converter reads)."""
    model_cfg = {"_name": case.model, "encoder_layers": LAYERS,
                 "layer_norm_first": case.stable,
                 "extractor_mode": "layer_norm" if case.norm == "layer" else "default",
                 "conv_bias": case.conv_bias}
    state: dict[str, Any] = {
        "args": None,
        "cfg": {"_name": None, "common": {"seed": 1}, "model": model_cfg,
                "task": {"_name": "audio_pretraining"}},
        "model": sd,
        "optimizer_history": [{"criterion_name": "CtcCriterion", "optimizer_name": "Adam",
                               "lr_scheduler_state": {"best": None}, "num_updates": 3}],
        "extra_state": {"epoch": 1, "previous_state_dict": None},
        "last_optimizer_state": None,
        "task_state": {},
    }
    if case.args_style:
        state["args"] = argparse.Namespace(arch=case.model, **model_cfg)
        del state["cfg"]
    torch.save(state, path)


def _outputs(model: Any, wave: Any) -> list[Any]:
    with torch.no_grad():
        out = model(wave)
    if hasattr(out, "logits"):
        return [out.logits]
    if hasattr(out, "projected_states"):
        return [out.projected_states, out.projected_quantized_states]
    return [out.last_hidden_state]


@pytest.fixture(params=CASES, ids=lambda c: c.id)
def converted(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    case: Case = request.param
    reference = _build(case, seed=0)
    source = tmp_path / "checkpoint_best.pt"
    _save_fairseq(case, _fairseq_state_dict(case, reference), source)
    target = tmp_path / "hf"
    _build(case, seed=1).save_pretrained(target)
    return {"case": case, "reference": reference, "source": source, "target": target,
            "out": tmp_path / "out"}


def test_every_target_tensor_is_placed_by_a_rule(converted: dict[str, Any]) -> None:
    case = converted["case"]
    plan = propose(converted["source"], converted["target"], rules=case.rules)
    target = inspector.open(converted["target"])
    assert set(plan.entries) == set(target.keys())
    for name, entry in plan.entries.items():
        assert entry.decision == "copy", (name, entry.reason)
        # a rule, or the very same name (project_q maps to itself), never a similarity guess
        assert entry.evidence[0].kind in ("rule", "exact-name"), (name, entry.reason)
        assert not entry.flags, (name, entry.flags)
    # the source tensors left out: only those the script's table has no entry for
    assert {u.name for u in plan.unused} == set(_extra(case))


def test_apply_then_transformers_computes_the_same(converted: dict[str, Any]) -> None:
    case = converted["case"]
    assert_applied_like_reference(converted, case.rules, _model_class(case), _outputs)


def test_reference_inversion_gives_fairseq_layout() -> None:
    """The test's fairseq names follow fairseq's modules and each script's prefix choice."""
    w2v_ft = {"model": "wav2vec2", "finetuned": True}
    assert fairseq_name("wav2vec2.feature_extractor.conv_layers.2.layer_norm.weight",
                        norm="layer", **w2v_ft) == (
        "w2v_encoder.w2v_model.feature_extractor.conv_layers.2.2.1.weight")
    assert fairseq_name("lm_head.bias", norm="group", **w2v_ft) == "w2v_encoder.proj.bias"
    assert fairseq_name("classifier.weight", norm="group", **w2v_ft) == (
        "pooling_layer.projection.weight")
    assert fairseq_name("wav2vec2.encoder.layers.1.attention.k_proj.weight", norm="group",
                        **w2v_ft) == (
        "w2v_encoder.w2v_model.encoder.layers.1.self_attn.k_proj.weight")
    w2v_pre = {"model": "wav2vec2", "finetuned": False}
    assert fairseq_name("wav2vec2.feature_projection.layer_norm.bias", norm="group",
                        **w2v_pre) == "layer_norm.bias"
    assert fairseq_name("quantizer.codevectors", norm="group", **w2v_pre) == "quantizer.vars"
    assert fairseq_name("project_hid.weight", norm="group", **w2v_pre) == "final_proj.weight"
    assert fairseq_name("wav2vec2.encoder.layers.1.adapter_layer.norm.bias", norm="group",
                        **w2v_ft) == "w2v_encoder.w2v_model.encoder.layers.1.adapter_layer.ln_b"
    hub_pre = {"model": "hubert", "finetuned": False}
    assert fairseq_name("feature_extractor.conv_layers.0.layer_norm.bias", norm="group",
                        **hub_pre) == "feature_extractor.conv_layers.0.2.bias"
    assert fairseq_name("encoder.pos_conv_embed.conv.parametrizations.weight.original1",
                        norm="group", **hub_pre) == "encoder.pos_conv.0.weight_v"
    hub_ft = {"model": "hubert", "finetuned": True}
    assert fairseq_name("hubert.encoder.layers.0.final_layer_norm.weight", norm="group",
                        **hub_ft) == (
        "w2v_encoder.w2v_model.encoder.layers.0.final_layer_norm.weight")
    assert fairseq_name("lm_head.weight", norm="group", **hub_ft) == "w2v_encoder.proj.weight"
