"""The `(prefix, source)` pair and its command-line form PREFIX=PATH: one parser
(inspector.mapping.prefixed) for ckpt map, ckpt-tui, propose and plans."""

from __future__ import annotations

from pathlib import Path

import pytest

from inspector.mapping.prefixed import is_prefixed, parse_source, split_source, with_prefix
from inspector.tui import build_parser, resolve


def test_prefix_and_path_are_split_at_the_first_equals_sign(tmp_path: Path) -> None:
    assert parse_source("encoder.=enc.pt") == ("encoder.", "enc.pt")
    assert parse_source("a=b=c.pt") == ("a", "b=c.pt")
    assert parse_source("enc.pt") == ("", "enc.pt")
    assert parse_source("=enc.pt") == ("", "=enc.pt")  # an empty prefix is no prefix


def test_a_file_whose_name_has_an_equals_sign_stays_a_path(tmp_path: Path) -> None:
    odd = tmp_path / "lr=0.1.pt"
    odd.write_bytes(b"")
    assert parse_source(str(odd)) == ("", str(odd))
    assert parse_source(f"{odd}::model") == ("", f"{odd}::model")  # with a root after it


def test_pairs_and_plain_sources() -> None:
    assert split_source(("dec.", "d.pt")) == ("dec.", "d.pt")
    assert split_source("d.pt") == ("", "d.pt")
    assert split_source(("d.pt", "e.pt", "f.pt")) == ("", ("d.pt", "e.pt", "f.pt"))
    assert not is_prefixed((1, "d.pt"))
    assert with_prefix("", "d.pt") == "d.pt"
    assert with_prefix("dec.", "d.pt") == ("dec.", "d.pt")


@pytest.mark.parametrize(
    ("arg", "source"), [("x.=a.pt", ("x.", "a.pt")), ("=a.pt", "=a.pt"), ("a.pt", "a.pt")]
)
def test_the_tui_reads_sources_with_the_same_parser(arg: str, source: object) -> None:
    sources, _, _ = resolve(build_parser().parse_args([arg, "t.pt"]))
    assert sources == [source]
