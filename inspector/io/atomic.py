"""Atomic outputs: write into a temp file (or folder) beside the destination, fsync, rename.

On any exception, Ctrl-C included, the temp is removed and nothing appears at the destination.
A failure after the rename (the folder's fsync, a signal there) says so: the output is in place,
but its durability step failed. A temp's name carries its writer's pid
(`.STEM.tmp-PID-XXXXXXXX.SUFFIX`): a writer killed with SIGKILL leaves its temp behind, and the
next write to the same destination removes temps whose writer no longer runs.
An output that would replace one of its own inputs is refused before anything is written.
`copy_range` copies in the kernel (`copy_file_range`) where it can, else through a buffer; a
whole-file reflink (FICLONE) is patch.py's. `start_writeback` lets the disk write a
finished temp while the caller verifies it, so the one fsync before the rename finds it written.
"""

from __future__ import annotations

import ctypes
import errno
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..errors import CheckpointError, WriteError

FICLONE = 0x40049409  # linux/fs.h: _IOW(0x94, 9, int)
_COPY_CHUNK = 64 << 20  # bytes per copy_file_range / fallback read: keeps memory flat

# errno values that mean "the disk or a limit is full": reported as such, not as a bug.
_FULL = {errno.ENOSPC: "no space left on the device", errno.EFBIG: "file size limit reached",
         errno.EDQUOT: "disk quota exceeded"}


def check_not_input(dest: str | os.PathLike[str], inputs: Iterable[str | os.PathLike[str]]) -> None:
    """Refuse a destination that is (or, for a folder, contains) one of the inputs."""
    dest_real = os.path.realpath(dest)
    for inp in inputs:
        inp_real = os.path.realpath(inp)
        same = inp_real == dest_real
        if not same and os.path.exists(dest) and os.path.exists(inp):
            same = os.path.samefile(dest, inp)
        inside = os.path.isdir(dest) and inp_real.startswith(dest_real.rstrip(os.sep) + os.sep)
        if same or inside:
            raise WriteError(f"{dest}: refusing to overwrite an input of this write ({inp})")


def describe_os_error(dest: str | os.PathLike[str], e: OSError) -> WriteError:
    what = _FULL.get(e.errno or 0, e.strerror or str(e))
    return WriteError(f"{dest}: writing failed: {what}; nothing was written to the destination")


def describe_after_rename(dest: str | os.PathLike[str], what: str) -> WriteError:
    """The output was renamed into place, then its durability step failed (`what`)."""
    return WriteError(
        f"{dest}: the output is in place, but {what} after it was renamed there: it may not "
        "survive a crash or power loss until the folder is synced (run `sync`, or write again)"
    )


def refuse_url(dest: str | os.PathLike[str]) -> None:
    """Outputs are local files: a URL (s3://, gs://, hf://, http(s)://) is refused, with what
    to do instead, before anything is written."""
    text = os.fspath(dest)
    if isinstance(text, str) and "://" in text:
        from ..remote import is_url, public_name

        if is_url(text):
            raise WriteError(
                f"{public_name(text)}: outputs are written to local paths only (uploading is "
                "not supported yet): write to a local path, then upload the verified file with "
                "the store's own tool (aws s3 cp, gcloud storage cp, huggingface-cli upload)")


@contextmanager
def atomic_path(
    dest: str | os.PathLike[str],
    inputs: Iterable[str | os.PathLike[str]] = (),
    *,
    folder: bool = False,
) -> Iterator[Path]:
    """Yield a temp path beside `dest`; on success it is fsynced and renamed onto `dest`.

    `folder=True` yields a temp folder (an HF model folder output). An existing `dest` that is not
    an input is replaced, as `torch.save` would; a folder only when it is replaced as a whole.
    """
    refuse_url(dest)
    dest = Path(dest)
    check_not_input(dest, list(inputs))
    parent = dest.parent if str(dest.parent) else Path(".")
    if not parent.is_dir():
        raise WriteError(f"{dest}: the destination folder {parent} does not exist")
    # The temp keeps the destination's suffix, so that readers can open it for verification.
    prefix, suffix = f".{dest.stem}.tmp-{os.getpid()}-", dest.suffix
    remove_stale_temps(dest)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=prefix, suffix=suffix, dir=parent) if folder
                   else _mkstemp(prefix, suffix, parent))
        # mkstemp/mkdtemp make it private (0600/0700); the output gets the usual mode.
        os.chmod(tmp, (0o777 if folder else 0o666) & ~_umask())
    except OSError as e:
        raise describe_os_error(dest, e) from e
    try:
        yield tmp
        _fsync_tree(tmp)
        _replace(tmp, dest)
    except OSError as e:
        _remove(tmp)
        raise describe_os_error(dest, e) from e
    except (WriteError, CheckpointError) as e:
        _remove(tmp)
        raise _naming_dest(e, tmp, dest) from None
    except BaseException:
        _remove(tmp)
        raise
    _sync_after_rename(dest, parent)


def _naming_dest(e: Exception, tmp: Path, dest: Path) -> Exception:
    """The error of a writer or of the verification, naming the output the user asked for, not
    the temp file (gone by the time the message is read)."""
    try:
        if isinstance(e, CheckpointError) and e.path is not None and e.path.startswith(str(tmp)):
            return type(e)(str(dest) + e.path[len(str(tmp)):], e.what, key=e.key)
        if isinstance(e, WriteError) and str(tmp) in str(e):
            return type(e)(str(e).replace(str(tmp), str(dest)))
    except TypeError:  # a subclass built otherwise: keep it as raised
        pass
    return e


def _sync_after_rename(dest: Path, parent: Path) -> None:
    """fsync the folder that now holds `dest`; a failure or an interrupt here is not "nothing
    was written": the destination was already replaced."""
    try:
        _fsync_dir(parent)
    except OSError as e:
        what = _FULL.get(e.errno or 0, e.strerror or str(e))
        raise describe_after_rename(dest, f"syncing its folder failed ({what})") from e
    except KeyboardInterrupt as e:
        raise describe_after_rename(dest, "the write was interrupted") from e


def _temp_pattern(dest: Path) -> re.Pattern[str]:
    stem, suffix = re.escape(dest.stem), re.escape(dest.suffix)
    return re.compile(rf"\.{stem}\.tmp-(\d+)-[A-Za-z0-9_]+{suffix}")


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return pid < 2**31  # another user's live process; an absurd pid is nobody's
    return True


def remove_stale_temps(dest: str | os.PathLike[str]) -> list[Path]:
    """Remove temps of `dest` (this module's naming) whose writer process is gone: what a writer
    killed with SIGKILL leaves. A live writer's temp, this process's own, and any other file are
    kept. Returns what was removed; best effort (a temp that cannot be removed is left)."""
    dest = Path(dest)
    parent = dest.parent if str(dest.parent) else Path(".")
    pattern, removed = _temp_pattern(dest), []
    try:
        names = os.listdir(parent)
    except OSError:
        return []
    for name in names:
        m = pattern.fullmatch(name)
        if m is None or int(m.group(1)) == os.getpid() or _running(int(m.group(1))):
            continue
        try:
            _remove_strict(parent / name)
        except OSError:
            continue
        removed.append(parent / name)
    return removed


def _remove_strict(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def write_text_atomic(
    dest: str | os.PathLike[str], text: str, inputs: Iterable[str | os.PathLike[str]] = ()
) -> None:
    """Write `text` (UTF-8) to `dest` through `atomic_path`: the one way the tool writes a text
    output (a gate's report, a plan). An input named as `dest` is refused before anything is
    written."""
    with atomic_path(dest, inputs) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _umask() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)  # no /proc: read it by setting it (and put it back)
    os.umask(mask)
    return mask


def _mkstemp(prefix: str, suffix: str, parent: Path) -> str:
    fd, name = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=parent)
    os.close(fd)
    return name


def _replace(tmp: Path, dest: Path) -> None:
    if tmp.is_dir() and dest.is_dir():
        # Folders cannot be swapped atomically onto a non-empty one: move the old aside first.
        old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".old", dir=dest.parent))
        os.rmdir(old)
        os.rename(dest, old)
        try:
            os.rename(tmp, dest)
        except BaseException:
            os.rename(old, dest)
            raise
        shutil.rmtree(old, ignore_errors=True)
        return
    os.replace(tmp, dest)


def _remove(tmp: Path) -> None:
    if tmp.is_dir():
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        tmp.unlink(missing_ok=True)


def _fsync_tree(path: Path) -> None:
    if path.is_dir():
        for sub in path.rglob("*"):
            if sub.is_file():
                _fsync_file(sub)
        _fsync_dir(path)
    else:
        _fsync_file(path)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_SYNC_FILE_RANGE_WRITE = 2  # linux/fs.h: start writeback of dirty pages, do not wait
_KICK_SECONDS = 0.05  # how often writeback is asked for while an output is being written


def _sync_file_range() -> Any:
    try:
        fn = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


@contextmanager
def start_writeback(path: Path, every: float = _KICK_SECONDS) -> Iterator[None]:
    """Keep the disk writing `path`'s dirty pages (a file, or the files of a folder) while the
    body writes and verifies it: a background thread asks for writeback (sync_file_range, which
    ctypes calls without the GIL) every `every` seconds, so the fsync before the rename only
    waits for the tail. It waits on nothing itself; durability stays with that fsync. Best
    effort: where the call is missing the fsync does all the work."""
    fn = _sync_file_range()
    if fn is None:
        yield
        return
    done = threading.Event()

    def run() -> None:
        while not done.wait(every):
            _kick_all(fn, path)
        _kick_all(fn, path)  # the body's last writes start on the disk too

    thread = threading.Thread(target=run, name="ckpt-writeback", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


def _files(path: Path) -> list[Path]:
    if path.is_dir():
        return [p for p in path.rglob("*") if p.is_file()]
    return [path] if path.exists() else []


def _kick_all(fn: Any, path: Path) -> None:
    for f in _files(path):
        _kick(fn, f)


def _kick(fn: Any, path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # a file the writer has just replaced or removed: nothing to start
        return
    try:
        fn(fd, 0, 0, _SYNC_FILE_RANGE_WRITE)
    finally:
        os.close(fd)


def open_output(path: str | os.PathLike[str], flags: int = os.O_WRONLY) -> int:
    """Open a writer's output file, empty. The fresh temp is not truncated: on ext4 a truncate to
    size 0 makes close() flush the whole file synchronously (auto_da_alloc), where the one fsync
    before the rename overlaps that writing with the verification."""
    fd = os.open(path, flags | os.O_CREAT, 0o644)
    try:
        if os.fstat(fd).st_size:
            os.ftruncate(fd, 0)
    except BaseException:
        os.close(fd)
        raise
    return fd


def copy_range(src_fd: int, src_off: int, dst_fd: int, dst_off: int, length: int) -> str:
    """Copy `length` bytes between open files, in the kernel when it can; returns how."""
    done = 0
    try:
        while done < length:
            n = os.copy_file_range(src_fd, dst_fd, min(_COPY_CHUNK, length - done),
                                   src_off + done, dst_off + done)
            if n == 0:
                raise OSError(errno.EIO, f"source ended {length - done} bytes early")
            done += n
        return "copy_file_range"
    except OSError as e:
        if e.errno not in (errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL):
            raise
    while done < length:
        chunk = os.pread(src_fd, min(_COPY_CHUNK, length - done), src_off + done)
        if not chunk:
            raise OSError(errno.EIO, f"source ended {length - done} bytes early")
        pwrite_all(dst_fd, chunk, dst_off + done)
        done += len(chunk)
    return "copy"


def pwrite_all(fd: int, data: bytes | memoryview, offset: int) -> None:
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        view, offset = view[n:], offset + n

