"""`ckpt plan show|approve|reject`: patterns as the rules match names, atomic writes in place or
to -o, the plan still valid for `ckpt apply`."""

from __future__ import annotations

from pathlib import Path

import pytest

from inspector.cli import main
from inspector.demo import build_demo
from inspector.mapping import Plan, propose, rules
from inspector.mapping.rules import name_matcher


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("plan")
    files = build_demo(d)
    propose(files.source, files.target, rules.load_rules("nemo")).save(d / "made.yaml")
    return d, d / "made.yaml"


@pytest.fixture
def plan_file(made: tuple[Path, Path], tmp_path: Path) -> Path:
    """A fresh proposed plan beside the demo files (its paths are absolute)."""
    path = made[0] / f"{tmp_path.name}.yaml"
    path.write_bytes(made[1].read_bytes())
    return path


def statuses(path: Path) -> dict[str, str]:
    return {n: e.status for n, e in Plan.load(path).entries.items()}


def test_approve_by_template_prints_folded_rows(plan_file: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "approve", str(plan_file), "encoder.layers.*.conv.pointwise_conv1"]) == 0
    out = capsys.readouterr().out
    assert "approved 8 rows: encoder.layers.{0..3}.conv.pointwise_conv1.weight, " in out
    assert f"plan written to {plan_file}" in out
    approved = {n for n, s in statuses(plan_file).items() if s == "approved"}
    assert approved == {f"encoder.layers.{i}.conv.pointwise_conv1.{w}"
                        for i in range(4) for w in ("weight", "bias")}
    # again: nothing changes, and it says so
    assert main(["plan", "approve", str(plan_file), "encoder.layers.*.conv.pointwise_conv1"]) == 0
    assert "8 selected row(s) were already approved" in capsys.readouterr().out


def test_reject_to_other_file_leaves_the_plan(plan_file: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    before = plan_file.read_bytes()
    other = tmp_path / "other.yaml"
    assert main(["plan", "reject", str(plan_file), "decoder", "-o", str(other)]) == 0
    assert "rejected 5 rows:" in capsys.readouterr().out
    assert plan_file.read_bytes() == before
    rejected = {n for n, s in statuses(other).items() if s == "rejected"}
    assert rejected == {n for n in statuses(plan_file) if n.startswith("decoder.")}


def test_approved_plan_keeps_fingerprints_and_applies(plan_file: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    before = Plan.load(plan_file)
    assert main(["plan", "approve", str(plan_file), "*"]) == 0
    after = Plan.load(plan_file)
    assert [s.fingerprint for s in after.sources] == [s.fingerprint for s in before.sources]
    assert after.target == before.target
    assert {n: (e.decision, e.sources, e.reason) for n, e in after.entries.items()} == {
        n: (e.decision, e.sources, e.reason) for n, e in before.entries.items()}
    assert main(["apply", str(plan_file), "-o", str(tmp_path / "out.nemo")]) == 0
    assert "verified: OK" in capsys.readouterr().out


def test_regex_and_glob_patterns(plan_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "approve", str(plan_file), r"joint\.(enc|pred)\.bias", "--regex"]) == 0
    assert "approved 2 rows: joint.pred.bias, joint.enc.bias" in capsys.readouterr().out
    assert main(["plan", "reject", str(plan_file), "*.lstm.bias_*"]) == 0
    assert "rejected 2 rows: decoder.prediction.dec_rnn.lstm.bias_ih_l0, " in (
        capsys.readouterr().out)


def test_pattern_matching_nothing_is_an_error(plan_file: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    before = plan_file.read_bytes()
    assert main(["plan", "approve", str(plan_file), "encoder", "encodr.*"]) == 2
    err = capsys.readouterr().err
    assert "pattern 'encodr.*' matches no row" in err
    assert main(["plan", "approve", str(plan_file), "enc(", "--regex"]) == 2
    assert "bad regular expression 'enc('" in capsys.readouterr().err
    assert plan_file.read_bytes() == before  # nothing written on an error


def test_plan_is_never_written_over_its_checkpoint(plan_file: Path, made: tuple[Path, Path],
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    target = made[0] / "rnnt_bpe.nemo"
    before = target.stat()
    assert main(["plan", "approve", str(plan_file), "*", "-o", str(target)]) == 2
    assert "refusing to overwrite an input" in capsys.readouterr().err
    assert target.stat().st_mtime_ns == before.st_mtime_ns


def test_show_groups_by_module_and_filters(plan_file: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "show", str(plan_file)]) == 0
    out = capsys.readouterr().out
    assert "181 rows (181 proposed, 0 approved, 0 rejected)" in out
    assert "  proposed copy 160 rows under encoder <- rnnt_char.pt  (same name in" in out
    assert "  proposed keep joint.* (6 rows) [vocab-change]  (vocabulary changed 29 -> 257)" in out
    assert "160 proposed row(s) change the output" in out

    assert main(["plan", "show", str(plan_file), "--problems"]) == 0
    out = capsys.readouterr().out
    assert "showing 8 of 181 rows" in out  # the changed convs, and their biases that follow
    assert "keep encoder.layers.{0..3}.conv.depthwise_conv.weight [shape-mismatch]" in out
    assert "keep encoder.layers.{0..3}.conv.depthwise_conv.bias [shape-mismatch]" in out
    assert "joint" not in out

    main(["plan", "approve", str(plan_file), "encoder"])
    capsys.readouterr()
    assert main(["plan", "show", str(plan_file), "--status", "proposed", "joint.enc"]) == 0
    out = capsys.readouterr().out
    assert "showing 2 of 181 rows" in out
    assert "proposed keep joint.enc.weight, joint.enc.bias [vocab-change]" in out
    assert main(["plan", "show", str(plan_file), "--pending"]) == 0  # proposed keeps change nothing
    out = capsys.readouterr().out
    assert "showing 0 of 181 rows" in out
    assert "every row that changes the output is reviewed" in out
    assert main(["plan", "show", str(plan_file), "--status", "approved", "--all"]) == 0
    assert "encoder.layers.{0..3}.norm_out.bias" in capsys.readouterr().out


@pytest.mark.parametrize(("pattern", "name", "hit"), [
    ("encoder", "encoder.layers.0.w", True),  # template prefix: a subtree
    ("encoder", "encoder_x.w", False),
    ("encoder.layers.*.conv", "encoder.layers.12.conv.w", True),  # `*` a layer index
    ("encoder.layers.*.conv", "encoder.layers.x.conv", True),  # ... or a whole-name glob
    ("encoder.layers.*.conv", "encoder.layers.x.conv.w", False),
    ("encoder.{part}.0", "encoder.blocks.0.w", True),  # `{x}`: one component
    ("*.bias", "a.b.bias", True),
    ("*.bias", "a.b.weight", False),
    ("dec?der.*", "decoder.w", True),
])
def test_name_matcher(pattern: str, name: str, hit: bool) -> None:
    assert name_matcher(pattern)(name) is hit
