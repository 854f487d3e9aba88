"""Child processes that import the same `inspector` the tests import.

In CI that is the installed wheel (with its compiled `_core`); in development the source tree
(PYTHONPATH=.). A child must never pick up the repository's folder by accident: `python -c` and
`python -m` put their working folder first on sys.path, so children run from a neutral folder
unless a test says otherwise, with PYTHONPATH pointing at the imported package's parent.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import inspector

PACKAGE_PARENT = str(Path(inspector.__file__).resolve().parents[1])
# What a child that tests Ctrl-C runs first: one started from a test runner that a
# non-interactive shell put in the background inherits SIGINT ignored, and Python then installs
# no KeyboardInterrupt handler, so the Ctrl-C under test would never arrive.
CTRL_C_RAISES = "import signal; signal.signal(signal.SIGINT, signal.default_int_handler)\n"


def child_env(base: dict[str, str] | None = None, **extra: str) -> dict[str, str]:
    """`base` (default: this process's environment) with PYTHONPATH set to find `inspector`."""
    env = dict(os.environ if base is None else base)
    rest = env.get("PYTHONPATH")
    env["PYTHONPATH"] = PACKAGE_PARENT + (os.pathsep + rest if rest else "")
    env.update(extra)
    return env


def python(
    *args: str | os.PathLike[str],
    cwd: str | os.PathLike[str] | None = None,
    env: dict[str, str] | None = None,
    **kwargs: Any,
) -> subprocess.CompletedProcess[str]:
    """`python ARGS...` in a child, output captured as text."""
    kwargs.setdefault("capture_output", True)
    kwargs.setdefault("text", True)
    return subprocess.run(
        [sys.executable, *map(str, args)],
        cwd=cwd if cwd is not None else tempfile.gettempdir(),
        env=env if env is not None else child_env(),
        **kwargs,
    )


def popen(*args: str, **kwargs: Any) -> subprocess.Popen[str]:
    kwargs.setdefault("text", True)
    kwargs.setdefault("cwd", tempfile.gettempdir())
    kwargs.setdefault("env", child_env())
    return subprocess.Popen([sys.executable, *args], **kwargs)


def ckpt(*args: str | os.PathLike[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """The `ckpt` command line, as `python -m inspector.cli ARGS...`."""
    return python("-m", "inspector.cli", *args, **kwargs)
