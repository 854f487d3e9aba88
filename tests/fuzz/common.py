"""Shared pieces of the fuzz harnesses (tests/fuzz/fuzz_*.py).

A harness's `TestOneInput(data)` feeds `data` to one entry point. The project's own error
classes (`CheckpointError`, `PlanError`: YAML errors surface as `PlanError` or
`CheckpointError`) are the expected answer to bad input and are swallowed; anything else (a
foreign exception, a crash, a hang) propagates and is a finding. The harnesses run under atheris
(`run.sh`) and as plain Python (`tests/test_fuzz_regressions.py` replays every corpus and
regression file through them).
"""

from __future__ import annotations

import atexit
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

HERE = Path(__file__).resolve().parent
MAX_LEN = 1 << 16  # inputs past 64 KiB add run time, not coverage

_scratch: Path | None = None


def scratch() -> Path:
    """One temporary folder per process, removed at exit."""
    global _scratch
    if _scratch is None:
        _scratch = Path(tempfile.mkdtemp(prefix="ckpt-fuzz-"))
        atexit.register(shutil.rmtree, _scratch, True)
    return _scratch


@contextmanager
def instrumented() -> Iterator[None]:
    """Under atheris: import `inspector` (every reader, scan, mapping) with coverage
    instrumentation, so that the first import of each module happens here. Without atheris
    (the pytest replay): plain imports. The C++ core is not instrumented, only exercised."""
    try:
        import atheris
    except ImportError:
        yield
        return
    with atheris.instrument_imports(include=["inspector"]):
        _import_all()
        yield


def _import_all() -> None:
    import inspector
    import inspector.formats
    import inspector.manifest
    import inspector.mapping.plan
    import inspector.mapping.rules
    import inspector.scanning

    inspector.formats.reader_modules()


@contextmanager
def expected() -> Iterator[None]:
    """Bad input must end in one of the project's error classes (YAML errors surface as them
    too); those are not findings. Anything else propagates."""
    from inspector.errors import CheckpointError, PlanError

    with suppress(CheckpointError, PlanError):
        yield


def written(data: bytes, name: str, siblings: str | None = None) -> Path:
    """`data` as file `name` in a fresh folder; `siblings` names a folder under
    tests/fuzz/siblings/ whose files are copied next to it (the fixed parts of a folder
    checkpoint, e.g. the shard an index points at)."""
    folder = scratch() / "case"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    if siblings is not None:
        for f in sorted((HERE / "siblings" / siblings).iterdir()):
            shutil.copyfile(f, folder / f.name)
    target = folder / name
    target.write_bytes(data)
    return target


def open_and_list(path: Path) -> None:
    """What `ckpt ls` does: open, then touch every tensor's metadata."""
    import inspector

    ckpt = inspector.open(path)
    for name in ckpt:
        info = ckpt[name]
        _ = (info.dtype, info.shape)


def open_file(name: str, siblings: str | None = None, *, folder: bool = False
              ) -> Callable[[bytes], None]:
    """A TestOneInput that opens `data` written as `name` (or its folder, for `folder=True`)."""

    def test_one_input(data: bytes) -> None:
        if len(data) > MAX_LEN:
            return
        with expected():
            open_and_list(opened_path(data, name, siblings, folder))

    test_one_input.opens = (name, siblings, folder)  # type: ignore[attr-defined]
    return test_one_input


def opened_path(data: bytes, name: str, siblings: str | None, folder: bool) -> Path:
    path = written(data, name, siblings)
    return path.parent if folder else path


def main(test_one_input: Callable[[bytes], None]) -> None:
    """Run under atheris, with libFuzzer's command line (`fuzz_x.py CORPUS -max_total_time=N`)."""
    import atheris

    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
