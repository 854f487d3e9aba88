"""One bounded YAML loader for configs, plans, rules and manifests: alias bombs, recursive aliases
and runaway nesting are refused before anything is built, naming the file."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from subproc import ckpt

from inspector import yamlload
from inspector.demo import build_demo
from inspector.errors import CheckpointError, PlanError
from inspector.manifest import load_manifest
from inspector.mapping import Plan, load_rules


def alias_bomb(levels: int = 9, width: int = 9) -> str:
    """`levels` lists, each naming the previous one `width` times: width**levels leaves."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    for i in range(1, levels + 1):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


def test_an_alias_bomb_is_refused_before_it_is_built() -> None:
    text = alias_bomb()
    assert len(text) < 10_000
    with pytest.raises(yamlload.YamlLimitError, match="alias bomb"):
        yamlload.load(text)


def test_aliases_within_the_bound_load_as_safe_load_does() -> None:
    text = alias_bomb(levels=3)
    assert yamlload.load(text) == yaml.safe_load(text)


def test_a_recursive_alias_is_refused() -> None:
    with pytest.raises(yamlload.YamlLimitError, match="recursive"):
        yamlload.load("a: &a [1, *a]\n")


def test_runaway_nesting_is_refused() -> None:
    with pytest.raises(yaml.YAMLError):
        yamlload.load("[" * 100_000 + "]" * 100_000)
    depth = yamlload.MAX_DEPTH + 10
    nested = "".join(f"{'  ' * i}k{i}:\n" for i in range(depth)) + "  " * depth + "v\n"
    with pytest.raises(yamlload.YamlLimitError, match="nested deeper"):
        yamlload.load(nested)


def test_empty_document_is_none() -> None:
    assert yamlload.load("") is None


plain = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20)
    | st.floats(allow_nan=False),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=30,
)


@given(plain)
def test_plain_documents_load_as_safe_load_does(data: object) -> None:
    text = yaml.safe_dump(data)
    assert yamlload.load(text) == yaml.safe_load(text)


# -- every YAML the tool reads goes through it -----------------------------------------------------
def _nemo_with_config(path: Path, config: str, weights: Path) -> Path:
    with tarfile.open(path, "w") as tar:
        for name, data in (("./model_config.yaml", config.encode()),
                           ("./model_weights.ckpt", weights.read_bytes())):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture
def bomb_nemo(tmp_path: Path) -> Path:
    demo = build_demo(tmp_path / "demo")
    weights = tmp_path / "weights.ckpt"
    weights.write_bytes(demo.source.read_bytes())
    return _nemo_with_config(tmp_path / "bomb.nemo", alias_bomb(), weights)


@pytest.mark.parametrize("args", [["ls", "--json"], ["ls", "--config"], ["ls"], ["hash"],
                                  ["scan"]])
def test_a_nemo_with_an_alias_bomb_config_is_refused_quickly(bomb_nemo: Path, args: list[str]
                                                             ) -> None:
    out = ckpt(*args, bomb_nemo, timeout=60)
    if args == ["scan"]:  # scan reads pickles and archives, not the config
        assert "Traceback" not in out.stderr
        return
    assert out.returncode == 2, out.stdout[-500:]
    assert "bomb.nemo" in out.stderr
    assert "model_config.yaml" in out.stderr
    assert "alias bomb" in out.stderr
    assert "Traceback" not in out.stderr


def test_plan_rules_and_manifest_files_use_the_bounded_loader(tmp_path: Path) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(alias_bomb())
    with pytest.raises(PlanError, match=r"bomb\.yaml.*alias bomb"):
        Plan.load(path)
    with pytest.raises(PlanError, match=r"bomb\.yaml.*alias bomb"):
        load_rules(path)
    with pytest.raises(CheckpointError, match=r"bomb\.yaml.*alias bomb"):
        load_manifest(path)
