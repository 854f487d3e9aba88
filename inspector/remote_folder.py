"""Folders at a URL: a sharded safetensors repo, an HF model folder, a torch.distributed.checkpoint
folder, a Megatron-LM save folder, an extracted .nemo, in a bucket or on the Hub.

The folder readers walk local folders with a small part of `pathlib` (`/`, `parent`, `name`,
`is_dir`, `is_file`, `exists`, `iterdir`, `glob`, `stat`, `resolve`) and reach bytes through
`sources.opened(path)`. `RemotePath` answers the same calls for a path under a URL: listings and
sizes come from the store (one listing per folder, kept for the checkpoint's life: a folder's
files are not asked for one by one), and `open_source()` gives a `remote.RemoteFile` that
starts from what the listing said (no request of its own). So the readers read remote folders
without knowing it, and fetch what they fetch locally: the index or `.metadata` first, then
the headers they need.

Anything that would write through such a path is refused: outputs are local (docs/remote.md).
"""

from __future__ import annotations

import fnmatch
import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

from .errors import RemoteError
from .remote import RemoteFile, URLPath, _call, _filesystem, public_name


class RemoteFolder:
    """What is known of one opened URL's tree: infos by path in the store's filesystem, the
    folders listed so far, and the files opened (each once; the checkpoint gets them all)."""

    def __init__(self, fs: Any, cache_dir: str | os.PathLike[str] | None):
        self.fs = fs
        self.cache_dir = cache_dir
        self.infos: dict[str, dict[str, Any] | None] = {}  # None: known not to exist
        self.listed: dict[str, list[str]] = {}  # folder -> its children's names
        self.files: dict[str, RemoteFile] = {}  # by name (the URL)
        self.requests = 0  # lookups and listings (the files count their own)
        self._lock = threading.Lock()

    def info(self, path: str, name: str) -> dict[str, Any] | None:
        """The store's info for `path`, or None when nothing is there. A path in a folder known
        to be one costs no request of its own: the folder is listed once instead."""
        if path in self.infos:
            return self.infos[path]
        parent = path.rpartition("/")[0]
        known = self.infos.get(parent)
        if parent not in self.listed and known is not None and _kind(known) == "directory":
            self.children(parent, name)
        if parent in self.listed:
            return self.infos.get(path)  # listed: there, or not at all
        found = _call(lambda: _info_or_none(self.fs, path), name, "look it up")
        self.requests += 1
        self.infos[path] = found
        return found

    def children(self, path: str, name: str) -> list[str]:
        """The names in folder `path` (one listing, kept)."""
        if path not in self.listed:
            entries = _call(lambda: self.fs.ls(path, detail=True), name, "list the folder")
            self.requests += 1
            names = []
            for entry in entries:
                child = str(entry.get("name", "")).rstrip("/").rpartition("/")[2]
                if child and child not in (".", ".."):
                    names.append(child)
                    self.infos[f"{path}/{child}"] = dict(entry)
            self.listed[path] = sorted(set(names))
        return self.listed[path]

    def open(self, url: str, path: str) -> RemoteFile:
        name = public_name(url)
        with self._lock:
            found = self.files.get(name)
        if found is not None:
            return found
        info = self.info(path, name)
        if info is None or _kind(info) != "file":
            raise RemoteError(name, "not found (404)" if info is None else "is a folder, "
                                    "not a file")
        opened = RemoteFile(url, cache_dir=self.cache_dir, known=(self.fs, path, info))
        with self._lock:
            return self.files.setdefault(name, opened)


def _info_or_none(fs: Any, path: str) -> dict[str, Any] | None:
    try:
        return dict(fs.info(path))
    except FileNotFoundError:
        return None


def _kind(info: dict[str, Any]) -> str:
    kind = str(info.get("type", "file")).lower()
    return "directory" if kind in ("directory", "dir", "folder") else "file"


def may_be_folder(url: str) -> bool:
    """True when `url` may name a folder (it ends with '/', or its last part has no suffix),
    never for http(s): HTTP lists no folders, and a presigned URL must keep its query (a folder
    path is named without it). Telling for sure needs a request (`RemotePath.is_dir`)."""
    if url.lower().startswith(("http://", "https://")):
        return False
    return url.endswith("/") or "." not in public_name(url).rstrip("/").rpartition("/")[2]


def open_folder(url: str, *, cache_dir: str | os.PathLike[str] | None = None) -> RemotePath:
    """The path of `url` (a folder, or a file read by name such as an index), or a RemoteError
    (missing, forbidden, no package for its scheme) naming it."""
    name = public_name(url).rstrip("/")
    fs, path = _filesystem(url, name)
    return RemotePath.under(name, RemoteFolder(fs, cache_dir), path.rstrip("/"))


class RemotePath(URLPath):
    """A path under a URL, answering the part of `pathlib` the folder readers use (see above)
    from the store. `str()` is the URL (without secrets)."""

    _folder: RemoteFolder
    _store_path: str

    @classmethod
    def under(cls, url: str, folder: RemoteFolder, store_path: str) -> RemotePath:
        self = cls(url)
        self._folder, self._store_path = folder, store_path
        return self

    # Paths --------------------------------------------------------------------------------------
    def __truediv__(self, key: str | os.PathLike[str]) -> RemotePath:
        return self.joinpath(key)

    def joinpath(self, *parts: str | os.PathLike[str]) -> RemotePath:
        url, path = str(self), self._store_path
        for part in parts:
            for piece in os.fspath(part).replace("\\", "/").split("/"):
                if piece in ("", "."):
                    continue
                if piece == "..":
                    raise RemoteError(url, f"'..' in a path under a URL: {os.fspath(part)!r}")
                url, path = f"{url}/{piece}", f"{path}/{piece}"
        return RemotePath.under(url, self._folder, path)

    @property
    def parent(self) -> RemotePath:
        if "/" not in self._store_path or str(self).endswith("://"):
            return self  # the bucket: the top
        url = str(self).rpartition("/")[0]
        return RemotePath.under(url, self._folder, self._store_path.rpartition("/")[0])

    def resolve(self, strict: bool = False) -> RemotePath:
        return self  # no links in an object store

    def absolute(self) -> RemotePath:
        return self

    def is_symlink(self) -> bool:
        return False

    # Lookups ------------------------------------------------------------------------------------
    def _info(self) -> dict[str, Any] | None:
        return self._folder.info(self._store_path, str(self))

    def exists(self, *, follow_symlinks: bool = True) -> bool:
        return self._info() is not None

    def is_dir(self) -> bool:
        info = self._info()
        return info is not None and _kind(info) == "directory"

    def is_file(self) -> bool:
        info = self._info()
        return info is not None and _kind(info) == "file"

    def stat(self, *, follow_symlinks: bool = True) -> os.stat_result:
        info = self._info()
        if info is None:
            raise FileNotFoundError(2, "not found (404)", str(self))
        mode = stat.S_IFDIR | 0o555 if _kind(info) == "directory" else stat.S_IFREG | 0o444
        size = info.get("size") if _kind(info) == "file" else 0
        return os.stat_result((mode, 0, 0, 1, 0, 0, size if isinstance(size, int) else 0,
                               0, 0, 0))

    def iterdir(self) -> Iterator[RemotePath]:  # type: ignore[override]
        for child in self._folder.children(self._store_path, str(self)):
            yield self / child

    def glob(self, pattern: str, **_: Any) -> Iterator[RemotePath]:  # type: ignore[override]
        if "/" in pattern or "**" in pattern:
            raise RemoteError(str(self), f"glob {pattern!r} under a URL: only one level")
        return (p for p in self.iterdir() if fnmatch.fnmatchcase(p.name, pattern))

    # Bytes --------------------------------------------------------------------------------------
    def open_source(self) -> RemoteFile:
        """The file's bytes as a byte source (`sources.opened` calls this)."""
        return self._folder.open(str(self), self._store_path)

    def opened_files(self) -> dict[str, RemoteFile]:
        """Every file opened under this path's URL so far, by name."""
        return dict(self._folder.files)

    @property
    def listing_requests(self) -> int:
        """Requests made so far to look up and list paths under this path's URL."""
        return self._folder.requests

    def open(self, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        if mode != "rb":
            _refuse(self, f"open({mode!r})")
        from .sources import stream

        return stream(self.open_source())

    def read_bytes(self) -> bytes:
        src = self.open_source()
        return src.read(0, src.size)

    def read_text(self, encoding: str | None = None, errors: str | None = None) -> str:
        return self.read_bytes().decode(encoding or "utf-8", errors or "strict")


def _refuse(path: Path, what: str) -> NoReturn:
    raise RemoteError(str(path), f"{what}: paths under a URL are read only (write locally, "
                                 "then upload: docs/remote.md)")


def _refusing(what: str) -> Any:
    def method(self: Path, *args: Any, **kwargs: Any) -> NoReturn:
        _refuse(self, what)
    return method


# Everything `Path` does to a local file that is not a read: never on the local disk by mistake.
for _what in ("mkdir", "touch", "unlink", "rmdir", "rename", "replace", "write_bytes",
              "write_text", "symlink_to", "hardlink_to", "chmod", "lchmod", "readlink", "owner",
              "group", "lstat", "samefile", "expanduser", "rglob"):
    setattr(RemotePath, _what, _refusing(_what))


__all__ = ["RemoteFolder", "RemotePath", "may_be_folder", "open_folder"]
