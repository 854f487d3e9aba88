"""Whisper names in the three layouts, derived from the reference conversion scripts' own code
(not from the rule sets in inspector/mapping/data): the oracle the Whisper rule tests compare with.

- OpenAI's names follow openai-whisper's `whisper/model.py` (AudioEncoder, TextDecoder,
  ResidualAttentionBlock: `attn.query/key/value/out`, `attn_ln`, `cross_attn*`, `mlp.0/2`,
  `mlp_ln`; the key projection has no bias).
- OpenAI -> HF is transformers 4.x `models/whisper/convert_openai_to_hf.py`: `rename_keys` with
  `WHISPER_MAPPING` (every matching key replaced in turn), loaded into `model.model`.
- OpenAI -> WeNet is WeNet's `wenet/whisper/convert_whisper_to_wenet_config_and_ckpt.py`
  (`convert_to_wenet_state_dict`): its str.replace sequence, and the two positional embeddings
  unsqueezed to [1, n_ctx, d].
"""

from __future__ import annotations

# transformers 4.x convert_openai_to_hf.py, WHISPER_MAPPING (in its order)
WHISPER_MAPPING = {
    "blocks": "layers",
    "mlp.0": "fc1",
    "mlp.2": "fc2",
    "mlp_ln": "final_layer_norm",
    ".attn.query": ".self_attn.q_proj",
    ".attn.key": ".self_attn.k_proj",
    ".attn.value": ".self_attn.v_proj",
    ".attn_ln": ".self_attn_layer_norm",
    ".attn.out": ".self_attn.out_proj",
    ".cross_attn.query": ".encoder_attn.q_proj",
    ".cross_attn.key": ".encoder_attn.k_proj",
    ".cross_attn.value": ".encoder_attn.v_proj",
    ".cross_attn_ln": ".encoder_attn_layer_norm",
    ".cross_attn.out": ".encoder_attn.out_proj",
    "decoder.ln.": "decoder.layer_norm.",
    "encoder.ln.": "encoder.layer_norm.",
    "token_embedding": "embed_tokens",
    "encoder.positional_embedding": "encoder.embed_positions.weight",
    "decoder.positional_embedding": "decoder.embed_positions.weight",
    "ln_post": "layer_norm",
}


def openai_names(encoder_layers: int, decoder_layers: int) -> list[str]:
    """The state dict names of openai-whisper's `Whisper` model (whisper/model.py)."""
    def linear(p: str, bias: bool = True) -> list[str]:
        return [f"{p}.weight"] + ([f"{p}.bias"] if bias else [])

    def block(p: str, cross: bool) -> list[str]:
        out = []
        for kind in ("attn", "cross_attn") if cross else ("attn",):
            out += linear(f"{p}.{kind}.query") + linear(f"{p}.{kind}.key", bias=False)
            out += linear(f"{p}.{kind}.value") + linear(f"{p}.{kind}.out")
            out += linear(f"{p}.{kind}_ln")
        return out + linear(f"{p}.mlp.0") + linear(f"{p}.mlp.2") + linear(f"{p}.mlp_ln")

    names = ["encoder.positional_embedding", *linear("encoder.conv1"), *linear("encoder.conv2")]
    for i in range(encoder_layers):
        names += block(f"encoder.blocks.{i}", cross=False)
    names += linear("encoder.ln_post")
    names += ["decoder.positional_embedding", "decoder.token_embedding.weight"]
    for i in range(decoder_layers):
        names += block(f"decoder.blocks.{i}", cross=True)
    return names + linear("decoder.ln")


def hf_name(openai_name: str) -> str:
    """transformers' rename_keys for one key, then the `model.` of `model.model.load_state_dict`."""
    new = openai_name
    for k, v in WHISPER_MAPPING.items():
        if k in openai_name:
            new = new.replace(k, v)
    return "model." + new


def wenet_name(openai_name: str) -> tuple[str, bool]:
    """WeNet's convert_to_wenet_state_dict for one key: (new name, unsqueezed to [1, n, d])."""
    name = openai_name
    for old, new in (
        ("encoder.conv1", "encoder.embed.conv.0"),
        ("encoder.conv2", "encoder.embed.conv.2"),
        ("decoder.token_embedding", "decoder.embed.0"),
        ("encoder.blocks", "encoder.encoders"),
        ("decoder.blocks", "decoder.decoders"),
        (".cross_attn.query", ".src_attn.linear_q"),
        (".cross_attn.key", ".src_attn.linear_k"),
        (".cross_attn.value", ".src_attn.linear_v"),
        (".cross_attn.out", ".src_attn.linear_out"),
        (".attn.query", ".self_attn.linear_q"),
        (".attn.key", ".self_attn.linear_k"),
        (".attn.value", ".self_attn.linear_v"),
        (".attn.out", ".self_attn.linear_out"),
        ("mlp.0", "feed_forward.w_1"),
        ("mlp.2", "feed_forward.w_2"),
    ):
        name = name.replace(old, new)
    if "decoder" in name:
        name = name.replace("cross_attn_ln", "norm2").replace("mlp_ln", "norm3")
    else:
        name = name.replace("mlp_ln", "norm2")
    name = name.replace("attn_ln", "norm1")
    name = name.replace("encoder.ln_post", "encoder.after_norm")
    name = name.replace("decoder.ln", "decoder.after_norm")
    if openai_name == "decoder.positional_embedding":
        return "decoder.embed.1.pe", True
    if openai_name == "encoder.positional_embedding":
        return "encoder.embed.pos_enc.pe", True
    return name, False


def openai_shape(name: str, *, d: int, ffn: int, vocab: int, n_mels: int, audio_ctx: int,
                 text_ctx: int) -> tuple[int, ...]:
    """The shape of an OpenAI Whisper tensor (whisper/model.py: Conv1d kernels of 3, Linear
    weights [out, in], the MLP 4 x d wide in OpenAI's own models)."""
    if name == "encoder.positional_embedding":
        return (audio_ctx, d)
    if name == "decoder.positional_embedding":
        return (text_ctx, d)
    if name == "decoder.token_embedding.weight":
        return (vocab, d)
    if name.startswith("encoder.conv"):
        return {"weight": (d, n_mels if "conv1" in name else d, 3)}.get(name.rsplit(".", 1)[1],
                                                                         (d,))
    if ".mlp.0." in name:
        return (ffn, d) if name.endswith("weight") else (ffn,)
    if ".mlp.2." in name:
        return (d, ffn) if name.endswith("weight") else (d,)
    if (".attn." in name or ".cross_attn." in name) and name.endswith("weight"):
        return (d, d)
    return (d,)
