"""ckpt-tui's command line: sources, target, output defaults, refusing to write over an input."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from inspector.tui import build_parser, resolve
from inspector.tui.app import create_app
from inspector.tui.config import default_output, display_name


def parse(*argv: str):  # type: ignore[no-untyped-def]
    return resolve(build_parser().parse_args(list(argv)))


@pytest.fixture
def pair(tmp_path: Path) -> tuple[str, str]:
    torch.save({"w": torch.zeros(2)}, tmp_path / "a.pt")
    torch.save({"w": torch.ones(2)}, tmp_path / "b.nemo")
    return str(tmp_path / "a.pt"), str(tmp_path / "b.nemo")


def test_sources_then_target(pair: tuple[str, str]) -> None:
    sources, target, output = parse(*pair)
    assert sources == [pair[0]]
    assert target == pair[1]
    assert output is None


def test_several_sources_with_target_option_and_prefixes(pair: tuple[str, str]) -> None:
    sources, target, _ = parse(f"encoder.={pair[0]}", pair[0], "--target", pair[1])
    assert sources == [("encoder.", pair[0]), pair[0]]
    assert target == pair[1]


def test_output_over_an_input_is_refused(pair: tuple[str, str]) -> None:
    with pytest.raises(SystemExit, match="refusing to overwrite an input"):
        parse(*pair, "-o", pair[0])
    with pytest.raises(SystemExit, match="refusing to overwrite an input"):
        parse(*pair, "-o", pair[1])


def test_missing_target_is_a_usage_error() -> None:
    with pytest.raises(SystemExit, match=r"SOURCE\.\.\. TARGET"):
        parse("only.pt")


def test_default_output_is_next_to_the_target_never_over_it(tmp_path: Path) -> None:
    assert default_output(str(tmp_path / "bpe.nemo")) == tmp_path / "bpe.migrated.nemo"
    st = tmp_path / "model.safetensors"
    assert default_output(str(st)) == tmp_path / "model.migrated.safetensors"
    assert default_output({"in": "memory"}) is None


def test_factory_keeps_paths_and_shows_names(pair: tuple[str, str], tmp_path: Path) -> None:
    app = create_app(pair[0], pair[1], plan_path=tmp_path / "p.yaml")
    assert app.config.sources == [pair[0]]
    assert app.config.output == tmp_path / "b.migrated.nemo"
    assert display_name(("enc.", pair[0])) == "enc.=a.pt"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.pt", "b.nemo"]  # nothing written
