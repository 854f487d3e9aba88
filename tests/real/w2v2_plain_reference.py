"""fairseq names for HF Wav2Vec2 and HuBERT models, from the reference conversions' own tables.

The references are transformers 4.x's
`models/wav2vec2/convert_wav2vec2_original_pytorch_checkpoint_to_pytorch.py` and
`models/hubert/convert_hubert_original_pytorch_checkpoint_to_pytorch.py`: their `MAPPING`s (and
wav2vec2's `TOP_LEVEL_KEYS`) are copied below verbatim, and `fairseq_names` turns them around (HF
name -> the fairseq name the script reads it from), together with `load_conv_layer`'s feature
extractor logic and each script's prefix choice. Nothing here comes from inspector's rule data: a
hole in the rules shows up as a target tensor no source reaches.
"""

from __future__ import annotations

import re

# transformers 4.x (Apache-2.0), convert_wav2vec2_original_pytorch_checkpoint_to_pytorch.py
# (the last 4.x form, with the adapter and sequence-classification entries): the test oracle,
# kept as the reference wrote it.
WAV2VEC2_MAPPING = {
    "post_extract_proj": "feature_projection.projection",
    "encoder.pos_conv.0": "encoder.pos_conv_embed.conv",
    "self_attn.k_proj": "encoder.layers.*.attention.k_proj",
    "self_attn.v_proj": "encoder.layers.*.attention.v_proj",
    "self_attn.q_proj": "encoder.layers.*.attention.q_proj",
    "self_attn.out_proj": "encoder.layers.*.attention.out_proj",
    "self_attn_layer_norm": "encoder.layers.*.layer_norm",
    "fc1": "encoder.layers.*.feed_forward.intermediate_dense",
    "fc2": "encoder.layers.*.feed_forward.output_dense",
    "final_layer_norm": "encoder.layers.*.final_layer_norm",
    "encoder.layer_norm": "encoder.layer_norm",
    "adapter_layer": "encoder.layers.*.adapter_layer",
    "w2v_model.layer_norm": "feature_projection.layer_norm",
    "quantizer.weight_proj": "quantizer.weight_proj",
    "quantizer.vars": "quantizer.codevectors",
    "project_q": "project_q",
    "final_proj": "project_hid",
    "w2v_encoder.proj": "lm_head",
    "mask_emb": "masked_spec_embed",
    "pooling_layer.linear": "projector",
    "pooling_layer.projection": "classifier",
}
WAV2VEC2_TOP_LEVEL_KEYS = [
    "lm_head",
    "quantizer.weight_proj",
    "quantizer.codevectors",
    "project_q",
    "project_hid",
    "projector",
    "classifier",
]
# the same script: the MMS adapter's parameters (fairseq stacks one entry per adapter; the
# script keeps value[0])
PARAM_MAPPING = {
    "W_a": "linear_1.weight",
    "W_b": "linear_2.weight",
    "b_a": "linear_1.bias",
    "b_b": "linear_2.bias",
    "ln_W": "norm.weight",
    "ln_b": "norm.bias",
}

# transformers 4.x (Apache-2.0), convert_hubert_original_pytorch_checkpoint_to_pytorch.py
HUBERT_MAPPING = {
    "post_extract_proj": "feature_projection.projection",
    "encoder.pos_conv.0": "encoder.pos_conv_embed.conv",
    "self_attn.k_proj": "encoder.layers.*.attention.k_proj",
    "self_attn.v_proj": "encoder.layers.*.attention.v_proj",
    "self_attn.q_proj": "encoder.layers.*.attention.q_proj",
    "self_attn.out_proj": "encoder.layers.*.attention.out_proj",
    "self_attn_layer_norm": "encoder.layers.*.layer_norm",
    "fc1": "encoder.layers.*.feed_forward.intermediate_dense",
    "fc2": "encoder.layers.*.feed_forward.output_dense",
    "final_layer_norm": "encoder.layers.*.final_layer_norm",
    "encoder.layer_norm": "encoder.layer_norm",
    "w2v_model.layer_norm": "feature_projection.layer_norm",
    "w2v_encoder.proj": "lm_head",
    "mask_emb": "masked_spec_embed",
}

# fairseq stores weight norm as weight_g/weight_v (torch.nn.utils.weight_norm); an HF model built
# with torch >= 2.1 has the parametrizations names (the last 4.x wav2vec2 script writes either).
_WEIGHT_TYPES = {
    "parametrizations.weight.original0": "weight_g",
    "parametrizations.weight.original1": "weight_v",
}

# fairseq's feature_extractor: conv_layers.N is Sequential(conv, dropout, norm, GELU) where the
# norm (slot 2) is Fp32GroupNorm (layer 0 only, mode "default") or Sequential(TransposeLast,
# Fp32LayerNorm, TransposeLast) (every layer, mode "layer_norm"). load_conv_layer reads type_id 0
# as the conv and type_id 2 as the norm.
_CONV = re.compile(r"feature_extractor\.conv_layers\.(\d+)\.(conv|layer_norm)\.(weight|bias)")


def _mapped(model: str, key: str, finetuned: bool) -> str:
    """The HF name the script writes MAPPING[key] to (its prefix choice)."""
    if model == "wav2vec2":  # every wav2vec2 head model has the body under `wav2vec2.`
        target = WAV2VEC2_MAPPING[key]
        return target if target in WAV2VEC2_TOP_LEVEL_KEYS else "wav2vec2." + target
    target = HUBERT_MAPPING[key]  # HubertForCTC when fine-tuned, else the bare HubertModel
    return "hubert." + target if finetuned and target != "lm_head" else target


def _table_name(model: str, hf_name: str, finetuned: bool) -> str:
    """The fairseq name (relative to the w2v model) the reference maps onto `hf_name`."""
    mapping = WAV2VEC2_MAPPING if model == "wav2vec2" else HUBERT_MAPPING
    hits = []
    for key in mapping:
        target = _mapped(model, key, finetuned)
        pattern = re.escape(target).replace(r"\*", r"(\d+)") + r"(?:\.(.+))?"
        m = re.fullmatch(pattern, hf_name)
        if m is None:
            continue
        rest = m.group(m.re.groups)
        wtype = _WEIGHT_TYPES.get(rest, rest) if rest else None
        if key == "adapter_layer":  # set_recursively: the name ends with a PARAM_MAPPING key
            wtype = next(k for k, v in PARAM_MAPPING.items() if v == rest)
        if "*" in mapping[key]:  # the script takes the index from the component before the key
            base = f"encoder.layers.{m.group(1)}.{key}"
        elif key == "w2v_model.layer_norm":  # matched by `key.split("w2v_model.")[-1] == name[0]`
            base = "layer_norm"
        else:
            base = key
        hits.append(f"{base}.{wtype}" if wtype else base)
    assert len(hits) == 1, f"{hf_name}: {len(hits)} MAPPING entries match"
    return hits[0]


def fairseq_name(hf_name: str, *, model: str, norm: str, finetuned: bool) -> str:
    """The fairseq state-dict name holding HF tensor `hf_name`.

    `model` is "wav2vec2" or "hubert"; `norm` the HF config's feat_extract_norm ("group" or
    "layer"); `finetuned` says the fairseq model is a fine-tuned one (w2v_encoder.w2v_model.*
    plus a head under w2v_encoder. or pooling_layer.) rather than the pretraining model.
    """
    base = "wav2vec2." if model == "wav2vec2" else ("hubert." if finetuned else "")
    conv = _CONV.fullmatch(hf_name.removeprefix(base))
    if conv is not None:
        layer, kind, wtype = conv.groups()
        if kind == "conv":
            slot = "0"
        else:
            assert norm == "layer" or layer == "0", hf_name
            slot = "2.1" if norm == "layer" else "2"
        name = f"feature_extractor.conv_layers.{layer}.{slot}.{wtype}"
    else:
        name = _table_name(model, hf_name, finetuned)
    if not finetuned or name.startswith(("w2v_encoder.", "pooling_layer.")):
        return name
    return "w2v_encoder.w2v_model." + name
