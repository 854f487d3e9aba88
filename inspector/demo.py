"""Demo checkpoints for `ckpt-tui --demo` and the README: a real migration to resolve.

A character-level RNNT model (Lightning-style `.ckpt`-like `.pt`, vocabulary 28 + blank) and a
BPE RNNT model as `.nemo` (vocabulary 256 + blank) with the same Conformer encoder, named as
NeMo names them. The encoder and preprocessor transfer; the prediction network and joint do not,
although the LSTM and the joint's projections keep their shapes: the vocabulary changed. The
target's depthwise convolution kernel is shorter (9 vs 31), a shape mismatch to resolve.
Weights are random (seeded), so the files are small test data, not models.
"""

from __future__ import annotations

import io
import tarfile
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CHAR_VOCAB = [" ", "'", *"abcdefghijklmnopqrstuvwxyz"]  # 28 symbols, blank is added by RNNT
BPE_VOCAB_SIZE = 256


@dataclass(frozen=True)
class RNNTConfig:
    vocab_size: int
    d_model: int = 144
    n_layers: int = 4
    n_heads: int = 4
    ff_expansion: int = 4
    conv_kernel: int = 31
    n_mels: int = 80
    subsampling_channels: int = 144
    pred_hidden: int = 160
    joint_hidden: int = 160


def rnnt_shapes(cfg: RNNTConfig) -> dict[str, tuple[int, ...]]:
    """Tensor names and shapes of a NeMo Conformer-Transducer (EncDecRNNTModel) state dict."""
    d, c, h = cfg.d_model, cfg.subsampling_channels, cfg.n_heads
    shapes: dict[str, tuple[int, ...]] = {
        "preprocessor.featurizer.window": (400,),
        "preprocessor.featurizer.fb": (1, cfg.n_mels, 257),
        "encoder.pre_encode.conv.0.weight": (c, 1, 3, 3),
        "encoder.pre_encode.conv.0.bias": (c,),
        "encoder.pre_encode.conv.2.weight": (c, 1, 3, 3),
        "encoder.pre_encode.conv.2.bias": (c,),
        "encoder.pre_encode.conv.3.weight": (c, c, 1, 1),
        "encoder.pre_encode.conv.3.bias": (c,),
        "encoder.pre_encode.out.weight": (d, c * (cfg.n_mels // 4)),
        "encoder.pre_encode.out.bias": (d,),
    }
    for i in range(cfg.n_layers):
        shapes.update(
            {f"encoder.layers.{i}.{k}": s for k, s in _conformer_layer(cfg, d, h).items()}
        )
    v, p, j = cfg.vocab_size + 1, cfg.pred_hidden, cfg.joint_hidden
    shapes.update(
        {
            "decoder.prediction.embed.weight": (v, p),
            "decoder.prediction.dec_rnn.lstm.weight_ih_l0": (4 * p, p),
            "decoder.prediction.dec_rnn.lstm.weight_hh_l0": (4 * p, p),
            "decoder.prediction.dec_rnn.lstm.bias_ih_l0": (4 * p,),
            "decoder.prediction.dec_rnn.lstm.bias_hh_l0": (4 * p,),
            "joint.pred.weight": (j, p),
            "joint.pred.bias": (j,),
            "joint.enc.weight": (j, d),
            "joint.enc.bias": (j,),
            "joint.joint_net.2.weight": (v, j),
            "joint.joint_net.2.bias": (v,),
        }
    )
    return shapes


def _conformer_layer(cfg: RNNTConfig, d: int, h: int) -> dict[str, tuple[int, ...]]:
    ff = d * cfg.ff_expansion
    layer: dict[str, tuple[int, ...]] = {}
    for block in ("feed_forward1", "feed_forward2"):
        layer.update(
            {
                f"norm_{block}.weight": (d,),
                f"norm_{block}.bias": (d,),
                f"{block}.linear1.weight": (ff, d),
                f"{block}.linear1.bias": (ff,),
                f"{block}.linear2.weight": (d, ff),
                f"{block}.linear2.bias": (d,),
            }
        )
    layer.update(
        {
            "norm_conv.weight": (d,),
            "norm_conv.bias": (d,),
            "conv.pointwise_conv1.weight": (2 * d, d, 1),
            "conv.pointwise_conv1.bias": (2 * d,),
            "conv.depthwise_conv.weight": (d, 1, cfg.conv_kernel),
            "conv.depthwise_conv.bias": (d,),
            "conv.batch_norm.weight": (d,),
            "conv.batch_norm.bias": (d,),
            "conv.batch_norm.running_mean": (d,),
            "conv.batch_norm.running_var": (d,),
            "conv.batch_norm.num_batches_tracked": (),
            "conv.pointwise_conv2.weight": (d, d, 1),
            "conv.pointwise_conv2.bias": (d,),
            "norm_self_att.weight": (d,),
            "norm_self_att.bias": (d,),
            "self_attn.pos_bias_u": (h, d // h),
            "self_attn.pos_bias_v": (h, d // h),
            "self_attn.linear_q.weight": (d, d),
            "self_attn.linear_q.bias": (d,),
            "self_attn.linear_k.weight": (d, d),
            "self_attn.linear_k.bias": (d,),
            "self_attn.linear_v.weight": (d, d),
            "self_attn.linear_v.bias": (d,),
            "self_attn.linear_out.weight": (d, d),
            "self_attn.linear_out.bias": (d,),
            "self_attn.linear_pos.weight": (d, d),
            "norm_out.weight": (d,),
            "norm_out.bias": (d,),
        }
    )
    return layer


def random_state(shapes: dict[str, tuple[int, ...]], seed: int) -> dict[str, np.ndarray]:
    """Seeded values that look trained: small weights, unit-ish norms, positive variances."""
    rng = np.random.default_rng(seed)
    state: dict[str, np.ndarray] = {}
    for name, shape in shapes.items():
        if name.endswith("num_batches_tracked"):
            state[name] = np.array(int(rng.integers(1000, 100000)), dtype=np.int64)
        elif name.endswith("running_var"):
            state[name] = rng.uniform(0.5, 2.0, shape).astype(np.float32)
        elif name.split(".")[-2].startswith("norm") and name.endswith("weight"):
            state[name] = (1 + 0.05 * rng.standard_normal(shape)).astype(np.float32)
        else:
            state[name] = (0.02 * rng.standard_normal(shape)).astype(np.float32)
    return state


def nemo_config(cfg: RNNTConfig, tokenizer_files: dict[str, str]) -> str:
    """A model_config.yaml in NeMo's layout (the parts a migration looks at)."""
    return (
        "target: nemo.collections.asr.models.rnnt_bpe_models.EncDecRNNTBPEModel\n"
        "sample_rate: 16000\n"
        "tokenizer:\n"
        f"  dir: null\n  type: bpe\n  model_path: nemo:{tokenizer_files['model']}\n"
        f"  vocab_path: nemo:{tokenizer_files['vocab']}\n"
        "preprocessor:\n"
        "  _target_: nemo.collections.asr.modules.AudioToMelSpectrogramPreprocessor\n"
        f"  features: {cfg.n_mels}\n  window_size: 0.025\n  n_fft: 512\n"
        "encoder:\n"
        "  _target_: nemo.collections.asr.modules.ConformerEncoder\n"
        f"  feat_in: {cfg.n_mels}\n  n_layers: {cfg.n_layers}\n  d_model: {cfg.d_model}\n"
        f"  n_heads: {cfg.n_heads}\n  ff_expansion_factor: {cfg.ff_expansion}\n"
        f"  conv_kernel_size: {cfg.conv_kernel}\n  subsampling: dw_striding\n"
        f"  subsampling_factor: 4\n  subsampling_conv_channels: {cfg.subsampling_channels}\n"
        "decoder:\n"
        "  _target_: nemo.collections.asr.modules.RNNTDecoder\n"
        f"  vocab_size: {cfg.vocab_size}\n  prednet:\n    pred_hidden: {cfg.pred_hidden}\n"
        "    pred_rnn_layers: 1\n"
        "joint:\n"
        "  _target_: nemo.collections.asr.modules.RNNTJoint\n"
        f"  num_classes: {cfg.vocab_size}\n  jointnet:\n    joint_hidden: {cfg.joint_hidden}\n"
        "    activation: relu\n"
    )


@dataclass(frozen=True)
class DemoFiles:
    source: Path
    target: Path


def build_demo(folder: str | Path) -> DemoFiles:
    """Write the demo pair into `folder` (created if needed) and return their paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    char_cfg = RNNTConfig(vocab_size=len(CHAR_VOCAB))
    # The target was configured with a shorter depthwise kernel (a streaming recipe): those four
    # tensors cannot transfer, and the review has to decide what to do with them.
    bpe_cfg = RNNTConfig(vocab_size=BPE_VOCAB_SIZE, conv_kernel=9)

    source = folder / "rnnt_char.pt"
    source_state = random_state(rnnt_shapes(char_cfg), seed=1)
    # Lightning-style training checkpoint: the weights sit under 'state_dict'.
    _save_torch({"epoch": 41, "global_step": 123000, "state_dict": source_state}, source)

    target = folder / "rnnt_bpe.nemo"
    weights = folder / ".model_weights.ckpt"
    _save_torch(random_state(rnnt_shapes(bpe_cfg), seed=2), weights)
    uid = uuid.UUID(int=0x1234).hex
    tok = {"model": f"{uid}_tokenizer.model", "vocab": f"{uid}_vocab.txt"}
    rng = np.random.default_rng(3)
    members = {
        "./model_config.yaml": nemo_config(bpe_cfg, tok).encode(),
        "./model_weights.ckpt": weights.read_bytes(),
        f"./{tok['model']}": rng.bytes(4096),
        f"./{tok['vocab']}": "\n".join(f"piece{i}" for i in range(BPE_VOCAB_SIZE)).encode(),
    }
    weights.unlink()
    _write_tar(target, members)
    return DemoFiles(source, target)


def _save_torch(tree: Mapping[str, object], path: Path) -> None:
    """A torch zip file written by the project's own writer (no torch needed)."""
    from .reader import open_checkpoint
    from .writers.build import build_output
    from .writers.torch_zip import write

    write(build_output(open_checkpoint(tree), {}), path)


def _write_tar(path: Path, members: dict[str, bytes]) -> None:
    """A .nemo as NeMo >= 1.7 writes it: an uncompressed tar with `./`-prefixed members."""
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        root = tarfile.TarInfo(".")
        root.type, root.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(root)
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
