"""Executable docs: every Python and console block of README.md and docs/*.md runs, in order, in a
folder holding the files the docs name (tests/docs_workspace.py), so a documented call that
breaks fails here.

- ```python blocks run in a fresh interpreter (with `model`, `cfg` and `build_model` bound, see
  docs_workspace.PYTHON_PRELUDE) and must exit 0;
- ```console blocks: each `$ ` line runs in bash; the lines after it are its expected output;
- ```bash blocks and untagged blocks whose first line starts with `ckpt`: each line runs in bash
  (`# ...` comments are bash's) and must exit 0 (`ckpt diff|check|scan` may exit 1: a finding),
  never with a traceback;
- a block right after `<!-- not run: REASON -->` is skipped, and the reason is required.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from docs_workspace import PYTHON_PRELUDE, build_workspace
from subproc import child_env

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)\s*$")
NOT_RUN = re.compile(r"^<!-- not run: (.+?) -->$")
SHELL_START = ("ckpt", "ckpt-tui")


@dataclass
class Block:
    doc: Path
    line: int  # 1-based line of the opening fence
    kind: str  # python | console | shell
    text: str
    not_run: str | None

    @property
    def where(self) -> str:
        return f"{self.doc.relative_to(REPO)}:{self.line}"


def blocks(doc: Path) -> list[Block]:
    out: list[Block] = []
    lines = doc.read_text().splitlines()
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
        body = "\n".join(lines[i + 1:end])
        kind = _kind(m.group(1), body)
        if kind:
            prev = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
            skip = NOT_RUN.match(prev.strip())
            out.append(Block(doc, i + 1, kind, body, skip.group(1) if skip else None))
        i = end + 1
    return out


def _kind(info: str, body: str) -> str | None:
    if info == "python":
        return "python"
    if info == "console":
        return "console"
    if info in ("bash", "sh"):
        return "shell"
    first = body.lstrip().split(maxsplit=1)[0] if body.strip() else ""
    return "shell" if info == "" and first in SHELL_START else None


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """`ckpt` on PATH, running the package the tests import; `ckpt-tui` loads the review headless
    and closes (tests/docs_tui.py)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    here = Path(__file__).resolve().parent
    for script, run in (("ckpt", "-m inspector.cli"), ("ckpt-tui", f'"{here / "docs_tui.py"}"')):
        path = bin_dir / script
        path.write_text(f'#!/bin/sh\nexec "{sys.executable}" {run} "$@"\n')
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    work = tmp_path / "work"
    work.mkdir()
    e = child_env()
    e["PATH"] = f"{bin_dir}{os.pathsep}{e['PATH']}"
    e["PYTHONPATH"] = os.pathsep.join((str(work), e["PYTHONPATH"], str(here)))
    e["NO_COLOR"] = "1"
    e["COLUMNS"] = "120"
    return e


def _bash(command: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-c", command], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def _run_shell(block: Block, cwd: Path, env: dict[str, str]) -> None:
    for n, line in enumerate(block.text.splitlines()):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        out = _bash(line, cwd, env)
        where = f"{block.where}+{n + 1}: {line.strip()}"
        allowed = (0, 1) if _finds(line) else (0,)
        assert out.returncode in allowed, f"{where}\nexit {out.returncode}\n{out.stderr}"
        assert "Traceback" not in out.stderr, f"{where}\n{out.stderr}"


def _finds(line: str) -> bool:
    """A gate or a diff, whose exit 1 is a finding (differences, violations), not a failure."""
    words = line.split()
    return len(words) > 1 and words[0] == "ckpt" and words[1] in ("diff", "check", "scan")


def _run_console(block: Block, cwd: Path, env: dict[str, str]) -> None:
    command, expected = None, []
    steps: list[tuple[str, list[str]]] = []
    for line in block.text.splitlines():
        if line.startswith("$ "):
            if command is not None:
                steps.append((command, expected))
            command, expected = line[2:], []
        elif command is not None:
            expected.append(line.rstrip())
    if command is not None:
        steps.append((command, expected))
    for command, want in steps:
        out = _bash(command, cwd, env)
        assert out.returncode == 0, f"{block.where}: {command}\n{out.stderr}"
        got = [line.rstrip() for line in out.stdout.rstrip("\n").splitlines()]
        assert got == want, f"{block.where}: {command}\n" + "\n".join(got)


def _run_python(block: Block, cwd: Path, env: dict[str, str]) -> None:
    script = cwd / f"block_{block.line}.py"
    script.write_text(PYTHON_PRELUDE + block.text + "\n")
    out = subprocess.run([sys.executable, str(script)], cwd=cwd, env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, f"{block.where}\n{out.stderr}"


RUNNERS = {"python": _run_python, "console": _run_console, "shell": _run_shell}


@pytest.mark.slow
@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_doc_examples_run(doc: Path, tmp_path: Path, env: dict[str, str]) -> None:
    todo = [b for b in blocks(doc) if b.not_run is None]
    if not todo:
        pytest.skip(f"{doc.name} has no runnable block")
    work = build_workspace(Path(env["PYTHONPATH"].split(os.pathsep)[0]))
    for block in todo:
        RUNNERS[block.kind](block, work, env)


def test_every_block_that_is_not_run_says_why() -> None:
    found = [b for doc in DOCS for b in blocks(doc)]
    assert sum(b.not_run is None for b in found) >= 10, "the docs' examples are no longer found"
    for b in found:
        assert b.not_run is None or len(b.not_run) > 10, f"{b.where}: say why it is not run"
