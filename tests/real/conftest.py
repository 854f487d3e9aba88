"""Shared fixtures of the real-library tier: checkpoints written by NeMo, transformers and
torch themselves, built once per session under pytest's temporary folder. Every fixture skips
(with the reason) where its library is not installed, so `pytest` in a plain venv stays green."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import nemo_models
from real_helpers import NemoModels

# CI sets INSPECTOR_REAL_TIER=required: there a skip means a library failed to install or import,
# and the tier must fail rather than pass having tested nothing.
REQUIRED = os.environ.get("INSPECTOR_REAL_TIER") == "required"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter is not None else []
    if REQUIRED and skipped:
        print(f"\nINSPECTOR_REAL_TIER=required: {len(skipped)} real-library test(s) skipped:")
        for report in skipped[:10]:
            print(f"  {report.nodeid}: {report.longrepr}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.path).parents:
            item.add_marker(pytest.mark.real)


def _asr() -> Any:
    pytest.importorskip("nemo", reason="the real-library tier needs nemo_toolkit[asr]")
    return pytest.importorskip("nemo.collections.asr.models", reason="needs nemo_toolkit[asr]")


@pytest.fixture(scope="session")
def nemo_models_built(tmp_path_factory: pytest.TempPathFactory) -> NemoModels:
    """RNNT char, RNNT BPE and CTC BPE models, built from config (no download), saved by
    `save_to`. The two BPE models share one tokenizer trained here."""
    models = _asr()
    folder = tmp_path_factory.mktemp("nemo")
    tok = nemo_models.train_tokenizer(folder / "tokenizer", 64)
    built = {
        "char": nemo_models.build(models.EncDecRNNTModel, nemo_models.rnnt_char_config(), 1),
        "bpe": nemo_models.build(models.EncDecRNNTBPEModel, nemo_models.rnnt_bpe_config(tok), 2),
        "ctc": nemo_models.build(models.EncDecCTCModelBPE, nemo_models.ctc_bpe_config(tok), 3),
    }
    paths = {}
    for key, model in built.items():
        paths[f"{key}_path"] = folder / f"{key}.nemo"
        model.save_to(str(paths[f"{key}_path"]))
    return NemoModels(**built, **paths)
