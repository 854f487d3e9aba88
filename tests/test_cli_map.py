"""`ckpt map` on real torch files."""

from __future__ import annotations

import json

import numpy as np
import pytest
from mapping_fixtures import nemo_rnnt
from subproc import ckpt

from inspector.cli import main
from inspector.mapping import Plan


@pytest.fixture
def files(tmp_path):  # type: ignore[no-untyped-def]
    import torch
    for name, sd in (("char.pt", nemo_rnnt(28)), ("bpe.pt", nemo_rnnt(1024))):
        torch.save(
            {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in sd.items()}, tmp_path / name
        )
    return tmp_path


def test_map_prints_by_module_and_writes_the_plan(files, capsys) -> None:  # type: ignore[no-untyped-def]
    out = files / "plan.yaml"
    assert main(["map", str(files / "char.pt"), str(files / "bpe.pt"), "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "encoder 100% (4/4 layers complete)  [166 copy, 0 keep, 0 drop]" in text
    assert (
        "  decoder.* (5 tensors) keeps init [vocab-change]  (vocabulary changed 29 -> 1025)" in text
    )
    assert "note: decoder, joint: vocabulary changed 29 -> 1025 (kept at target init)" in text
    plan = Plan.load(out)
    assert plan.sources[0].path == str(files / "char.pt")
    assert plan.entries["joint.enc.weight"].flags == {"vocab-change"}


def test_map_json(files, capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["map", str(files / "char.pt"), str(files / "bpe.pt"), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["summary"]["encoder"]["percent"] == 100.0
    assert data["entries"]["decoder.prediction.embed.weight"]["decision"] == "keep"


def test_map_prefix_sources_and_errors(files, capsys) -> None:  # type: ignore[no-untyped-def]
    code = main(["map", f"x.={files / 'char.pt'}", str(files / "bpe.pt"), "--rules", "no-such-set"])
    assert code == 2
    assert "no such rules file or built-in rule set" in capsys.readouterr().err
    assert main(["map", str(files / "missing.pt"), str(files / "bpe.pt")]) == 2


def _save(path, sd) -> None:  # type: ignore[no-untyped-def]
    import torch
    torch.save({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in sd.items()}, path)


def test_map_folds_mismatch_rows_over_layers_with_both_shapes(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    _save(tmp_path / "a.pt", nemo_rnnt(28, kernel=31))
    _save(tmp_path / "b.pt", nemo_rnnt(28, kernel=9))
    assert main(["map", str(tmp_path / "a.pt"), str(tmp_path / "b.pt")]) == 0
    lines = capsys.readouterr().out.splitlines()
    encoder = next(i for i, line in enumerate(lines) if line.startswith("encoder "))
    # percentages of parameters are never rounded up to 100%; layers count complete layers
    assert lines[encoder].startswith("encoder 98.7% (158/166 tensors, 0/4 layers complete)  [")
    assert lines[encoder + 1] == (
        "  encoder.layers.{0..3}.conv.depthwise_conv.weight keeps init [shape-mismatch]  "
        "(a.pt:encoder.layers.{0..3}.conv.depthwise_conv.weight has shape [32, 1, 31], "
        "target [32, 1, 9])"
    )
    assert lines[encoder + 2] == (  # the conv's bias follows its weight
        "  encoder.layers.{0..3}.conv.depthwise_conv.bias keeps init [shape-mismatch]  "
        "(follows its weight, which keeps its init)"
    )
    assert lines[encoder + 3].startswith("decoder 100%")
    assert "unused source tensors (8):" in lines
    assert (
        "note: encoder.layers: conv kernel 31 -> 9 in encoder.layers.{0..3}.conv.depthwise_conv: "
        "set conv_kernel_size=31 in the target config to transfer it"
    ) in lines


def test_map_folds_a_layer_without_source_to_one_line(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    _save(tmp_path / "a.pt", nemo_rnnt(28, n_layers=2))
    _save(tmp_path / "b.pt", nemo_rnnt(28, n_layers=3))
    assert main(["map", str(tmp_path / "a.pt"), str(tmp_path / "b.pt")]) == 0
    out = capsys.readouterr().out
    assert "encoder 67.3% (86/126 tensors, 2/3 layers complete)" in out
    assert (
        "  encoder.layers.2.* (40 tensors) keeps init [no-source]  "
        "(no source tensor fits: keeps its own init)\n"
    ) in out


def test_map_prints_modules_that_differ_only_in_indices_as_one_section(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    """A model whose top level is its layer stack (`model.layers.N`: one module per layer)
    prints one folded section, not one per layer (100k renamed MoE rows: 5 lines, not 16k)."""
    w = np.zeros((2, 2), np.float32)
    names = [f"layers.{i}.experts.{j}.w" for i in range(6) for j in range(2)]
    _save(tmp_path / "a.pt", {n: w for n in names})
    _save(tmp_path / "b.pt", {f"model.{n}": w for n in names})
    assert main(["map", str(tmp_path / "a.pt"), str(tmp_path / "b.pt")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "model.layers.{0..5} 100%  [12 copy, 0 keep, 0 drop]", out
    assert len(out) == 2, out
    assert out[1].startswith("  model.layers.{0..5}.experts.0.w, model.layers.{0..5}.experts.1.w"
                             " <- a.pt:layers.{0..5}.experts.0.w, layers.{0..5}.experts.1.w"), out
    assert out[1].endswith("(prefix 'model.' put before (as 12 of the 12 names it was left"
                           " with))"), out


def test_map_folds_similarity_rows_across_layers(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    """Rows ranked by similarity quote the suffix they share, which begins with the layer index
    (`suffix '3.experts.1.w'`): they fold across layers all the same (100k rows renamed
    `layers` -> `model.blocks`: 4 lines, not 12,502), as in `ckpt plan show`. (The renamed
    prefixes are seven components long: a shorter one is found as a prefix replaced.)"""
    w = np.zeros((2, 2), np.float32)
    old = "enc.net.body.tower.core.main.layers."
    names = [f"{old}{i}.experts.{j}.w" for i in range(6) for j in range(2)]
    _save(tmp_path / "a.pt", {n: w for n in names})
    _save(tmp_path / "b.pt", {"model.enc.trunk.stack.inner." + n.replace(old, "blocks."): w
                              for n in names})
    assert main(["map", str(tmp_path / "a.pt"), str(tmp_path / "b.pt"), "-o",
                 str(tmp_path / "plan.yaml")]) == 0
    out = capsys.readouterr().out.splitlines()
    blocks = "model.enc.trunk.stack.inner.blocks.{0..5}"
    assert out[0] == f"{blocks} 100%  [12 copy, 0 keep, 0 drop]", out
    assert out[1].startswith(f"  {blocks}.experts.0.w, {blocks}.experts.1.w <- a.pt:"
                             f"{old}{{0..5}}.experts.0.w, {old}{{0..5}}.experts.1.w"
                             " [heuristic]"), out
    assert out[1].endswith("; the same in each layer)"), out
    assert len(out) == 3, out  # and the line naming the plan file
    assert main(["plan", "show", str(tmp_path / "plan.yaml")]) == 0
    shown = capsys.readouterr().out
    assert f"{blocks}.experts.0.w, {blocks}.experts.1.w" in shown, shown
    assert len(shown.splitlines()) < 8, shown


def test_map_report_is_the_same_whatever_rows_are_blanked_at_once(  # type: ignore[no-untyped-def]
    tmp_path, capsys, monkeypatch
) -> None:
    """The report blanks its rows' names and reasons a chunk at a time (`_BLANKED_AT_ONCE`):
    rows of one run split across chunks, ranked, renamed and kept at init, print as one pass
    prints them."""
    from inspector.cli import map as map_cli

    w, v = np.zeros((2, 2), np.float32), np.zeros((3,), np.float32)
    names = [f"enc.net.body.layers.{i}.experts.{j}.w" for i in range(7) for j in range(3)]
    _save(tmp_path / "a.pt", {**{n: w for n in names}, "head.w": w})
    _save(tmp_path / "b.pt", {**{"model.enc.trunk." + n.replace("enc.net.body.layers.", "blocks.")
                                 : w for n in names}, "head.w": v, "extra.layers.0.b": v})
    args = ["map", str(tmp_path / "a.pt"), str(tmp_path / "b.pt"), "--all"]
    assert main(args) == 0
    whole = capsys.readouterr().out
    for chunk in (1, 2, 5):
        monkeypatch.setattr(map_cli, "_BLANKED_AT_ONCE", chunk)
        assert main(args) == 0
        assert capsys.readouterr().out == whole
    assert len(whole.splitlines()) < 10, whole


def test_map_names_a_prefix_replaced(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    """`layers.` renamed `model.blocks.` (a prefix replaced): every row says so, none is ranked
    by similarity, and the report folds them as it folds rule rows."""
    w = np.zeros((2, 2), np.float32)
    names = [f"layers.{i}.experts.{j}.w" for i in range(6) for j in range(2)]
    _save(tmp_path / "a.pt", {n: w for n in names})
    _save(tmp_path / "b.pt", {"model." + n.replace("layers.", "blocks."): w for n in names})
    assert main(["map", str(tmp_path / "a.pt"), str(tmp_path / "b.pt"), "-o",
                 str(tmp_path / "plan.yaml")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "model.blocks.{0..5} 100%  [12 copy, 0 keep, 0 drop]", out
    assert "heuristic" not in out[1], out
    assert "(prefix 'layers.' replaced by 'model.blocks.' (as 12 of the 12 names" in out[1], out
    assert len(out) == 3, out


def test_reason_keys_blank_a_quoted_names_leading_index() -> None:
    from inspector.cli.rowruns import reason_keys

    reasons = ["similar to a:layers.3.w (suffix '3.experts.1.w', tokens 0.57)",
               "similar to a:layers.4.w (suffix '4.experts.2.w', tokens 0.57)"]
    assert reason_keys(reasons) == [
        "similar to a:layers.{}.w (suffix '{}.experts.{}.w', tokens 0.57)"] * 2
    assert reason_keys(["line\n'7.x'", "'12.y' and more"]) == ["line\n'{}.x'", "'{}.y' and more"]
    assert reason_keys([]) == []


@pytest.mark.parametrize("which", ["source", "target", "symlink-to-source", "rules"])
def test_map_output_over_an_input_is_refused(files, tmp_path, which) -> None:  # type: ignore[no-untyped-def]
    """Through the real CLI: `-o` naming an input exits 2 naming it; the input is unchanged."""

    rules = tmp_path / "rules.yaml"
    rules.write_text("rules: []\n")
    (tmp_path / "link.pt").symlink_to(files / "char.pt")
    out = {"source": files / "char.pt", "target": files / "bpe.pt",
           "symlink-to-source": tmp_path / "link.pt", "rules": rules}[which]
    guarded = {"symlink-to-source": files / "char.pt"}.get(which, out)
    before = guarded.read_bytes()
    r = ckpt("map", files / "char.pt", files / "bpe.pt", "--rules", rules, "-o", out,
             timeout=120, check=False)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert str(out) in r.stderr
    assert "refusing to overwrite an input" in r.stderr
    assert guarded.read_bytes() == before
    assert not [p for p in files.iterdir() if p.name.startswith(".")]  # no temp left
