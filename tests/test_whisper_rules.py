"""The built-in Whisper rule sets on names (fast tier): every name of each layout, for several
layer counts, maps onto the name the reference scripts give it (tests/whisper_reference.py, the
scripts' own tables), in both directions; the unsqueeze/squeeze transforms WeNet needs; and a
small synthetic checkpoint through `ckpt apply` both ways. tests/real/test_whisper_layouts.py does
the same with transformers' models and compares outputs."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch
from subproc import ckpt
from whisper_reference import hf_name, openai_names, openai_shape, wenet_name

from inspector.errors import PlanError
from inspector.mapping import apply_rules, builtin_rule_sets, invert_rules, load_rules
from inspector.mapping.rules import Table
from inspector.mapping.transforms import Squeeze, Unsqueeze, chain_inverse, transform_from_dict

SETS = ("whisper-openai-to-hf", "whisper-hf-to-openai", "whisper-hf-to-wenet",
        "whisper-wenet-to-hf")
LAYERS = [(1, 1), (2, 3), (4, 2)]
UNSQUEEZE = (Unsqueeze(0),)
SQUEEZE = (Squeeze(0),)


def layouts(enc: int, dec: int) -> list[tuple[str, str, str, bool]]:
    """(openai, hf, wenet name, wenet adds an axis) for every tensor of a model."""
    out = []
    for n in openai_names(enc, dec):
        wenet, unsqueeze = wenet_name(n)
        out.append((n, hf_name(n), wenet, unsqueeze))
    return out


def test_the_sets_are_listed_with_one_line_each() -> None:
    listed = builtin_rule_sets()
    for name in SETS:
        text = listed[name]
        assert "Whisper" in text
        assert "\n" not in text
    assert "OpenAI" in listed["whisper-openai-to-hf"]
    assert "WeNet" in listed["whisper-hf-to-wenet"]


@pytest.mark.parametrize(("enc", "dec"), LAYERS)
def test_openai_and_hf_names_map_both_ways(enc: int, dec: int) -> None:
    to_hf, to_openai = load_rules("whisper-openai-to-hf"), load_rules("whisper-hf-to-openai")
    for openai, hf, _, _ in layouts(enc, dec):
        res = apply_rules(to_hf, openai)
        assert res.names == (hf,), openai
        assert res.fired  # by a rule, never the name as it is
        assert res.transforms == ()
        assert apply_rules(to_openai, hf).names == (openai,), hf
    assert apply_rules(to_openai, "proj_out.weight").dropped
    assert [r.keeps("proj_out.weight") for r in to_hf][-1]


@pytest.mark.parametrize(("enc", "dec"), LAYERS)
def test_hf_and_wenet_names_map_both_ways(enc: int, dec: int) -> None:
    to_wenet, to_hf = load_rules("whisper-hf-to-wenet"), load_rules("whisper-wenet-to-hf")
    for _, hf, wenet, unsqueeze in layouts(enc, dec):
        res = apply_rules(to_wenet, hf)
        assert res.names == (wenet,), hf
        assert res.transforms == (UNSQUEEZE if unsqueeze else ())
        back = apply_rules(to_hf, wenet)
        assert back.names == (hf,), wenet
        assert back.transforms == (SQUEEZE if unsqueeze else ())
    assert apply_rules(to_wenet, "proj_out.weight").dropped
    for name in ("decoder.output_layer.weight", "decoder.output_layer.bias", "ctc.ctc_lo.weight"):
        assert apply_rules(to_hf, name).dropped
        assert any(r.keeps(name) for r in to_wenet)


def test_the_openai_tables_invert_into_each_other() -> None:
    """The name table of either direction, inverted, maps every name as the other set does."""
    to_hf, to_openai = load_rules("whisper-openai-to-hf"), load_rules("whisper-hf-to-openai")
    assert isinstance(to_hf[0], Table)
    inverted, inverted_back = invert_rules(to_hf[:1]), invert_rules(to_openai[:1])
    for openai, hf, _, _ in layouts(2, 3):
        assert apply_rules(inverted, hf).names == apply_rules(to_openai, hf).names == (openai,)
        assert apply_rules(inverted_back, openai).names == (hf,)
    with pytest.raises(PlanError, match=r"rules\[1\]: keep proj_out.weight cannot be inverted"):
        invert_rules(to_hf)


def test_every_name_of_the_model_is_covered_exactly_once() -> None:
    """No two tensors land on one name, whatever the layer count (first-match tables)."""
    for enc, dec in LAYERS:
        rows = layouts(enc, dec)
        for column in (1, 2):
            assert len({r[column] for r in rows}) == len(rows)
    # a 10th layer is not confused with layer 1 (templates match whole components)
    res = apply_rules(load_rules("whisper-hf-to-wenet"), "model.decoder.layers.10.fc1.weight")
    assert res.names == ("decoder.decoders.10.feed_forward.w_1.weight",)


def test_unsqueeze_and_squeeze() -> None:
    assert Unsqueeze(0).out_shape([(448, 64)]) == (1, 448, 64)
    assert Unsqueeze(-1).out_shape([(3, 4)]) == (3, 4, 1)
    assert Squeeze(0).out_shape([(1, 448, 64)]) == (448, 64)
    assert chain_inverse([Unsqueeze(-1)], [(3, 4)], ["float32"]) == [Squeeze(2)]
    assert chain_inverse([Squeeze(0)], [(1, 5)], ["float32"]) == [Unsqueeze(0)]
    assert transform_from_dict({"op": "unsqueeze", "axis": 1}, "t") == Unsqueeze(1)
    with pytest.raises(PlanError, match="axis 0 has size 448, not 1"):
        Squeeze(0).out_shape([(448, 64)])
    with pytest.raises(PlanError, match="axis 3 out of range for a 3-d tensor"):
        Unsqueeze(3).out_shape([(448, 64)])
    with pytest.raises(PlanError, match=r"t\.axis: expected an integer"):
        transform_from_dict({"op": "squeeze", "axis": "0"}, "t")


def _synthetic(names: list[str], shapes: dict[str, tuple[int, ...]], seed: int) -> dict:
    rng = np.random.default_rng(seed)
    return {n: torch.from_numpy(rng.standard_normal(shapes[n]).astype(np.float32))
            for n in names}


def test_apply_moves_a_synthetic_checkpoint_hf_wenet_hf(tmp_path: Path) -> None:
    """Values, not only names: the positional tables gain and lose their axis on the way."""
    rows = layouts(1, 2)
    hf_shapes = {hf: (6, 4) if unsq else (4,) for _, hf, _, unsq in rows}
    wenet_shapes = {w: (1, 6, 4) if unsq else (4,) for _, _, w, unsq in rows}
    hf_names = [r[1] for r in rows]
    wenet_names = [r[2] for r in rows]
    source = _synthetic(hf_names, hf_shapes, seed=0)
    torch.save(source, tmp_path / "hf.pt")
    torch.save(_synthetic(wenet_names, wenet_shapes, seed=1), tmp_path / "wenet_init.pt")
    torch.save(_synthetic(hf_names, hf_shapes, seed=2), tmp_path / "hf_init.pt")
    for src, tgt, rules, out in (
        ("hf.pt", "wenet_init.pt", "whisper-hf-to-wenet", "wenet.pt"),
        ("wenet.pt", "hf_init.pt", "whisper-wenet-to-hf", "back.pt"),
    ):
        done = ckpt("apply", "--source", tmp_path / src, "--target", tmp_path / tgt, "--rules",
                    rules, "-o", tmp_path / out, "--accept-proposed", "--strict")
        assert done.returncode == 0, done.stdout + done.stderr
    wenet = torch.load(tmp_path / "wenet.pt", weights_only=True)
    for _, hf, w, unsq in rows:
        assert torch.equal(wenet[w], source[hf].unsqueeze(0) if unsq else source[hf]), w
    back = torch.load(tmp_path / "back.pt", weights_only=True)
    assert list(back) == hf_names
    for name in hf_names:
        assert torch.equal(back[name], source[name]), name


@pytest.mark.parametrize("name", SETS)
def test_a_source_in_the_wrong_layout_maps_nothing(name: str) -> None:
    """A set's rules fire on its own source layout only (no name of the other layouts)."""
    rules = load_rules(name)
    own = {"whisper-openai-to-hf": 0, "whisper-hf-to-openai": 1, "whisper-hf-to-wenet": 1,
           "whisper-wenet-to-hf": 2}[name]
    for row, column in itertools.product(layouts(2, 2), range(3)):
        res = apply_rules(rules, row[column])
        assert bool(res.fired) == (column == own), (name, row[column])


# -- architecture: a config mismatch explained in each layout's own config names ----------------
def _sizes(d: int = 16, ffn: int = 64, enc: int = 2, dec: int = 2, vocab: int = 40) -> dict:
    return {"d": d, "ffn": ffn, "enc": enc, "dec": dec, "vocab": vocab}


def _write(layout: str, path: Path, seed: int, sizes: dict) -> Path:
    """A Whisper checkpoint of `sizes` in `layout` (hf: a torch.save'd state dict; openai: the
    {'dims', 'model_state_dict'} file; wenet: the script's output)."""
    names = openai_names(sizes["enc"], sizes["dec"])
    shape = {n: openai_shape(n, d=sizes["d"], ffn=sizes["ffn"], vocab=sizes["vocab"], n_mels=8,
                             audio_ctx=6, text_ctx=5) for n in names}
    values = _synthetic(names, shape, seed)
    if layout == "openai":
        dims = {"n_mels": 8, "n_audio_ctx": 6, "n_audio_state": sizes["d"], "n_audio_head": 2,
                "n_audio_layer": sizes["enc"], "n_vocab": sizes["vocab"], "n_text_ctx": 5,
                "n_text_state": sizes["d"], "n_text_head": 2, "n_text_layer": sizes["dec"]}
        torch.save({"dims": dims, "model_state_dict": values}, path)
    elif layout == "hf":
        torch.save({hf_name(n): v for n, v in values.items()}, path)
    else:
        out = {}
        for n, v in values.items():
            new, unsqueeze = wenet_name(n)
            out[new] = v.unsqueeze(0) if unsqueeze else v
        torch.save(out, path)
    return path


def _explain(tmp_path: Path, target_layout: str, rules: str | None, src: dict, tgt: dict
             ) -> list[str]:
    from inspector import open as open_ckpt
    from inspector.mapping import arch, propose

    source = open_ckpt(_write("hf", tmp_path / "src.pt", 0, src))
    target = open_ckpt(_write(target_layout, tmp_path / "tgt.pt", 1, tgt))
    plan = propose(source, target, rules=rules)
    return arch.explain(plan, {"src.pt": source}, target)


@pytest.mark.parametrize(
    ("layout", "rules", "src", "tgt", "expected"),
    [
        ("hf", None, _sizes(enc=2), _sizes(enc=4),
         ["model.encoder.layers: layers 2 -> 4: set encoder_layers=2 in the target config to "
          "transfer it"]),
        ("hf", None, _sizes(d=16), _sizes(d=8, ffn=32),
         ["model.encoder.layers: d_model 16 -> 8, ffn 64 -> 32: set d_model=16, "
          "encoder_ffn_dim=64 in the target config to transfer it",
          "model.decoder.layers: d_model 16 -> 8, ffn 64 -> 32: set d_model=16, "
          "decoder_ffn_dim=64 in the target config to transfer it"]),
        ("openai", "whisper-hf-to-openai", _sizes(dec=3), _sizes(dec=2, d=8, ffn=32),
         ["encoder.blocks: d_model 16 -> 8, ffn 64 -> 32: set dims.n_audio_state=16 in the "
          "target config to transfer it",
          "decoder.blocks: layers 3 -> 2, d_model 16 -> 8, ffn 64 -> 32: set "
          "dims.n_text_layer=3, dims.n_text_state=16 in the target config to transfer it"]),
        ("openai", "whisper-hf-to-openai", _sizes(ffn=48), _sizes(ffn=64),
         ["encoder.blocks: ffn 48 -> 64: the target's layout fixes it (no config value changes "
          "it)",
          "decoder.blocks: ffn 48 -> 64: the target's layout fixes it (no config value changes "
          "it)"]),
        ("openai", "whisper-hf-to-openai", _sizes(vocab=40), _sizes(vocab=30),
         ["decoder: vocabulary changed 40 -> 30 (kept at target init; set dims.n_vocab=40 to "
          "transfer it instead)"]),
        ("wenet", "whisper-hf-to-wenet", _sizes(enc=3), _sizes(enc=2, d=8, ffn=32),
         ["encoder.encoders: layers 3 -> 2, d_model 16 -> 8, ffn 64 -> 32: set "
          "encoder_conf.num_blocks=3, encoder_conf.output_size=16, encoder_conf.linear_units=64 "
          "in the target config to transfer it",
          "decoder.decoders: d_model 16 -> 8, ffn 64 -> 32: set encoder_conf.output_size=16, "
          "decoder_conf.linear_units=64 in the target config to transfer it"]),
    ],
    ids=["hf-layers", "hf-width", "openai-width-and-layers", "openai-ffn-fixed", "openai-vocab",
         "wenet"],
)
def test_a_config_mismatch_is_explained_in_the_layouts_names(
    tmp_path: Path, layout: str, rules: str | None, src: dict, tgt: dict, expected: list[str]
) -> None:
    assert sorted(_explain(tmp_path, layout, rules, src, tgt)) == sorted(expected)


def test_an_hf_to_wenet_plan_inverts_with_squeeze(tmp_path: Path) -> None:
    """plan.invert() turns the positional tables' unsqueeze into squeeze (WeNet -> HF)."""
    from inspector.mapping import propose

    sizes = _sizes()
    plan = propose(_write("hf", tmp_path / "hf.pt", 0, sizes),
                   _write("wenet", tmp_path / "wenet.pt", 1, sizes), rules="whisper-hf-to-wenet")
    assert plan.entries["decoder.embed.1.pe"].transform == UNSQUEEZE
    back = plan.invert()
    entry = back.entries["model.decoder.embed_positions.weight"]
    assert entry.transform == SQUEEZE
    assert entry.sources == (("wenet.pt", "decoder.embed.1.pe"),)
