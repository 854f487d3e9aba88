"""Realistic checkpoints (names and shapes) for the mapping tests, as dicts of numpy arrays.

Names follow NeMo's EncDecRNNTModel (Conformer encoder, RNNT prediction net and joint), fairseq's
wav2vec2-conformer and HF's Wav2Vec2ConformerForCTC, NeMo's old Jasper per-module files.
Small sizes keep the tests fast; the structure is what matters.
"""

from __future__ import annotations

import numpy as np

F32 = np.float32


def _t(*shape: int, dtype: type = F32, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed + sum(shape))
    return rng.standard_normal(shape).astype(dtype) if shape else np.array(1.0, dtype=dtype)


def conformer_layer(
    prefix: str, d: int, ffn: int, heads: int, kernel: int
) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for ff in ("feed_forward1", "feed_forward2"):
        out[f"{prefix}.norm_{ff}.weight"] = _t(d)
        out[f"{prefix}.norm_{ff}.bias"] = _t(d)
        out[f"{prefix}.{ff}.linear1.weight"] = _t(ffn, d)
        out[f"{prefix}.{ff}.linear1.bias"] = _t(ffn)
        out[f"{prefix}.{ff}.linear2.weight"] = _t(d, ffn)
        out[f"{prefix}.{ff}.linear2.bias"] = _t(d)
    out[f"{prefix}.norm_conv.weight"] = _t(d)
    out[f"{prefix}.norm_conv.bias"] = _t(d)
    out[f"{prefix}.conv.pointwise_conv1.weight"] = _t(2 * d, d, 1)
    out[f"{prefix}.conv.pointwise_conv1.bias"] = _t(2 * d)
    out[f"{prefix}.conv.depthwise_conv.weight"] = _t(d, 1, kernel)
    out[f"{prefix}.conv.depthwise_conv.bias"] = _t(d)
    out[f"{prefix}.conv.batch_norm.weight"] = _t(d)
    out[f"{prefix}.conv.batch_norm.bias"] = _t(d)
    out[f"{prefix}.conv.batch_norm.running_mean"] = _t(d)
    out[f"{prefix}.conv.batch_norm.running_var"] = _t(d)
    out[f"{prefix}.conv.batch_norm.num_batches_tracked"] = np.array(7, dtype=np.int64)
    out[f"{prefix}.conv.pointwise_conv2.weight"] = _t(d, d, 1)
    out[f"{prefix}.conv.pointwise_conv2.bias"] = _t(d)
    out[f"{prefix}.norm_self_att.weight"] = _t(d)
    out[f"{prefix}.norm_self_att.bias"] = _t(d)
    out[f"{prefix}.self_attn.pos_bias_u"] = _t(heads, d // heads)
    out[f"{prefix}.self_attn.pos_bias_v"] = _t(heads, d // heads)
    for lin in ("linear_q", "linear_k", "linear_v", "linear_out"):
        out[f"{prefix}.self_attn.{lin}.weight"] = _t(d, d)
        out[f"{prefix}.self_attn.{lin}.bias"] = _t(d)
    out[f"{prefix}.self_attn.linear_pos.weight"] = _t(d, d)
    out[f"{prefix}.norm_out.weight"] = _t(d)
    out[f"{prefix}.norm_out.bias"] = _t(d)
    return out


def nemo_rnnt(
    vocab: int,
    *,
    n_layers: int = 4,
    d: int = 32,
    heads: int = 4,
    pred: int = 16,
    joint: int = 24,
    n_mels: int = 16,
    kernel: int = 9,
) -> dict[str, np.ndarray]:
    """NeMo EncDecRNNTModel state dict; `vocab` excludes blank (output rows = vocab + 1)."""
    sd: dict[str, np.ndarray] = {
        "preprocessor.featurizer.window": _t(64),
        "preprocessor.featurizer.fb": _t(1, n_mels, 33),
        "encoder.pre_encode.conv.0.weight": _t(8, 1, 3, 3),
        "encoder.pre_encode.conv.0.bias": _t(8),
        "encoder.pre_encode.conv.2.weight": _t(8, 8, 3, 3),
        "encoder.pre_encode.conv.2.bias": _t(8),
        "encoder.pre_encode.out.weight": _t(d, 8 * (n_mels // 4)),
        "encoder.pre_encode.out.bias": _t(d),
    }
    for i in range(n_layers):
        sd.update(conformer_layer(f"encoder.layers.{i}", d, 4 * d, heads, kernel))
    sd.update(
        {
            "decoder.prediction.embed.weight": _t(vocab + 1, pred),
            "decoder.prediction.dec_rnn.lstm.weight_ih_l0": _t(4 * pred, pred),
            "decoder.prediction.dec_rnn.lstm.weight_hh_l0": _t(4 * pred, pred),
            "decoder.prediction.dec_rnn.lstm.bias_ih_l0": _t(4 * pred),
            "decoder.prediction.dec_rnn.lstm.bias_hh_l0": _t(4 * pred),
            "joint.pred.weight": _t(joint, pred),
            "joint.pred.bias": _t(joint),
            "joint.enc.weight": _t(joint, d),
            "joint.enc.bias": _t(joint),
            "joint.joint_net.2.weight": _t(vocab + 1, joint),
            "joint.joint_net.2.bias": _t(vocab + 1),
        }
    )
    return sd


def fairseq_w2v2_conformer(
    n_layers: int = 2, d: int = 32, vocab: int = 32
) -> dict[str, np.ndarray]:
    """A fine-tuned fairseq wav2vec2-conformer (rel_pos) checkpoint's `model` dict."""
    p = "w2v_encoder.w2v_model."
    sd: dict[str, np.ndarray] = {}
    for i, (cin, k) in enumerate([(1, 10), (16, 3), (16, 2)]):
        sd[f"{p}feature_extractor.conv_layers.{i}.0.weight"] = _t(16, cin, k)
        if i == 0:
            sd[f"{p}feature_extractor.conv_layers.0.2.weight"] = _t(16)
            sd[f"{p}feature_extractor.conv_layers.0.2.bias"] = _t(16)
    sd[f"{p}mask_emb"] = _t(d)
    sd[f"{p}layer_norm.weight"] = _t(16)
    sd[f"{p}layer_norm.bias"] = _t(16)
    sd[f"{p}post_extract_proj.weight"] = _t(d, 16)
    sd[f"{p}post_extract_proj.bias"] = _t(d)
    sd[f"{p}encoder.pos_conv.0.bias"] = _t(d)
    sd[f"{p}encoder.pos_conv.0.weight_g"] = _t(1, 1, 8)
    sd[f"{p}encoder.pos_conv.0.weight_v"] = _t(d, d // 4, 8)
    for i in range(n_layers):
        q = f"{p}encoder.layers.{i}."
        for ff in ("ffn1", "ffn2"):
            sd[f"{q}{ff}.layer_norm.weight"] = _t(d)
            sd[f"{q}{ff}.layer_norm.bias"] = _t(d)
            sd[f"{q}{ff}.w_1.weight"] = _t(4 * d, d)
            sd[f"{q}{ff}.w_1.bias"] = _t(4 * d)
            sd[f"{q}{ff}.w_2.weight"] = _t(d, 4 * d)
            sd[f"{q}{ff}.w_2.bias"] = _t(d)
        sd[f"{q}self_attn_layer_norm.weight"] = _t(d)
        sd[f"{q}self_attn_layer_norm.bias"] = _t(d)
        for lin in ("linear_q", "linear_k", "linear_v", "linear_out"):
            sd[f"{q}self_attn.{lin}.weight"] = _t(d, d)
            sd[f"{q}self_attn.{lin}.bias"] = _t(d)
        sd[f"{q}self_attn.linear_pos.weight"] = _t(d, d)
        sd[f"{q}self_attn.pos_bias_u"] = _t(4, d // 4)
        sd[f"{q}self_attn.pos_bias_v"] = _t(4, d // 4)
        sd[f"{q}conv_module.layer_norm.weight"] = _t(d)
        sd[f"{q}conv_module.layer_norm.bias"] = _t(d)
        sd[f"{q}conv_module.pointwise_conv1.weight"] = _t(2 * d, d, 1)
        sd[f"{q}conv_module.depthwise_conv.weight"] = _t(d, 1, 31)
        sd[f"{q}conv_module.batch_norm.weight"] = _t(d)
        sd[f"{q}conv_module.batch_norm.bias"] = _t(d)
        sd[f"{q}conv_module.batch_norm.running_mean"] = _t(d)
        sd[f"{q}conv_module.batch_norm.running_var"] = _t(d)
        sd[f"{q}conv_module.batch_norm.num_batches_tracked"] = np.array(3, dtype=np.int64)
        sd[f"{q}conv_module.pointwise_conv2.weight"] = _t(d, d, 1)
        sd[f"{q}final_layer_norm.weight"] = _t(d)
        sd[f"{q}final_layer_norm.bias"] = _t(d)
    sd[f"{p}encoder.layer_norm.weight"] = _t(d)
    sd[f"{p}encoder.layer_norm.bias"] = _t(d)
    sd["w2v_encoder.proj.weight"] = _t(vocab, d)
    sd["w2v_encoder.proj.bias"] = _t(vocab)
    return sd


def hf_w2v2_conformer_ctc(n_layers: int = 2, d: int = 32, vocab: int = 32) -> dict[str, np.ndarray]:
    """HF Wav2Vec2ConformerForCTC state dict (rel_pos, group norm feature extractor)."""
    p = "wav2vec2_conformer."
    sd: dict[str, np.ndarray] = {}
    for i, (cin, k) in enumerate([(1, 10), (16, 3), (16, 2)]):
        sd[f"{p}feature_extractor.conv_layers.{i}.conv.weight"] = _t(16, cin, k)
        if i == 0:
            sd[f"{p}feature_extractor.conv_layers.0.layer_norm.weight"] = _t(16)
            sd[f"{p}feature_extractor.conv_layers.0.layer_norm.bias"] = _t(16)
    sd[f"{p}masked_spec_embed"] = _t(d)
    sd[f"{p}feature_projection.layer_norm.weight"] = _t(16)
    sd[f"{p}feature_projection.layer_norm.bias"] = _t(16)
    sd[f"{p}feature_projection.projection.weight"] = _t(d, 16)
    sd[f"{p}feature_projection.projection.bias"] = _t(d)
    sd[f"{p}encoder.pos_conv_embed.conv.bias"] = _t(d)
    sd[f"{p}encoder.pos_conv_embed.conv.parametrizations.weight.original0"] = _t(1, 1, 8)
    sd[f"{p}encoder.pos_conv_embed.conv.parametrizations.weight.original1"] = _t(d, d // 4, 8)
    sd[f"{p}encoder.layer_norm.weight"] = _t(d)
    sd[f"{p}encoder.layer_norm.bias"] = _t(d)
    for i in range(n_layers):
        q = f"{p}encoder.layers.{i}."
        for ff in ("ffn1", "ffn2"):
            sd[f"{q}{ff}_layer_norm.weight"] = _t(d)
            sd[f"{q}{ff}_layer_norm.bias"] = _t(d)
            sd[f"{q}{ff}.intermediate_dense.weight"] = _t(4 * d, d)
            sd[f"{q}{ff}.intermediate_dense.bias"] = _t(4 * d)
            sd[f"{q}{ff}.output_dense.weight"] = _t(d, 4 * d)
            sd[f"{q}{ff}.output_dense.bias"] = _t(d)
        sd[f"{q}self_attn_layer_norm.weight"] = _t(d)
        sd[f"{q}self_attn_layer_norm.bias"] = _t(d)
        for lin in ("linear_q", "linear_k", "linear_v", "linear_out"):
            sd[f"{q}self_attn.{lin}.weight"] = _t(d, d)
            sd[f"{q}self_attn.{lin}.bias"] = _t(d)
        sd[f"{q}self_attn.linear_pos.weight"] = _t(d, d)
        sd[f"{q}self_attn.pos_bias_u"] = _t(4, d // 4)
        sd[f"{q}self_attn.pos_bias_v"] = _t(4, d // 4)
        sd[f"{q}conv_module.layer_norm.weight"] = _t(d)
        sd[f"{q}conv_module.layer_norm.bias"] = _t(d)
        sd[f"{q}conv_module.pointwise_conv1.weight"] = _t(2 * d, d, 1)
        sd[f"{q}conv_module.depthwise_conv.weight"] = _t(d, 1, 31)
        sd[f"{q}conv_module.batch_norm.weight"] = _t(d)
        sd[f"{q}conv_module.batch_norm.bias"] = _t(d)
        sd[f"{q}conv_module.batch_norm.running_mean"] = _t(d)
        sd[f"{q}conv_module.batch_norm.running_var"] = _t(d)
        sd[f"{q}conv_module.batch_norm.num_batches_tracked"] = np.array(0, dtype=np.int64)
        sd[f"{q}conv_module.pointwise_conv2.weight"] = _t(d, d, 1)
        sd[f"{q}final_layer_norm.weight"] = _t(d)
        sd[f"{q}final_layer_norm.bias"] = _t(d)
    sd["lm_head.weight"] = _t(vocab, d)
    sd["lm_head.bias"] = _t(vocab)
    return sd
