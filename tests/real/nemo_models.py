"""Tiny NeMo ASR models built from config, no download: a shrunk copy of NeMo's example
conformer configs (d_model 64, 1 layer, 2 heads) and SentencePiece BPE tokenizers trained here
on generated text. Weights are random; only the layouts matter."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

D_MODEL = 64
CHARS = [" ", *"abcdefghijklmnopqrstuvwxyz", "'"]
TEXT = (
    "the morning window opened again after dinner while the brown dog walked with her brother "
    "over the green hill to the water and about the garden at night"
)


def train_tokenizer(folder: Path, vocab_size: int, seed: int = 0) -> Path:
    """A SentencePiece BPE model (`tokenizer.model`, `tokenizer.vocab`, `vocab.txt`) in `folder`."""
    import sentencepiece as spm

    folder.mkdir(parents=True, exist_ok=True)
    rng, words = random.Random(seed), TEXT.split()
    text = folder / "text.txt"
    lines = (" ".join(rng.choice(words) for _ in range(12)) for _ in range(400))
    text.write_text("\n".join(lines) + "\n")
    spm.SentencePieceTrainer.train(
        input=str(text), model_prefix=str(folder / "tokenizer"), vocab_size=vocab_size,
        model_type="bpe", character_coverage=1.0, bos_id=-1, eos_id=-1, num_threads=1,
        minloglevel=2,
    )
    pieces = [p.split("\t")[0] for p in (folder / "tokenizer.vocab").read_text().splitlines()]
    (folder / "vocab.txt").write_text("\n".join(pieces[1:]) + "\n")
    return folder


def _preprocessor() -> dict[str, Any]:
    return {
        "_target_": "nemo.collections.asr.modules.AudioToMelSpectrogramPreprocessor",
        "sample_rate": 16000, "normalize": "per_feature", "window_size": 0.025,
        "window_stride": 0.01, "window": "hann", "features": 80, "n_fft": 512, "log": True,
        "frame_splicing": 1, "dither": 0.0, "pad_to": 0, "pad_value": 0.0,
    }


def _encoder() -> dict[str, Any]:
    return {
        "_target_": "nemo.collections.asr.modules.ConformerEncoder",
        "feat_in": 80, "feat_out": -1, "n_layers": 1, "d_model": D_MODEL,
        "subsampling": "striding", "subsampling_factor": 4, "subsampling_conv_channels": -1,
        "ff_expansion_factor": 4, "self_attention_model": "rel_pos", "n_heads": 2,
        "att_context_size": [-1, -1], "xscaling": True, "untie_biases": True,
        "pos_emb_max_len": 5000, "conv_kernel_size": 31, "conv_norm_type": "batch_norm",
        "dropout": 0.1, "dropout_pre_encoder": 0.1, "dropout_emb": 0.0, "dropout_att": 0.1,
    }


def _rnnt_parts() -> dict[str, Any]:
    return {
        "model_defaults": {"enc_hidden": D_MODEL, "pred_hidden": D_MODEL},
        "decoder": {
            "_target_": "nemo.collections.asr.modules.RNNTDecoder",
            "normalization_mode": None, "random_state_sampling": False, "blank_as_pad": True,
            "prednet": {"pred_hidden": D_MODEL, "pred_rnn_layers": 1, "t_max": None,
                        "dropout": 0.0},
        },
        "joint": {
            "_target_": "nemo.collections.asr.modules.RNNTJoint",
            "log_softmax": None, "preserve_memory": False, "fuse_loss_wer": False,
            "fused_batch_size": 4,
            "jointnet": {"joint_hidden": D_MODEL, "activation": "relu", "dropout": 0.0},
        },
        "decoding": {"strategy": "greedy_batch", "greedy": {"max_symbols": 5}},
        "loss": {"loss_name": "default"},
    }


def _common() -> dict[str, Any]:
    return {"sample_rate": 16000, "preprocessor": _preprocessor(), "encoder": _encoder(),
            "spec_augment": None, "optim": None}


def rnnt_char_config() -> dict[str, Any]:
    return {**_common(), "labels": CHARS, **_rnnt_parts()}


def rnnt_bpe_config(tokenizer_dir: Path) -> dict[str, Any]:
    return {**_common(), "tokenizer": {"dir": str(tokenizer_dir), "type": "bpe"},
            **_rnnt_parts()}


def rnnt_lstm_bpe_config(tokenizer_dir: Path) -> dict[str, Any]:
    """The BPE RNNT with its Conformer swapped for an LSTM encoder (NeMo's RNNEncoder), whose
    `pre_encode` subsampling has the Conformer's names: an encoder swap that keeps only the
    decoder and the joint."""
    encoder = {
        "_target_": "nemo.collections.asr.modules.RNNEncoder", "feat_in": 80, "n_layers": 1,
        "d_model": D_MODEL, "proj_size": D_MODEL // 2, "rnn_type": "lstm",
        "bidirectional": False, "subsampling": "striding", "subsampling_factor": 4,
        "subsampling_conv_channels": D_MODEL, "dropout": 0.0,
    }
    return {**rnnt_bpe_config(tokenizer_dir), "encoder": encoder}


def ctc_bpe_config(tokenizer_dir: Path) -> dict[str, Any]:
    return {
        **_common(), "tokenizer": {"dir": str(tokenizer_dir), "type": "bpe"},
        "decoder": {"_target_": "nemo.collections.asr.modules.ConvASRDecoder",
                    "feat_in": D_MODEL, "num_classes": -1, "vocabulary": []},
        "decoding": {"strategy": "greedy_batch"},
    }


def build(cls: Any, cfg: dict[str, Any], seed: int) -> Any:
    """`cls(cfg)` with a fixed seed, BatchNorm statistics perturbed so they look trained."""
    import torch
    from omegaconf import OmegaConf

    torch.manual_seed(seed)
    model = cls(cfg=OmegaConf.create(cfg))
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if name.endswith(("running_mean", "running_var")):
                t.copy_(torch.rand_like(t) + 0.5)
    return model.eval()
