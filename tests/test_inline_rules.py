"""`--rules` takes YAML text as well as a rules file or a built-in set name, in ckpt map, ckpt
apply and ckpt-tui (all through `load_rules`): text that starts with `{` or `[`, or spans several
lines, is YAML; its errors name "--rules (inline)"; it is loaded by the bounded loader."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from subproc import ckpt

from inspector.errors import PlanError
from inspector.mapping.rules import is_inline, load_rules
from inspector.tui import build_parser
from inspector.tui.config import AppConfig
from inspector.tui.jobs import open_and_plan

REGEX = r'{rules: [{regex: {pattern: "enc\\.(.*)", to: "encoder.\\1"}, source: enc.pt}]}'


def test_inline_yaml_is_told_apart_from_names_and_paths() -> None:
    for text in ("{rules: []}", "[]", "  [{drop: x}]", "rules:\n  - {drop: x}\n"):
        assert is_inline(text), text
    for spec in ("nemo", "rules.yaml", "sub/dir/my rules.yml", "a{b}.yaml"):
        assert not is_inline(spec), spec


@pytest.mark.parametrize("text", [
    "{rules: [{add_prefix: encoder.}, {drop: 'decoder.*'}]}",
    "[{add_prefix: encoder.}, {drop: 'decoder.*'}]",
    "rules:\n  - add_prefix: encoder.\n  - drop: decoder.*\n",
])
def test_inline_rules_load_as_the_same_file_does(text: str, tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text("rules: [{add_prefix: encoder.}, {drop: 'decoder.*'}]\n")
    assert load_rules(text) == load_rules(path) == load_rules(str(path))


@pytest.mark.parametrize(("text", "problem"), [
    ("{rules: [{add_prefix: encoder.}", "not valid YAML"),
    ("{rules: [{rename: {from: a}}]}", "rules[0].rename: expected a mapping with keys"),
    ("[{frobnicate: x}]", "rules[0]: unknown key 'frobnicate'"),
    ("{rulez: []}", "rules: expected a list of rules"),
])
def test_inline_errors_name_the_option_and_the_problem(text: str, problem: str) -> None:
    with pytest.raises(PlanError) as err:
        load_rules(text)
    assert str(err.value).startswith("--rules (inline): ")
    assert problem in str(err.value)


def test_an_inline_alias_bomb_is_refused_by_the_bounded_loader() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 10)]
    with pytest.raises(PlanError, match=r"--rules \(inline\): not valid YAML: .*alias bomb"):
        load_rules("\n".join(lines) + "\n")


@pytest.fixture
def enc_files(files: tuple[Path, Path], tmp_path: Path) -> tuple[Path, Path]:
    """The encoder alone under other names (`enc.<name>`), and the whole target."""
    sd = torch.load(files[0], weights_only=True)["state_dict"]
    enc = tmp_path / "enc.pt"
    torch.save({"enc." + k[len("encoder."):]: v for k, v in sd.items()
                if k.startswith("encoder.")}, enc)
    return enc, files[1]


def test_ckpt_map_and_apply_take_inline_rules(enc_files: tuple[Path, Path], tmp_path: Path) -> None:
    enc, bpe = enc_files
    r = ckpt("map", enc, bpe, "--rules", REGEX, "--json")
    assert r.returncode == 0, r.stderr
    entry = json.loads(r.stdout)["entries"]["encoder.layers.3.norm_out.bias"]
    assert entry["decision"] == "copy"
    assert [s[:2] for s in entry["sources"]] == [["enc.pt", "enc.layers.3.norm_out.bias"]]
    out = tmp_path / "out.pt"
    a = ckpt("apply", "--source", enc, "--target", bpe, "--rules", REGEX, "--accept-proposed",
             "-o", out)
    assert a.returncode == 0, a.stderr
    written = torch.load(out, weights_only=True)
    source = torch.load(enc, weights_only=True)
    assert torch.equal(written["encoder.layers.3.norm_out.bias"],
                       source["enc.layers.3.norm_out.bias"])
    bad = ckpt("map", enc, bpe, "--rules", "{rules: [{regex: {pattern: '(', to: x}}]}")
    assert bad.returncode == 2
    assert bad.stderr.startswith("ckpt map: error: --rules (inline): rules[0].regex")
    assert "Traceback" not in bad.stderr


def test_the_tui_takes_inline_rules(enc_files: tuple[Path, Path]) -> None:
    enc, bpe = enc_files
    args = build_parser().parse_args([str(enc), str(bpe), "--rules", REGEX])
    loaded = open_and_plan(AppConfig([str(enc)], str(bpe), rules=args.rules))
    assert loaded.plan.entries["encoder.pre_encode.out.weight"].sources == (
        ("enc.pt", "enc.pre_encode.out.weight"),)
    with pytest.raises(PlanError, match=r"^--rules \(inline\): not valid YAML"):
        open_and_plan(AppConfig([str(enc)], str(bpe), rules="{rules: ["))
