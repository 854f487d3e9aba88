"""Extracted .nemo folders: what `tar xf model.nemo -C dir` leaves, or NeMo's
`save_restore_connector` with `pack_nemo_file=False`: `model_config.yaml`, the weights
(`model_weights.ckpt`, `mp_rank_XX/model_weights.ckpt` or a `model_weights/` distributed folder)
and the artifacts.

Read exactly like a .nemo (`nemo.read_parts`), each file in place. The folder is walked the way
the tar reader walks an archive: a symbolic link is followed only when it resolves inside the
folder, and anything but files and folders (FIFOs, devices, sockets) is refused, so reading never
leaves the folder or blocks on a pipe.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

from ..errors import ArchiveError, MissingRecordError, UnsafeArchiveMemberError
from . import Loaded, ReadOptions
from .nemo import CONFIG, Part, Parts, read_parts
from .tar_safe import Member

FORMAT = "nemo-folder"


def sniff(path: Path, head: bytes) -> bool:
    return path.is_dir() and (path / CONFIG).is_file()


def read(path: Path, options: ReadOptions) -> Loaded:
    found = sorted(_files(path, path.resolve(), ""))
    files = {key: Part(real, Member(key, "file", 0, size)) for key, real, size in found}
    return read_parts(FORMAT, Parts(path, "folder", files), options)


def _files(folder: Path, root: Path, prefix: str) -> Iterator[tuple[str, Path, int]]:
    """(key, resolved path, size) of every file under `folder`, symbolic links checked."""
    for entry in list(folder.iterdir()):  # a Path (or a path under a URL: remote_folder)
        key = prefix + entry.name
        real = _resolved(entry, root, key)
        st = real.stat()
        if stat.S_ISDIR(st.st_mode):
            if folder.resolve().is_relative_to(real):
                raise UnsafeArchiveMemberError(
                    root, "symbolic link to a folder that holds it (a loop)", key=key
                )
            yield from _files(entry, root, key + "/")
        elif stat.S_ISREG(st.st_mode):
            yield key, real, st.st_size
        else:
            raise UnsafeArchiveMemberError(
                root, "not a regular file or folder (FIFO, device or socket)", key=key
            )


def _resolved(path: Path, root: Path, key: str) -> Path:
    """Where `path` really is; a link leading out of the folder is refused."""
    try:
        real = path.resolve(strict=True)
    except FileNotFoundError:
        raise MissingRecordError(
            root, f"symbolic link to {os.readlink(path)}, which does not exist", key=key
        ) from None
    except (OSError, RuntimeError) as e:  # a link loop (RuntimeError before Python 3.13)
        raise ArchiveError(root, f"cannot resolve: {e}", key=key) from None
    if not real.is_relative_to(root):
        raise UnsafeArchiveMemberError(
            root, f"symbolic link to {real}, outside the folder: refused", key=key
        )
    return real

