"""Model-level units (mapping/modules.py): the vocabulary decision and the "copied in part"
warning do not depend on the container (issue 17, items 1-2)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from mapping_fixtures import nemo_rnnt
from subproc import ckpt

import inspector
from inspector.mapping import propose
from inspector.mapping.modules import Unit, assign_units, find_units

MODULES = ("decoder", "joint")


def _under(sd: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    """A module's own state dict out of a whole model's (what `model.decoder.state_dict()` is)."""
    return {k.removeprefix(prefix): v for k, v in sd.items() if k.startswith(prefix)}


def _decisions(plan: inspector.Plan, prefix: str = "") -> dict[str, str]:
    return {n.removeprefix(prefix): e.effective for n, e in plan.entries.items()
            if n.startswith(prefix)}


# -- where the units are -------------------------------------------------------------------------
def test_units_from_signatures_wherever_the_module_sits() -> None:
    whole = list(nemo_rnnt(28))
    units = assign_units(whole, {})
    assert units["decoder.prediction.dec_rnn.lstm.weight_ih_l0"].root == "decoder."
    assert units["joint.joint_net.2.weight"].root == "joint."
    assert units["encoder.layers.0.conv.depthwise_conv.weight"].root == "encoder."  # fallback
    alone = assign_units(list(_under(nemo_rnnt(28), "decoder.")), {})
    assert {u.root for u in alone.values()} == {""}
    assert next(iter(alone.values())).label == "the whole RNNT prediction network"


def test_config_sections_and_live_children_are_units_outermost_first() -> None:
    names = ["enc.a.weight", "enc.b.weight", "head.pred.weight", "head.enc.weight", "head.out.w"]
    meta = {"config": {"enc": {"_target_": "x.Enc"}, "head": {"_target_": "x.Head"}, "lr": 1}}
    units = assign_units(names, meta)
    assert units["enc.a.weight"] == Unit("enc.", "module enc", "x.Enc")
    assert units["head.pred.weight"] == Unit("head.", "module head", "x.Head")
    # a live joint: its children are inside the whole-joint signature, which wins
    joint = ["pred.weight", "enc.weight", "joint_net.2.weight"]
    live = {"module_classes": {"pred": "Linear", "enc": "Linear", "joint_net": "Sequential"}}
    assert {u.root for u in assign_units(joint, live).values()} == {""}
    # one child wrapping everything says nothing
    assert find_units(["model.a.w", "model.b.w"], {"model": "Wrapper"}) == []


@given(st.lists(st.from_regex(r"[a-z]{1,3}(\.[a-z0-9]{1,3}){0,3}", fullmatch=True),
                min_size=1, max_size=30, unique=True))
def test_every_name_gets_exactly_one_unit_that_prefixes_it(names: list[str]) -> None:
    units = assign_units(names, {})
    assert list(units) == names
    for name, unit in units.items():
        assert name.startswith(unit.root) or unit.root == name + "."


def units_one_by_one(names: list[str], metadata: dict[str, object]) -> dict[str, Unit]:
    """`assign_units` as it was written before: a search of the known units for every name."""
    from inspector.mapping import names as nm
    from inspector.mapping.modules import module_classes

    known = find_units(names, module_classes(metadata))
    root = nm.common_root(names)
    out = {}
    for name in names:
        unit = next((u for u in known if name.startswith(u.root)), None)
        if unit is None:
            mod = nm.module_of(name, root)
            unit = Unit(mod + ".", f"module {mod}")
        out[name] = unit
    return out


@given(st.lists(st.sampled_from(
    ["decoder.prediction.embed.weight", "joint.pred.weight", "joint.enc.weight", "x.pred.weight",
     "encoder.layers.0.w", "encoder.layers.1.w", "decoder.decoder_layers.0.weight", "a.b",
     "prediction.embed.weight", "pred.weight", "enc.weight", "w"]), unique=True, max_size=12),
    st.sampled_from([{}, {"config": {"encoder": {"_target_": "a.Enc"},
                                     "decoder": {"_target_": "a.Dec"}}}]))
def test_units_are_those_a_search_per_name_finds(names: list[str], meta: dict[str, object]) -> None:
    """Names no known unit holds get their module's unit in one pass: the same units, in the
    same order, as looking every name up among the known units."""
    assert list(assign_units(names, meta).items()) == list(units_one_by_one(names, meta).items())


# -- the vocabulary decision does not depend on the container ------------------------------------
@pytest.mark.parametrize("module", MODULES)
def test_per_module_state_dicts_decide_like_the_whole_model(module: str) -> None:
    char, bpe = nemo_rnnt(28), nemo_rnnt(128)
    whole = propose(inspector.open(char), inspector.open(bpe))
    alone = propose(inspector.open(_under(char, module + ".")),
                    inspector.open(_under(bpe, module + ".")))
    assert _decisions(alone) == _decisions(whole, module + ".")
    assert set(_decisions(alone).values()) == {"keep"}
    assert all("vocab-change" in e.flags for e in alone.entries.values())


@pytest.mark.parametrize("module", MODULES)
def test_a_whole_model_into_a_submodule_keeps_it_like_the_whole_model(module: str) -> None:
    char, bpe = nemo_rnnt(28), nemo_rnnt(128)
    plan = propose(inspector.open(char), inspector.open(_under(bpe, module + ".")))
    assert set(_decisions(plan).values()) == {"keep"}
    assert all("vocab-change" in e.flags for e in plan.entries.values())


def test_per_module_files_through_the_cli(tmp_path: Path) -> None:
    for kind, vocab in (("char", 28), ("bpe", 128)):
        sd = {k: torch.from_numpy(v) for k, v in _under(nemo_rnnt(vocab), "joint.").items()}
        torch.save(sd, tmp_path / f"joint_{kind}.pt")
    r = ckpt("map", tmp_path / "joint_char.pt", tmp_path / "joint_bpe.pt")
    assert r.returncode == 0, r.stderr
    assert ("note: the whole RNNT joint network: vocabulary changed 29 -> 129 "
            "(kept at target init)") in r.stdout.splitlines()
    counts = [line.split("[", 1)[1] for line in r.stdout.splitlines() if " copy, " in line]
    assert counts, r.stdout
    assert all(c.startswith("0 copy, ") for c in counts), r.stdout


# -- modules copied in part ----------------------------------------------------------------------
def _swap(sd: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The encoder replaced by another class that keeps only `pre_encode`'s names."""
    out = {k: v for k, v in sd.items() if not k.startswith("encoder.layers.")}
    out["encoder.lstm.weight_ih_l0"] = np.zeros((128, 32), np.float32)
    return out


def test_a_module_copied_in_part_is_named_with_its_counts_and_class() -> None:
    src, tgt = inspector.open(nemo_rnnt(28)), inspector.open(_swap(nemo_rnnt(28)))
    tgt.metadata["config"] = {"encoder": {"_target_": "m.LSTMEncoder"},
                              "decoder": {"_target_": "m.RNNTDecoder"}}
    src.metadata["config"] = {"encoder": {"_target_": "m.ConformerEncoder"}}
    plan = propose(src, tgt)
    [(detail, rows)] = plan.partial_modules().items()
    assert detail == ("module encoder is copied in part: 6 of 7 tensors copy, 1 keep their init; "
                      "its class changed (ConformerEncoder -> LSTMEncoder)")
    assert rows == [n for n in tgt if n.startswith("encoder.pre_encode.")]
    # the user's decisions settle it: rejecting the partial row leaves the class change ...
    plan.reject(plan.partials())
    [detail] = plan.partial_modules()
    assert detail.endswith("6 of 7 tensors copy; its class changed (ConformerEncoder -> "
                           "LSTMEncoder)")
    # ... which approving the copies after review settles
    plan.approve(rows)
    assert plan.partial_modules() == {}


def test_a_module_without_class_change_or_partial_rows_is_whole() -> None:
    plan = propose(inspector.open(nemo_rnnt(28)), inspector.open(nemo_rnnt(28)))
    assert plan.partial_modules() == {}


def test_cli_map_json_and_apply_strict_name_the_module(tmp_path: Path) -> None:
    for name, sd in (("src", nemo_rnnt(28)), ("tgt", _swap(nemo_rnnt(28)))):
        torch.save({k: torch.from_numpy(v) for k, v in sd.items()}, tmp_path / f"{name}.pt")
    r = ckpt("map", tmp_path / "src.pt", tmp_path / "tgt.pt", "--json")
    [module] = json.loads(r.stdout)["partial_modules"]
    assert module["module"] == ("module encoder is copied in part: 6 of 7 tensors copy, 1 keep "
                                "their init")
    assert module["rows"] == ["encoder.pre_encode.conv.{0,2}.weight",
                              "encoder.pre_encode.conv.{0,2}.bias",
                              "encoder.pre_encode.out.weight", "encoder.pre_encode.out.bias"]
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules:\n  - keep: encoder.lstm.*\n")
    out = tmp_path / "out.pt"
    r = ckpt("apply", "--source", tmp_path / "src.pt", "--target", tmp_path / "tgt.pt",
             "--rules", rules, "--accept-proposed", "--strict", "-o", out)
    assert r.returncode == 0, r.stderr  # the keep is declared: the encoder is whole by choice
    r = ckpt("apply", "--source", tmp_path / "src.pt", "--target", tmp_path / "tgt.pt",
             "--accept-proposed", "--strict", "-o", out.with_name("strict.pt"))
    assert r.returncode == 1
    assert "module encoder is copied in part: 6 of 7 tensors copy, 1 keep their init" in r.stderr
    assert not out.with_name("strict.pt").exists()


def test_live_children_give_the_class(tmp_path: Path) -> None:
    class ConvEncoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.pre = torch.nn.Linear(4, 4)
            self.body = torch.nn.Conv1d(4, 4, 3)

    class LstmEncoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.pre = torch.nn.Linear(4, 4)
            self.body = torch.nn.LSTM(4, 4)

    class Model(torch.nn.Module):
        def __init__(self, encoder: torch.nn.Module) -> None:
            super().__init__()
            self.encoder, self.head = encoder, torch.nn.Linear(4, 2)

    src = inspector.open(Model(ConvEncoder()))
    src.metadata["module_classes"] = {"encoder": "x.ConvEncoder", "head": "torch.nn.Linear"}
    model = Model(LstmEncoder())
    report = inspector.load_into(model, src)
    [detail] = report.partial_modules
    assert detail.startswith("module encoder is copied in part: 2 of ")
    assert detail.endswith("its class changed (ConvEncoder -> LstmEncoder)")


def test_a_vocabulary_change_holds_when_two_sources_tie(tmp_path: Path) -> None:
    """Two sources that fit equally: the tie leaves the encoder to the user, but the decoder and
    joint keep their init for the vocabulary, not as "ambiguous" rows apply would refuse."""
    char, bpe = inspector.open(nemo_rnnt(28)), inspector.open(nemo_rnnt(128))
    plan = propose([char, inspector.open(nemo_rnnt(28))], bpe)
    for module in MODULES:
        rows = [plan.entries[n] for n in plan.under(module)]
        assert all(e.flags == {"vocab-change"} for e in rows), module
    assert all("ambiguous" in plan.entries[n].flags for n in plan.under("encoder"))
    for name, sd in (("a", nemo_rnnt(28)), ("b", nemo_rnnt(128))):
        torch.save({k: torch.from_numpy(v) for k, v in sd.items()}, tmp_path / f"{name}.pt")
    r = ckpt("map", tmp_path / "a.pt", tmp_path / "a.pt", tmp_path / "b.pt")
    line = next(x for x in r.stdout.splitlines()
                if x.startswith("  encoder.layers.{0..3}.norm_out.weight keeps init"))
    assert line.endswith("a.pt#2:encoder.layers.0.norm_out.weight; pick one; the same in each "
                         "layer)")
