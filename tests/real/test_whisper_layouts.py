"""The built-in Whisper rule sets against transformers' own WhisperForConditionalGeneration.

For several model sizes an HF model with random weights is written with save_pretrained
(safetensors) or torch.save; the OpenAI and WeNet files it corresponds to are built by the oracle
in tests/whisper_reference.py (the reference scripts' own tables, sharing nothing with the rule
data). `ckpt apply` moves the weights HF -> OpenAI -> HF and HF -> WeNet -> HF into differently
initialised targets; every tensor must be the oracle's, and the HF model at the end of each round
trip must compute the same logits. Where openai-whisper is installed in its own folder
(INSPECTOR_WHISPER_SITE; see .ci/run) OpenAI's own `Whisper` model loads the converted file and
must compute the same logits as the HF model. WeNet is not on PyPI: its layout is checked
against the table derived from its conversion script only.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch

transformers = pytest.importorskip(
    "transformers", reason="needs transformers: run in the real-library venv (/work/venv-real)"
)

from subproc import child_env, ckpt, python  # noqa: E402
from whisper_reference import hf_name, openai_names, wenet_name  # noqa: E402

from inspector.mapping import propose  # noqa: E402

SITE = os.environ.get("INSPECTOR_WHISPER_SITE")


@dataclass(frozen=True)
class Case:
    d_model: int
    encoder_layers: int
    decoder_layers: int
    heads: int
    vocab: int
    n_mels: int
    audio_ctx: int  # max_source_positions; the mel input has 2x frames
    text_ctx: int

    @property
    def id(self) -> str:
        return (f"d{self.d_model}-enc{self.encoder_layers}-dec{self.decoder_layers}"
                f"-v{self.vocab}-mel{self.n_mels}")

    def config(self) -> Any:
        return transformers.WhisperConfig(
            vocab_size=self.vocab, num_mel_bins=self.n_mels, d_model=self.d_model,
            encoder_layers=self.encoder_layers, decoder_layers=self.decoder_layers,
            encoder_attention_heads=self.heads, decoder_attention_heads=self.heads,
            encoder_ffn_dim=4 * self.d_model, decoder_ffn_dim=4 * self.d_model,
            max_source_positions=self.audio_ctx, max_target_positions=self.text_ctx,
            pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=1,
        )

    def dims(self) -> dict[str, int]:
        """OpenAI's ModelDimensions for this config (the script's WhisperConfig arguments)."""
        return {"n_mels": self.n_mels, "n_audio_ctx": self.audio_ctx,
                "n_audio_state": self.d_model, "n_audio_head": self.heads,
                "n_audio_layer": self.encoder_layers, "n_vocab": self.vocab,
                "n_text_ctx": self.text_ctx, "n_text_state": self.d_model,
                "n_text_head": self.heads, "n_text_layer": self.decoder_layers}


CASES = [
    Case(64, 2, 3, 4, 120, 80, 30, 16),
    Case(48, 1, 2, 2, 77, 128, 20, 12),  # large-v3's 128 mel bins
    Case(32, 3, 1, 4, 51, 80, 16, 8),
]
KINDS = ["safetensors", "torch"]


def build(case: Case, seed: int) -> Any:
    torch.manual_seed(seed)
    model = transformers.WhisperForConditionalGeneration(case.config()).eval()
    with torch.no_grad():  # every tensor random, the norms and positions too
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.2)
    return model


def save_hf(model: Any, kind: str, path: Path) -> Path:
    if kind == "safetensors":
        model.save_pretrained(path)
        return path
    path = path.with_suffix(".pt")
    torch.save(model.state_dict(), path)
    return path


def load_hf(case: Case, kind: str, path: Path) -> Any:
    if kind == "safetensors":
        model, info = transformers.WhisperForConditionalGeneration.from_pretrained(
            path, output_loading_info=True)
        assert not any(info.values()), info
        return model.eval()
    model = transformers.WhisperForConditionalGeneration(case.config()).eval()
    model.load_state_dict(torch.load(path, weights_only=True))
    return model


def openai_state(case: Case, model: Any) -> dict[str, Any]:
    hf = model.state_dict()
    return {n: hf[hf_name(n)].detach().clone()
            for n in openai_names(case.encoder_layers, case.decoder_layers)}


def wenet_state(case: Case, model: Any, full: bool) -> dict[str, Any]:
    """What WeNet's script writes (float32); `full`: a WeNet model's own state dict, with the
    output layer tied to the embedding (one storage), its bias and a CTC head."""
    out = {}
    for name, value in openai_state(case, model).items():
        new, unsqueeze = wenet_name(name)
        out[new] = (value.unsqueeze(0) if unsqueeze else value).float()
    if full:
        torch.manual_seed(99)
        out["decoder.output_layer.weight"] = out["decoder.embed.0.weight"]  # tied
        out["decoder.output_layer.bias"] = torch.randn(case.vocab)
        out["ctc.ctc_lo.weight"] = torch.randn(case.vocab, case.d_model)
        out["ctc.ctc_lo.bias"] = torch.randn(case.vocab)
    return out


def inputs(case: Case) -> tuple[Any, Any]:
    g = torch.Generator().manual_seed(3)
    mel = torch.randn(2, case.n_mels, 2 * case.audio_ctx, generator=g)
    tokens = torch.randint(0, case.vocab, (2, case.text_ctx // 2), generator=g)
    return mel, tokens


def logits(model: Any, case: Case) -> Any:
    mel, tokens = inputs(case)
    with torch.no_grad():
        return model(input_features=mel, decoder_input_ids=tokens).logits


def apply(source: Path, target: Path, rules: str, out: Path) -> dict[str, Any]:
    done = ckpt("apply", "--source", source, "--target", target, "--rules", rules, "-o", out,
                "--accept-proposed", "--strict", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["verification"]["ok"]
    assert report["skipped"] == []
    return report


def assert_state(got: dict[str, Any], want: dict[str, Any]) -> None:
    assert sorted(got) == sorted(want)
    differ = [k for k in want if not torch.equal(got[k], want[k])]
    assert differ == []


@pytest.fixture(params=[(c, k) for c in CASES for k in KINDS],
                ids=lambda p: f"{p[0].id}-{p[1]}")
def hf(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    case, kind = request.param
    reference = build(case, seed=0)
    return {"case": case, "kind": kind, "reference": reference, "tmp": tmp_path,
            "source": save_hf(reference, kind, tmp_path / "hf_source")}


# -- HF <-> OpenAI -----------------------------------------------------------------------------
def to_openai(hf: dict[str, Any]) -> Path:
    case, tmp = hf["case"], hf["tmp"]
    target = tmp / "openai_target.pt"
    torch.save({"dims": case.dims(), "model_state_dict": openai_state(case, build(case, 1))},
               target)
    out = tmp / "openai.pt"
    apply(hf["source"], target, "whisper-hf-to-openai", out)
    return out


def test_hf_to_openai_gives_the_scripts_layout(hf: dict[str, Any]) -> None:
    case = hf["case"]
    out = to_openai(hf)
    saved = torch.load(out, weights_only=True)
    assert saved["dims"] == case.dims()  # the target's container is kept
    assert_state(saved["model_state_dict"], openai_state(case, hf["reference"]))


def test_hf_openai_hf_round_trip_computes_the_same(hf: dict[str, Any]) -> None:
    case, kind, tmp, reference = hf["case"], hf["kind"], hf["tmp"], hf["reference"]
    openai = to_openai(hf)
    target = save_hf(build(case, seed=2), kind, tmp / "hf_target")
    report = apply(openai, target, "whisper-openai-to-hf", tmp / f"hf_out{target.suffix}")
    # all but proj_out.weight, which a torch.save'd target holds (kept: it follows embed_tokens)
    tied = case.vocab * case.d_model if kind == "torch" else 0
    assert report["params_total"] - report["params_loaded"] == tied
    model = load_hf(case, kind, tmp / f"hf_out{target.suffix}")
    assert_state(model.state_dict(), reference.state_dict())
    assert torch.equal(model.proj_out.weight, reference.model.decoder.embed_tokens.weight)
    assert torch.allclose(logits(model, case), logits(reference, case), atol=1e-6)
    untouched = load_hf(case, kind, target)  # the comparison can tell
    assert not torch.allclose(logits(untouched, case), logits(reference, case), atol=1e-3)


def test_every_tensor_is_placed_by_a_rule(hf: dict[str, Any]) -> None:
    case, tmp = hf["case"], hf["tmp"]
    openai = to_openai(hf)
    plan = propose(hf["source"], openai, rules="whisper-hf-to-openai")
    assert all(e.decision == "copy" and e.evidence[0].kind == "rule" and not e.flags
               for e in plan.entries.values()), [e.reason for e in plan.entries.values()]
    # proj_out.weight is dropped where the HF file has it (torch.save; save_pretrained omits it)
    dropped = [("proj_out.weight", "dropped by rules[1]")] if hf["kind"] == "torch" else []
    assert [(u.name, u.reason) for u in plan.unused] == dropped
    target = save_hf(build(case, seed=2), hf["kind"], tmp / "hf_target")
    back = propose(openai, target, rules="whisper-openai-to-hf")
    for name, e in back.entries.items():
        if name == "proj_out.weight":
            assert e.effective == "keep"
            assert "kept-by-rule" in e.flags
        else:
            assert e.decision == "copy", (name, e.reason)
            assert e.evidence[0].kind == "rule", (name, e.reason)
    assert back.unused == []
    assert back.partials() == []


@pytest.mark.parametrize("case", CASES[:2], ids=lambda c: c.id)
def test_openai_whisper_computes_the_same(case: Case, tmp_path: Path) -> None:
    """OpenAI's own model (openai-whisper) loads the converted file and agrees with HF."""
    if not SITE or not (Path(SITE) / "whisper" / "model.py").is_file():
        pytest.skip("needs openai-whisper in INSPECTOR_WHISPER_SITE (see .ci/run)")
    reference = build(case, seed=0)
    hf = {"case": case, "kind": "safetensors", "reference": reference, "tmp": tmp_path,
          "source": save_hf(reference, "safetensors", tmp_path / "hf_source")}
    openai = to_openai(hf)
    mel, tokens = inputs(case)
    torch.save({"mel": mel, "tokens": tokens}, tmp_path / "inputs.pt")
    env = child_env()
    env["PYTHONPATH"] = SITE + os.pathsep + env["PYTHONPATH"]
    done = python(Path(__file__).with_name("whisper_openai_child.py"), openai,
                  tmp_path / "inputs.pt", tmp_path / "openai_logits.pt", env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    theirs = torch.load(tmp_path / "openai_logits.pt", weights_only=True)
    assert theirs["names"] == openai_names(case.encoder_layers, case.decoder_layers)
    ours = logits(reference, case)
    assert torch.allclose(theirs["logits"], ours, atol=1e-4), (theirs["logits"] - ours).abs().max()


# -- HF <-> WeNet ------------------------------------------------------------------------------
@pytest.mark.parametrize("full", [False, True], ids=["script-output", "wenet-model"])
def test_hf_wenet_hf_round_trip(hf: dict[str, Any], full: bool) -> None:
    case, kind, tmp, reference = hf["case"], hf["kind"], hf["tmp"], hf["reference"]
    target = tmp / "wenet_target.pt"
    original = wenet_state(case, build(case, seed=1), full)
    torch.save(original, target)
    wenet = tmp / "wenet.pt"
    apply(hf["source"], target, "whisper-hf-to-wenet", wenet)
    got = torch.load(wenet, weights_only=True)
    want = wenet_state(case, reference, full=False)
    if full:  # the output layer follows the embedding it is tied to; bias and CTC kept
        want["decoder.output_layer.weight"] = want["decoder.embed.0.weight"]
        for name in ("decoder.output_layer.bias", "ctc.ctc_lo.weight", "ctc.ctc_lo.bias"):
            want[name] = original[name]
        assert got["decoder.output_layer.weight"].data_ptr() == \
            got["decoder.embed.0.weight"].data_ptr()  # still tied
    assert_state(got, want)

    back = save_hf(build(case, seed=2), kind, tmp / "hf_target")
    out = tmp / f"hf_out{back.suffix}"
    apply(wenet, back, "whisper-wenet-to-hf", out)
    model = load_hf(case, kind, out)
    assert_state(model.state_dict(), reference.state_dict())
    assert torch.allclose(logits(model, case), logits(reference, case), atol=1e-6)


def test_half_precision_hf_to_wenet_casts_like_the_script(tmp_path: Path) -> None:
    """The script writes float32 (`.float()`): a float16 HF model is cast on the way."""
    case = CASES[0]
    reference = build(case, seed=0).half()
    source = save_hf(reference, "safetensors", tmp_path / "hf_source")
    target = tmp_path / "wenet_target.pt"
    torch.save(wenet_state(case, build(case, seed=1), full=False), target)
    apply(source, target, "whisper-hf-to-wenet", tmp_path / "wenet.pt")
    got = torch.load(tmp_path / "wenet.pt", weights_only=True)
    assert_state(got, wenet_state(case, reference, full=False))
    assert {v.dtype for v in got.values()} == {torch.float32}


def test_oracle_names_are_the_models_names() -> None:
    """The oracle's OpenAI names, renamed by the transformers script's table, are exactly the HF
    model's (its proj_out aside), and WeNet's script renames every one of them."""
    for case in CASES:
        names = openai_names(case.encoder_layers, case.decoder_layers)
        hf_names = set(transformers.WhisperForConditionalGeneration(case.config()).state_dict())
        assert {hf_name(n) for n in names} == hf_names - {"proj_out.weight"}
        wenet = [wenet_name(n)[0] for n in names]
        assert len(set(wenet)) == len(names)
        assert not set(wenet) & set(names)
    cross_ln = "decoder.blocks.0.cross_attn_ln.weight"
    assert wenet_name(cross_ln)[0] == "decoder.decoders.0.norm2.weight"
    assert wenet_name("decoder.blocks.0.mlp_ln.bias")[0] == "decoder.decoders.0.norm3.bias"
    assert wenet_name("encoder.blocks.1.mlp_ln.bias")[0] == "encoder.encoders.1.norm2.bias"


def test_ckpt_map_explains_a_size_mismatch_in_whisper_config_names(tmp_path: Path) -> None:
    """HF folders (config.json) and an OpenAI file (dims): the hint names the layout's own key."""
    small, big = CASES[0], Case(64, 4, 3, 4, 120, 80, 30, 16)
    source = save_hf(build(small, 0), "safetensors", tmp_path / "small")
    target = save_hf(build(big, 1), "safetensors", tmp_path / "big")
    done = ckpt("map", source, target)
    assert done.returncode == 0, done.stderr
    assert ("model.encoder.layers: layers 2 -> 4: set encoder_layers=2 in the target config to "
            "transfer it") in done.stdout
    wide = Case(96, 2, 3, 4, 120, 80, 30, 16)
    openai = tmp_path / "wide.pt"
    torch.save({"dims": wide.dims(), "model_state_dict": openai_state(wide, build(wide, 1))},
               openai)
    done = ckpt("map", source, openai, "--rules", "whisper-hf-to-openai")
    assert done.returncode == 0, done.stderr
    assert ("decoder.blocks: d_model 64 -> 96, ffn 256 -> 384: set dims.n_text_state=64 in the "
            "target config to transfer it") in done.stdout
