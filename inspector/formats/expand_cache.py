"""The cache of expanded archives (a tar.gz .nemo decompressed once, then read in place).

Where: the `cache_dir` a caller gives (`inspector.open(..., cache_dir=)`, `ckpt --cache-dir`),
else `CKPT_INSPECTOR_CACHE_DIR`, else a per-user folder in the temp directory. How much: entries
are evicted least recently used first (by access time; each use sets it) until the cache holds
at most `CKPT_INSPECTOR_CACHE_MAX_BYTES` (default 4 GiB); the entry in use is never evicted, so
one file larger than the cap is still expanded. Entries are written under a temporary name and
renamed into place, so concurrent readers never see a half-written copy; eviction only unlinks,
and a reader that has the file open or mapped keeps reading it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from ..errors import ArchiveError
from ..sources import opened
from . import CACHE_DIR_ENV

CACHE_MAX_ENV = "CKPT_INSPECTOR_CACHE_MAX_BYTES"
DEFAULT_CACHE_MAX = 4 << 30
ENTRY_SUFFIX = ".tar"  # what an expanded entry's name ends with; `.part` while being written

# The folder a command line chose (`ckpt --cache-dir`), for every read it makes: set by
# `using_cache_dir`, below an explicit `cache_dir` and above the environment.
_chosen: Path | None = None


@contextmanager
def using_cache_dir(folder: str | os.PathLike[str] | None) -> Iterator[None]:
    """Make `folder` the default cache folder while the body runs (None: leave it)."""
    global _chosen
    before = _chosen
    if folder is not None:
        _chosen = Path(folder)
    try:
        yield
    finally:
        _chosen = before


def cache_folder(cache_dir: Path | None) -> Path:
    """The folder expanded copies go to (created if missing)."""
    env = os.environ.get(CACHE_DIR_ENV)
    folder = cache_dir or _chosen or (Path(env) if env else None) or _private_temp_dir()
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def cache_limit(path: Path) -> int:
    """Bytes the cache may hold: the environment's override, else DEFAULT_CACHE_MAX."""
    value = os.environ.get(CACHE_MAX_ENV)
    if value is None:
        return DEFAULT_CACHE_MAX
    if not value.strip().isdigit():
        raise ArchiveError(path, f"{CACHE_MAX_ENV}={value!r} is not a number of bytes")
    return int(value)


def touch(entry: Path) -> None:
    """Mark `entry` as just used: its access time set now, explicitly (a noatime or relatime
    mount would not record a read); its modification time stays when it was written."""
    with suppress(OSError):
        st = entry.stat()
        os.utime(entry, ns=(time.time_ns(), st.st_mtime_ns))


def entries(folder: Path) -> list[tuple[int, int, Path]]:
    """(last use, size, path) of the cache's finished entries, oldest first."""
    found = []
    for p in folder.glob(f"*{ENTRY_SUFFIX}"):
        try:
            st = p.stat()
        except OSError:  # removed meanwhile by another process
            continue
        found.append((st.st_atime_ns, st.st_size, p))
    return sorted(found)


def evict(folder: Path, limit: int, *, keep: Path | None = None, room: int = 0) -> list[Path]:
    """Remove least recently used entries until they take at most `limit - room` bytes; `keep`
    is never removed. Returns what was removed."""
    listed = entries(folder)
    total = sum(size for _, size, _ in listed)
    removed = []
    for _, size, p in listed:
        if total + room <= limit:
            break
        if keep is not None and p == keep:
            continue
        try:
            p.unlink()
        except FileNotFoundError:
            pass
        except OSError:
            continue
        total -= size
        removed.append(p)
    return removed


def check_room(path: Path, folder: Path, need: int, keep_free: int) -> None:
    """Refuse to start expanding `path` when `folder` cannot hold `need` more bytes and still
    keep `keep_free` bytes free."""
    free = shutil.disk_usage(folder).free
    if free - need < keep_free:
        raise ArchiveError(
            path,
            f"expanding it needs about {need:,} bytes in {folder}, which has {free:,} bytes free "
            f"({keep_free:,} are kept free); point --cache-dir (inspector.open(cache_dir=...), "
            f"or {CACHE_DIR_ENV}) at a folder with more space",
        )


def expanded_size(path: Path, compressed: int) -> int:
    """The size a gzip file expands to, from its trailer (ISIZE: the size modulo 2**32), and at
    least its compressed size: an estimate for the space check, not a limit."""
    try:
        with opened(path) as src:
            at = max(compressed - 4, 0)
            isize = int.from_bytes(src.read(at, max(0, min(4, src.size - at))), "little")
    except OSError:
        isize = 0
    return max(isize, compressed)


def _private_temp_dir() -> Path:
    """A per-user folder in the temp dir; a folder someone else owns is never trusted."""
    folder = Path(tempfile.gettempdir()) / f"ckpt-inspector-{os.getuid()}"
    folder.mkdir(mode=0o700, exist_ok=True)
    st = folder.lstat()
    if st.st_uid != os.getuid() or not folder.is_dir() or folder.is_symlink():
        return Path(tempfile.mkdtemp(prefix="ckpt-inspector-"))
    return folder


__all__ = [
    "CACHE_DIR_ENV",
    "CACHE_MAX_ENV",
    "DEFAULT_CACHE_MAX",
    "cache_folder",
    "cache_limit",
    "check_room",
    "entries",
    "evict",
    "expanded_size",
    "touch",
    "using_cache_dir",
]
