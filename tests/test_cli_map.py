"""`ckpt map` on real torch files."""

from __future__ import annotations

import json

import numpy as np
import pytest
from mapping_fixtures import nemo_rnnt

from inspector.cli import main
from inspector.mapping import Plan


@pytest.fixture
def files(tmp_path):  # type: ignore[no-untyped-def]
    torch = pytest.importorskip("torch")
    for name, sd in (("char.pt", nemo_rnnt(28)), ("bpe.pt", nemo_rnnt(1024))):
        torch.save(
            {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in sd.items()}, tmp_path / name
        )
    return tmp_path


def test_map_prints_by_module_and_writes_the_plan(files, capsys) -> None:  # type: ignore[no-untyped-def]
    out = files / "plan.yaml"
    assert main(["map", str(files / "char.pt"), str(files / "bpe.pt"), "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "encoder 100% (4/4 layers)  [166 copy, 0 keep, 0 drop]" in text
    assert (
        "decoder.prediction.embed.weight keeps init [vocab-change]  (vocabulary changed 29 -> 1025)"
        in text
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
