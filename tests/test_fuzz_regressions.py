"""Replay every fuzz seed and every fuzz finding through its harness, in plain Python (no
atheris): a regression the fuzzers once found fails here, in the main suite."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

import pytest

FUZZ = Path(__file__).resolve().parent / "fuzz"
HARNESSES = sorted(p.stem.removeprefix("fuzz_") for p in FUZZ.glob("fuzz_*.py"))

# Findings not fixed yet (in another helper's area): "harness/file" -> why. Strict: a fix turns
# the xfail into a failure, and the entry must then go.
KNOWN: dict[str, str] = {}


def harness(name: str) -> ModuleType:
    if str(FUZZ) not in sys.path:
        sys.path.insert(0, str(FUZZ))
    return importlib.import_module(f"fuzz_{name}")


def cases(kind: str) -> list[pytest.param]:
    out = []
    for name in HARNESSES:
        for f in sorted((FUZZ / kind / name).glob("*")):
            key = f"{name}/{f.name}"
            marks = [pytest.mark.xfail(strict=True, reason=KNOWN[key])] if key in KNOWN else []
            out.append(pytest.param(name, f, id=key, marks=marks))
    return out


def test_every_harness_has_seeds():
    assert len(HARNESSES) == 14
    for name in HARNESSES:
        assert any((FUZZ / "corpus" / name).iterdir()), name


@pytest.mark.parametrize(("name", "file"), cases("corpus"))
def test_corpus_input_passes(name, file):
    harness(name).TestOneInput(file.read_bytes())


@pytest.mark.parametrize(("name", "file"), cases("corpus"))
def test_corpus_file_is_valid(name, file):
    """Seeds are valid files: the harness's target accepts them without any error (so the
    fuzzer starts from inputs that reach deep, not from the first magic check)."""
    import common

    if name.startswith("open_"):
        opens = harness(name).TestOneInput.opens
        common.open_and_list(common.opened_path(file.read_bytes(), *opens))


@pytest.mark.parametrize(("name", "file"), cases("regressions"))
def test_regression_input_passes(name, file):
    harness(name).TestOneInput(file.read_bytes())
