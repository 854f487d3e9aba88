"""fairseq names for an HF Wav2Vec2Conformer model, from the reference conversion's own table.

The reference is transformers 4.x's
`models/wav2vec2_conformer/convert_wav2vec2_conformer_original_pytorch_checkpoint_to_pytorch.py`:
its `MAPPING` and `TOP_LEVEL_KEYS` are copied below verbatim, and `fairseq_name` turns them
around (HF name -> the fairseq name the script reads it from), together with `load_conv_layer`'s
feature-extractor logic and fairseq's module layout. Nothing here comes from inspector's rule
data: a hole in the rules shows up as a target tensor no source reaches.
"""

from __future__ import annotations

import re

# transformers 4.x (Apache-2.0),
# convert_wav2vec2_conformer_original_pytorch_checkpoint_to_pytorch.py:
# the name table is the test oracle, kept as the reference wrote it.
MAPPING = {
    "post_extract_proj": "feature_projection.projection",
    "encoder.pos_conv.0": "encoder.pos_conv_embed.conv",
    "self_attn.linear_k": "encoder.layers.*.self_attn.linear_k",
    "self_attn.linear_v": "encoder.layers.*.self_attn.linear_v",
    "self_attn.linear_q": "encoder.layers.*.self_attn.linear_q",
    "self_attn.pos_bias_u": "encoder.layers.*.self_attn.pos_bias_u",
    "self_attn.pos_bias_v": "encoder.layers.*.self_attn.pos_bias_v",
    "self_attn.linear_out": "encoder.layers.*.self_attn.linear_out",
    "self_attn.linear_pos": "encoder.layers.*.self_attn.linear_pos",
    "self_attn.rotary_emb": "encoder.embed_positions",
    "self_attn_layer_norm": "encoder.layers.*.self_attn_layer_norm",
    "conv_module.pointwise_conv1": "encoder.layers.*.conv_module.pointwise_conv1",
    "conv_module.pointwise_conv2": "encoder.layers.*.conv_module.pointwise_conv2",
    "conv_module.depthwise_conv": "encoder.layers.*.conv_module.depthwise_conv",
    "conv_module.batch_norm": "encoder.layers.*.conv_module.batch_norm",
    "conv_module.layer_norm": "encoder.layers.*.conv_module.layer_norm",
    "ffn1.w_1": "encoder.layers.*.ffn1.intermediate_dense",
    "ffn1.w_2": "encoder.layers.*.ffn1.output_dense",
    "ffn1.layer_norm": "encoder.layers.*.ffn1_layer_norm",
    "ffn2.w_1": "encoder.layers.*.ffn2.intermediate_dense",
    "ffn2.w_2": "encoder.layers.*.ffn2.output_dense",
    "ffn2.layer_norm": "encoder.layers.*.ffn2_layer_norm",
    "final_layer_norm": "encoder.layers.*.final_layer_norm",
    "encoder.layer_norm": "encoder.layer_norm",
    "w2v_model.layer_norm": "feature_projection.layer_norm",
    "quantizer.weight_proj": "quantizer.weight_proj",
    "quantizer.vars": "quantizer.codevectors",
    "project_q": "project_q",
    "final_proj": "project_hid",
    "w2v_encoder.proj": "lm_head",
    "mask_emb": "masked_spec_embed",
}
TOP_LEVEL_KEYS = [
    "lm_head",
    "quantizer.weight_proj",
    "quantizer.codevectors",
    "project_q",
    "project_hid",
]
BASE = "wav2vec2_conformer."

# fairseq stores weight norm as weight_g/weight_v (torch.nn.utils.weight_norm); an HF model built
# with torch >= 2.1 has the parametrizations names. The reference's set_recursively handles the
# other weight types by name, unchanged.
_WEIGHT_TYPES = {
    "parametrizations.weight.original0": "weight_g",
    "parametrizations.weight.original1": "weight_v",
}

# fairseq's Wav2Vec2Model.feature_extractor: conv_layers.N is Sequential(conv, dropout, norm, GELU)
# where the norm (slot 2) is Fp32GroupNorm (layer 0 only, mode "default") or
# Sequential(TransposeLast, Fp32LayerNorm, TransposeLast) (every layer, mode "layer_norm").
# load_conv_layer reads type_id 0 as the conv and type_id 2 as the norm.
_CONV = re.compile(r"feature_extractor\.conv_layers\.(\d+)\.(conv|layer_norm)\.(weight|bias)")


def _mapped(key: str) -> str:
    target = MAPPING[key]
    return target if target in TOP_LEVEL_KEYS else BASE + target


def _table_names(hf_name: str, layers: int) -> list[str]:
    """fairseq names (relative to the w2v model) the reference maps onto `hf_name`."""
    hits = []
    for key in MAPPING:
        pattern = re.escape(_mapped(key)).replace(r"\*", r"(\d+)") + r"(?:\.(.+))?"
        m = re.fullmatch(pattern, hf_name)
        if m is None:
            continue
        rest = m.group(m.re.groups)
        wtype = _WEIGHT_TYPES.get(rest, rest) if rest else None
        if "*" in MAPPING[key]:  # the script takes the index from the component before the key
            base = [f"encoder.layers.{m.group(1)}.{key}"]
        elif key == "self_attn.rotary_emb":  # one buffer per fairseq layer, all the same
            base = [f"encoder.layers.{i}.{key}" for i in range(layers)]
        elif key == "w2v_model.layer_norm":  # matched by `key.split("w2v_model.")[-1] == name[0]`
            base = ["layer_norm"]
        else:
            base = [key]
        hits.append([f"{b}.{wtype}" if wtype else b for b in base])
    assert len(hits) == 1, f"{hf_name}: {len(hits)} MAPPING entries match"
    return hits[0]


def fairseq_names(hf_name: str, *, norm: str, finetuned: bool, layers: int) -> list[str]:
    """The fairseq state-dict names holding HF tensor `hf_name` (several for the rotary buffer).

    `norm` is the HF config's feat_extract_norm ("group" or "layer"); `finetuned` says the
    fairseq model is a Wav2VecCtc (w2v_encoder.w2v_model.* plus the w2v_encoder.proj head)
    rather than the pretraining Wav2Vec2Model.
    """
    conv = _CONV.fullmatch(hf_name.removeprefix(BASE))
    if conv is not None:
        layer, kind, wtype = conv.groups()
        if kind == "conv":
            slot = "0"
        else:
            assert norm == "layer" or layer == "0", hf_name
            slot = "2.1" if norm == "layer" else "2"
        names = [f"feature_extractor.conv_layers.{layer}.{slot}.{wtype}"]
    else:
        names = _table_names(hf_name, layers)
    if not finetuned:
        return names
    return [n if n.startswith("w2v_encoder.") else "w2v_encoder.w2v_model." + n for n in names]
