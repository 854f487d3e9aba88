"""Scripted apply never decides an ambiguous row in silence: `--accept-proposed` (and
`apply(accept_proposed=True)`, the TUI's "accept pending") refuses rows whose sources fit
equally well, naming them folded, unless `--skip-ambiguous` says to write them at init; and
`ckpt apply --source PREFIX=FILE` reads sources as `ckpt map` does."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from subproc import ckpt

import inspector
from inspector.applying import apply
from inspector.errors import AmbiguousRowsError, PartialTransferError, PendingRowsError
from inspector.mapping.propose import propose

SAMPLE = "encoder.layers.{0..3}.feed_forward1.linear1.weight"  # folded, as the error lists rows


@pytest.fixture
def twins(files: tuple[Path, Path], tmp_path: Path) -> tuple[Path, Path, Path]:
    """Two sources holding the same model (every row they both fit is ambiguous), a target."""
    char, bpe = files
    twin = tmp_path / "twin.pt"
    shutil.copy(char, twin)
    return char, twin, bpe


def _args(twins: tuple[Path, Path, Path], out: Path, *more: str) -> list[str]:
    a, b, t = twins
    return ["apply", "--source", str(a), "--source", str(b), "--target", str(t),
            "--accept-proposed", "-o", str(out), *more]


def test_accept_proposed_refuses_ambiguous_rows_naming_them_folded(twins, tmp_path: Path) -> None:
    out = tmp_path / "out.pt"
    for extra in ((), ("--strict",)):
        r = ckpt(*_args(twins, out, *extra))
        assert r.returncode == 1, r.stderr
        assert "ambiguous row(s)" in r.stderr
        assert SAMPLE in r.stderr
        assert "encoder.layers.0.feed_forward1" not in r.stderr  # folded, not one per layer
        assert "--skip-ambiguous" in r.stderr
        assert "Nothing was written" in r.stderr
        assert "Traceback" not in r.stderr
        assert not out.exists()


def test_skip_ambiguous_writes_them_at_init_and_says_how_many(twins, tmp_path: Path) -> None:
    out = tmp_path / "out.pt"
    r = ckpt(*_args(twins, out, "--skip-ambiguous"))
    assert r.returncode == 0, r.stderr
    ambiguous = propose([str(twins[0]), str(twins[1])], str(twins[2])).ambiguous()
    assert len(ambiguous) > 100
    assert f"skipped ambiguous: {len(ambiguous)} row(s)" in r.stdout
    assert "keep the target's init (--skip-ambiguous)" in r.stdout
    written = torch.load(out, weights_only=True)
    target = torch.load(twins[2], weights_only=True)
    assert all(torch.equal(written[n], target[n]) for n in ambiguous)
    # declared by the user: --strict accepts them (here every other row copies or is declared)
    js = ckpt(*_args(twins, tmp_path / "strict.pt", "--skip-ambiguous", "--strict", "--json"))
    assert js.returncode == 0, js.stderr
    report = json.loads(js.stdout)
    assert report["ambiguous_skipped"]["count"] == len(ambiguous)
    assert SAMPLE in report["ambiguous_skipped"]["names"]
    assert report["partial"]["count"] == 0


def test_python_api_refuses_every_time_and_skips_when_told(twins, tmp_path: Path) -> None:
    plan = propose([str(twins[0]), str(twins[1])], str(twins[2]))
    rows = plan.ambiguous()
    out = tmp_path / "out.pt"
    for _ in range(2):  # the refusal leaves the plan as it was: a second call says the same
        with pytest.raises(AmbiguousRowsError, match=r"ambiguous row\(s\)") as err:
            inspector.apply(plan, out, accept_proposed=True)
        assert isinstance(err.value, PendingRowsError)  # exit 1 in the CLI, by its class
        assert SAMPLE in str(err.value)
        assert not out.exists()
        assert plan.ambiguous() == rows
    for _ in range(2):
        report = inspector.apply(plan, out, accept_proposed=True, skip_ambiguous=True)
        assert report.ambiguous_skipped == rows
        assert report.partial == []
        assert f"skipped ambiguous: {len(rows)} row(s)" in report.to_text()
        assert report.verification is not None
        assert report.verification.ok


def test_strict_with_skip_still_refuses_other_partials(twins, tmp_path: Path) -> None:
    """--skip-ambiguous declares only the ambiguous rows: a row with no source stays a partial."""
    a, b, bpe = twins
    target = tmp_path / "bigger.pt"
    torch.save({**torch.load(bpe, weights_only=True), "extra.weight": torch.zeros(3)}, target)
    plan = propose([str(a), str(b)], str(target))
    assert plan.ambiguous()
    assert set(plan.partials()) - set(plan.ambiguous()) == {"extra.weight"}
    with pytest.raises(PartialTransferError, match=r"extra\.weight") as err:
        apply(plan, tmp_path / "o.pt", accept_proposed=True, skip_ambiguous=True, strict=True)
    assert "1 target tensor(s)" in str(err.value)


def test_rows_the_user_decided_are_not_ambiguous_any_more(twins, tmp_path: Path) -> None:
    plan = propose([str(twins[0]), str(twins[1])], str(twins[2]))
    rows = plan.ambiguous()
    unreviewed = tmp_path / "unreviewed.plan.yaml"
    plan.save(unreviewed)
    refused = ckpt("apply", unreviewed, "--accept-proposed", "-o", tmp_path / "x.pt")
    assert refused.returncode == 1
    assert f"{len(rows)} ambiguous row(s)" in refused.stderr
    picked = "encoder.layers.2.feed_forward1.linear1.weight"
    label = plan.sources[1].label
    plan.set_source(picked, label, picked)
    plan.reject([n for n in rows if n != picked])
    assert plan.ambiguous() == []
    saved = tmp_path / "reviewed.plan.yaml"
    plan.save(saved)
    out = tmp_path / "out.pt"
    r = ckpt("apply", saved, "--accept-proposed", "-o", out)
    assert r.returncode == 0, r.stderr
    assert "skipped ambiguous" not in r.stdout
    written = torch.load(out, weights_only=True)
    source = torch.load(twins[1], weights_only=True)["state_dict"]
    assert torch.equal(written[picked], source[picked])


def test_apply_reads_prefixed_sources_as_ckpt_map_does(files, tmp_path: Path) -> None:
    """`encoder.=enc.pt` beside the whole model: both give the encoder (ambiguous, refused);
    a rule restricted to one source by its label settles it; the encoder then comes from enc.pt
    and the rest from the whole model."""
    char, bpe = files
    sd = torch.load(char, weights_only=True)["state_dict"]
    enc_sd = {k[len("encoder."):]: v + 1 for k, v in sd.items() if k.startswith("encoder.")}
    enc = tmp_path / "enc.pt"
    torch.save(enc_sd, enc)
    out = tmp_path / "out.pt"
    base = ["apply", "--source", f"encoder.={enc}", "--source", str(char), "--target", str(bpe),
            "--accept-proposed", "-o", str(out)]
    refused = ckpt(*base)
    assert refused.returncode == 1, refused.stderr
    assert "ambiguous row(s)" in refused.stderr
    rule = "{rules: [{drop: 'encoder.*', source: char.pt}]}"
    r = ckpt(*base, "--rules", rule)
    assert r.returncode == 0, r.stderr
    written = torch.load(out, weights_only=True)
    name = "encoder.layers.1.feed_forward1.linear1.weight"
    assert torch.equal(written[name], enc_sd[name[len("encoder."):]])
    assert torch.equal(written["preprocessor.featurizer.fb"], sd["preprocessor.featurizer.fb"])
    assert "encoder.pre_encode.out.weight <- enc.pt:pre_encode.out.weight" in r.stdout


def test_tui_write_confirmation_counts_ambiguous_rows(twins, tmp_path: Path) -> None:
    from inspector.tui import jobs
    from inspector.tui.screens.write import summary_text, write_summary
    from inspector.tui.state import ReviewState

    plan = propose([str(twins[0]), str(twins[1])], str(twins[2]))
    ctx = plan._context
    assert ctx is not None
    state = ReviewState(plan, dict(ctx.by_label), ctx.target)  # type: ignore[attr-defined]
    s = write_summary(state, tmp_path / "out.pt")
    assert s.ambiguous == len(plan.ambiguous()) > 0
    assert f"{s.ambiguous} ambiguous row(s)" in summary_text(s, False).plain
    assert "keep the target's init: skipped" in summary_text(s, True).plain
    # accepting the pending rows there skips them, as the confirmation said; the report says so
    done = jobs.write(plan, tmp_path / "out.pt", True, lambda a, b: None)
    assert done.verified
    assert f"skipped ambiguous: {s.ambiguous} row(s)" in done.report
