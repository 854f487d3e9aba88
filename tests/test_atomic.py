"""Atomic writes: interrupted, killed, or out of space leaves nothing at the destination."""

from __future__ import annotations

import os
import signal
import subprocess
import textwrap
from pathlib import Path

import pytest
import torch
from subproc import popen, python

from inspector.applying import apply
from inspector.errors import WriteError
from inspector.io.atomic import atomic_path
from inspector.mapping import propose
from inspector.writers import stream

ROOT = Path(__file__).resolve().parent.parent


def _plan_files(tmp_path: Path, n: int = 64, strided: bool = False) -> Path:
    torch.manual_seed(0)
    src = {f"layer{i}.weight": torch.randn(64, 64).t() if strided else torch.randn(64, 64)
           for i in range(n)}
    tgt = {k: torch.zeros(v.shape) for k, v in src.items()}
    torch.save(src, tmp_path / "src.pt")
    torch.save(tgt, tmp_path / "tgt.pt")
    plan = propose(tmp_path / "src.pt", tmp_path / "tgt.pt")
    plan.approve(list(plan.entries))
    plan.save(tmp_path / "plan.yaml")
    return tmp_path / "plan.yaml"


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def _snapshot(tmp_path: Path) -> dict[str, bytes]:
    return {p: (tmp_path / p).read_bytes() for p in ("src.pt", "tgt.pt", "plan.yaml")}


@pytest.mark.parametrize("out_name", ["out.pt", "out.safetensors"])
@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
@pytest.mark.parametrize("path", ["kernel", "buffer"])
def test_exception_mid_copy_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           out_name: str, error: type[BaseException],
                                           path: str) -> None:
    # "kernel": plain copies go through copy_file_range; "buffer": strided (transposed) sources
    # go through the C++ copy into a buffer.
    plan = _plan_files(tmp_path, strided=path == "buffer")
    before = _snapshot(tmp_path)
    calls = []

    def failing(real):  # type: ignore[no-untyped-def]
        def wrapped(*args, **kwargs):  # type: ignore[no-untyped-def]
            calls.append(1)
            if len(calls) > 5:
                raise error("injected")
            return real(*args, **kwargs)
        return wrapped

    monkeypatch.setattr(stream, "copy_range", failing(stream.copy_range))
    monkeypatch.setattr(stream, "pwrite_all", failing(stream.pwrite_all))
    with pytest.raises(error, match="injected"):
        apply(plan, tmp_path / out_name, threads=1)
    assert len(calls) > 5
    assert not (tmp_path / out_name).exists()
    assert _leftovers(tmp_path) == []
    assert _snapshot(tmp_path) == before


def test_atomic_path_replaces_only_on_success(tmp_path: Path) -> None:
    dest = tmp_path / "x.bin"
    dest.write_bytes(b"old")

    def failing_write() -> None:
        with atomic_path(dest) as tmp:
            tmp.write_bytes(b"new")
            raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        failing_write()
    assert dest.read_bytes() == b"old"
    with atomic_path(dest) as tmp:
        tmp.write_bytes(b"new")
    assert dest.read_bytes() == b"new"
    assert _leftovers(tmp_path) == []


def test_refuses_input_through_a_hard_link(tmp_path: Path) -> None:
    a = tmp_path / "a.pt"
    a.write_bytes(b"data")
    os.link(a, tmp_path / "b.pt")
    with pytest.raises(WriteError, match="refusing"), atomic_path(tmp_path / "b.pt", [a]):
        pass
    assert a.read_bytes() == b"data"


_CHILD = """
import time
from inspector.io.atomic import atomic_path
with atomic_path({dest!r}) as tmp:
    tmp.write_bytes(b"partial")
    print("ready", flush=True)
    time.sleep(30)
"""


def test_killed_process_leaves_no_destination(tmp_path: Path) -> None:
    dest = tmp_path / "out.pt"
    child = popen("-c", _CHILD.format(dest=str(dest)), stdout=subprocess.PIPE)
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "ready"
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=20)
    child.stdout.close()
    assert not dest.exists()


# `ckpt apply` with its own SIGTERM handler (cli/apply.py); the child only holds the write open
# at a known point (before the verification) so that the signal lands inside it.
_APPLY_CHILD = """
import sys, time
from inspector import applying
from inspector.cli import main
real_verify = applying.verify
def held_verify(*args, **kwargs):
    print("ready", flush=True)
    time.sleep(30)
    return real_verify(*args, **kwargs)
applying.verify = held_verify
sys.exit(main(["apply", {plan!r}, "-o", {dest!r}]))
"""


def test_sigterm_during_ckpt_apply_removes_the_temp(tmp_path: Path) -> None:
    plan = _plan_files(tmp_path, n=4)
    dest = tmp_path / "out.pt"
    code = _APPLY_CHILD.format(plan=str(plan), dest=str(dest))
    child = popen("-c", code, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "ready"
    assert _leftovers(tmp_path) != []  # the temp is there while apply runs
    child.send_signal(signal.SIGTERM)
    _, err = child.communicate(timeout=20)
    assert child.returncode == 130, err
    assert "ckpt apply: interrupted" in err
    assert not dest.exists()
    assert _leftovers(tmp_path) == []


def test_file_size_limit_gives_clear_error(tmp_path: Path) -> None:
    plan = _plan_files(tmp_path)
    before = _snapshot(tmp_path)
    out = tmp_path / "out.safetensors"
    code = textwrap.dedent(f"""
        import resource, signal, sys
        from inspector.applying import apply
        from inspector.errors import WriteError
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))
        try:
            apply({str(plan)!r}, {str(out)!r})
        except WriteError as e:
            print("WriteError:", e)
            sys.exit(3)
    """)
    done = python("-c", code, timeout=120)
    assert done.returncode == 3, done.stderr
    assert "file size limit reached" in done.stdout
    assert "nothing was written" in done.stdout
    assert not out.exists()
    assert _leftovers(tmp_path) == []
    assert _snapshot(tmp_path) == before


def test_output_gets_the_usual_file_mode(tmp_path: Path) -> None:
    # mkstemp makes temps 0600; the output must get what open() would give it (0666 & ~umask).
    mask = os.umask(0o027)
    try:
        with atomic_path(tmp_path / "x.bin") as tmp:
            tmp.write_bytes(b"data")
    finally:
        os.umask(mask)
    assert (tmp_path / "x.bin").stat().st_mode & 0o777 == 0o640


def test_folder_fsync_failure_after_rename_says_output_is_in_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import stat

    from inspector.io import atomic

    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            raise OSError(5, "Input/output error")
        real_fsync(fd)

    monkeypatch.setattr(atomic.os, "fsync", fsync)
    dest = tmp_path / "out.bin"
    with pytest.raises(WriteError) as info, atomic_path(dest) as tmp:
        tmp.write_bytes(b"new")
    message = str(info.value)
    assert "output is in place" in message
    assert "syncing its folder failed" in message
    assert "nothing was written" not in message
    assert dest.read_bytes() == b"new"
    assert _leftovers(tmp_path) == []


def test_fsync_failure_before_rename_still_says_nothing_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from inspector.io import atomic

    def fsync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(atomic.os, "fsync", fsync)
    dest = tmp_path / "out.bin"
    with pytest.raises(WriteError, match="nothing was written"), atomic_path(dest) as tmp:
        tmp.write_bytes(b"new")
    assert not dest.exists()
    assert _leftovers(tmp_path) == []


def test_temp_name_carries_the_writer_pid(tmp_path: Path) -> None:
    with atomic_path(tmp_path / "out.pt") as tmp:
        assert tmp.name.startswith(f".out.tmp-{os.getpid()}-")
        assert tmp.name.endswith(".pt")
        tmp.write_bytes(b"x")


_SLOW_CHILD = """
import sys, time
from inspector.io.atomic import atomic_path
with atomic_path({dest!r}) as tmp:
    tmp.write_bytes(b"partial" * 1000)
    print(tmp.name, flush=True)
    time.sleep(60)
"""


def _writer(dest: Path) -> tuple[subprocess.Popen[str], str]:
    child = popen("-c", _SLOW_CHILD.format(dest=str(dest)), stdout=subprocess.PIPE)
    assert child.stdout is not None
    return child, child.stdout.readline().strip()


def test_sigkilled_writers_temp_is_removed_by_the_next_write(tmp_path: Path) -> None:
    dest = tmp_path / "out.pt"
    child, name = _writer(dest)
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=20)
    assert child.stdout is not None
    child.stdout.close()
    assert (tmp_path / name).exists()  # what SIGKILL leaves
    other = tmp_path / ".other.tmp-999999-abcdefgh.pt"  # another destination's temp: not ours
    other.write_bytes(b"x")
    with atomic_path(dest) as tmp:
        tmp.write_bytes(b"done")
    assert dest.read_bytes() == b"done"
    assert _leftovers(tmp_path) == [other.name]


def test_live_writers_temp_is_kept(tmp_path: Path) -> None:
    dest = tmp_path / "out.pt"
    child, name = _writer(dest)
    try:
        with atomic_path(dest) as tmp:
            tmp.write_bytes(b"done")
        assert (tmp_path / name).exists()
        assert dest.read_bytes() == b"done"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=20)
        assert child.stdout is not None
        child.stdout.close()
