""".nemo archives: a tar (uncompressed since NeMo 1.7, tar.gz before) read in place.

Members: `model_config.yaml`, the weights, and artifacts (`<uuid>_<name>`) that the config
references as `nemo:<uuid>_<name>`. The weights come in one of the layouts in `LAYOUTS`; each is
read where it lies inside the tar, at its member's data offset, so tensor byte ranges are
absolute offsets in the .nemo file and nothing is extracted. A tar.gz is first expanded to an
uncompressed tar in a cache (streamed, bounded memory), which is then read the same way.

`read_parts` reads a model from its files wherever they lie: the members of a tar here, the files
of an extracted folder in `nemo_folder.py`.
"""

from __future__ import annotations

import gzip
import hashlib
import itertools
import os
import re
import shutil
import tempfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .. import yamlload
from ..errors import (
    ArchiveError,
    CheckpointError,
    HeaderError,
    MissingRecordError,
    TruncatedFileError,
)
from ..sources import Source, name_of, opened, stream
from . import Loaded, ReadOptions, expand_cache, tensor_parallel
from .tar_safe import Member, is_tar_head, read_member, read_members

FORMAT = "nemo"
CONFIG = "model_config.yaml"
MAX_CONFIG_SIZE = 64 << 20
GZIP_MAGIC = b"\x1f\x8b"
ARTIFACT_PREFIX = "nemo:"

_RANK_WEIGHTS = re.compile(r"^((?:mp|tp)_rank_\d+(?:_pp_rank_\d+)?)/model_weights\.ckpt$")
_DIST_FOLDER = "model_weights"


@dataclass(frozen=True)
class Part:
    """One file of a NeMo model: a member of the .nemo tar, or a file of an extracted folder."""

    path: Path | Source  # the file holding its bytes: the tar (or its source), or the file
    member: Member  # name as stored, offset of its bytes in `path`, size


@dataclass(frozen=True)
class Parts:
    """The files of a NeMo model by key ("model_weights.ckpt", "mp_rank_00/model_weights.ckpt")."""

    where: Path | str  # the .nemo file or the folder (a source's name), named in messages
    kind: str  # "archive" or "folder", for messages
    files: dict[str, Part]

    def label(self, key: str) -> str:
        """How messages name one of the files."""
        if self.kind == "archive" or isinstance(self.where, str):
            return f"{self.where}:{key}"
        return os.fspath(self.where / key)


@dataclass
class _Weights:
    tree: Any
    root: tuple[Any, ...] | None
    members: list[str]  # member keys that hold the weights (not artifacts)
    metadata: dict[str, Any]
    notes: list[str]
    sources: dict[str, Source] = field(default_factory=dict)  # sharded tensors' (dcp.py)


def sniff(path: Path, head: bytes) -> bool:
    """A `.nemo` file, or a tar without that suffix that holds a NeMo config (a renamed .nemo,
    or what `ckpt apply -o OUT` wrote for a .nemo target): chosen by content, like the others."""
    if not path.is_file():
        return False
    return path.suffix == ".nemo" or (is_tar_head(head) and _holds_config(path))


def sniff_source(name: str, head: bytes) -> bool:
    """A `.nemo` by name, or a tar whose first member is a NeMo config or weights file."""
    if name.endswith(".nemo"):
        return True
    first = head[:100].split(b"\0", 1)[0]
    return is_tar_head(head) and first.endswith((CONFIG.encode(), b"model_weights.ckpt"))


def _holds_config(path: Path) -> bool:
    try:
        return any(m.key == CONFIG for m in read_members(path))
    except (CheckpointError, OSError):
        return False  # not a readable tar: another reader (or the "unknown format" error) says so


def read(path: Path | Source, options: ReadOptions) -> Loaded:
    if not isinstance(path, Path):
        return _read_tar_source(path, options)
    if not _is_gzip(path):
        return _read_tar(path, options)
    tar = expand_gzip(path, options.cache_dir)
    try:
        loaded = _read_tar(tar, options)
    except CheckpointError as e:
        raise _about_user_file(e, tar, path) from None
    loaded.notes.insert(
        0,
        f"tar.gz .nemo (NeMo < 1.7) decompressed to {tar}; tensor byte ranges refer to that "
        "file (delete it when done, or pass a cache folder to reuse it)",
    )
    loaded.metadata["expanded_to"] = os.fspath(tar)
    return loaded


def _read_tar(tar: Path, options: ReadOptions) -> Loaded:
    files = {m.key: Part(tar, m) for m in read_members(tar) if m.kind == "file"}
    return read_parts(FORMAT, Parts(tar, "archive", files), options)


def _read_tar_source(src: Source, options: ReadOptions) -> Loaded:
    """A .nemo from a byte source (a remote object): its tar headers walked by offset, then the
    config and the weights' zip headers read where they lie; nothing else is fetched."""
    if _is_gzip(src):
        raise ArchiveError(src.name, "a tar.gz .nemo (NeMo < 1.7) cannot be read in place from "
                                     "a byte source: download it, then open the file")
    files = {m.key: Part(src, m) for m in read_members(src) if m.kind == "file"}
    return read_parts(FORMAT, Parts(src.name, "archive", files), options)


def _about_user_file(e: CheckpointError, tar: Path, path: Path) -> CheckpointError:
    """An error found in the expanded copy of a tar.gz .nemo, naming the user's file (and the
    member), with the copy mentioned after the problem."""
    where, copy = e.path or os.fspath(tar), os.fspath(tar)
    if where.startswith(copy):
        where = os.fspath(path) + where[len(copy) :]
    return type(e)(where, f"{e.what} (in its expanded copy {tar})", key=e.key)


def read_parts(fmt: str, parts: Parts, options: ReadOptions) -> Loaded:
    """A NeMo model from its files: the config parsed, the weights read in place, the other
    files listed as artifacts."""
    config = _config(parts)
    weights = _weights(parts, options, config)
    artifacts = _artifacts(parts.files, weights.members, config)
    notes = weights.notes + _missing_artifacts(config, parts)
    if config is None:
        notes.append(f"no {CONFIG} in the {parts.kind}")
    metadata = {"config": config, "artifacts": artifacts, **weights.metadata}
    return Loaded(fmt, weights.tree, metadata, notes, root=weights.root, sources=weights.sources)


def _is_gzip(path: Path | Source) -> bool:
    with opened(path) as src:
        return src.read(0, min(2, src.size)) == GZIP_MAGIC


# Config and artifacts ---------------------------------------------------------------------------


def _config(parts: Parts) -> Any:
    part = parts.files.get(CONFIG)
    if part is None:
        return None
    text = read_member(part.path, part.member, MAX_CONFIG_SIZE)
    where, name = name_of(part.path), part.member.name
    try:
        return yamlload.load(text)
    except yaml.YAMLError as e:
        raise HeaderError(where, f"not valid YAML: {e}", key=name) from None
    except RecursionError:
        raise HeaderError(where, "YAML nested too deeply", key=name) from None


def _artifacts(
    files: dict[str, Part], weight_members: list[str], config: Any
) -> list[dict[str, Any]]:
    refs = config_references(config)
    skip = {CONFIG, *weight_members}
    return [
        {"name": key, "size": p.member.size, "offset": p.member.offset, "referenced": key in refs}
        for key, p in files.items()
        if key not in skip
    ]


def _missing_artifacts(config: Any, parts: Parts) -> list[str]:
    return [
        f"{CONFIG} references {ARTIFACT_PREFIX}{name}, which is not in the {parts.kind}"
        for name in sorted(config_references(config))
        if name not in parts.files
    ]


def config_references(config: Any) -> set[str]:
    """Artifact names the config points at with `nemo:<name>` (walked once per node: YAML
    aliases can make a small file into a huge or cyclic graph)."""
    refs: set[str] = set()
    seen: set[int] = set()
    stack = [config]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            if node.startswith(ARTIFACT_PREFIX):
                refs.add(node[len(ARTIFACT_PREFIX) :])
        elif isinstance(node, (dict, list)) and id(node) not in seen:
            seen.add(id(node))
            stack.extend(node.values() if isinstance(node, dict) else node)
    return refs


# Weights ------------------------------------------------------------------------------------------


def _single(parts: Parts, options: ReadOptions, config: Any) -> _Weights | None:
    part = parts.files.get("model_weights.ckpt")
    if part is None:
        return None
    inner = _read_zip_member(part, options)
    member = part.member
    meta = {"weights": {"member": member.name, "offset": member.offset, "size": member.size}}
    meta["torch_metadata"] = inner.metadata
    return _Weights(inner.tree, inner.root, [member.key], meta, inner.notes)


def _ranks(parts: Parts, options: ReadOptions, config: Any) -> _Weights | None:
    files = parts.files
    ranks = {m.group(1): files[key] for key in files if (m := _RANK_WEIGHTS.match(key))}
    if not ranks:
        return None
    trees, notes = {}, []
    for rank, part in sorted(ranks.items()):
        inner = _read_zip_member(part, options)
        trees[rank] = inner.tree
        notes += [f"{rank}: {n}" for n in inner.notes]
    members = [p.member.key for p in ranks.values()]
    meta = {"model_parallel_ranks": sorted(ranks)}
    why = _why_not_merged(trees, options)
    if why is None:
        where = parts.where.as_posix() if isinstance(parts.where, Path) else parts.where
        merged = tensor_parallel.merge_model_parallel(
            where, trees, tensor_parallel.is_gated(config))
        if isinstance(merged, tensor_parallel.Merged):
            return _Weights(merged.tree, (), members, meta, merged.notes + notes, merged.sources)
        why = merged
    notes.insert(0, f"model-parallel .nemo: {len(ranks)} ranks ({', '.join(sorted(ranks))}), "
                    f"each listed under its rank with its own shard of the weights ({why})")
    return _Weights(trees, (), members, meta, notes)


def _why_not_merged(trees: dict[str, Any], options: ReadOptions) -> str | None:
    """Why the ranks are listed one by one instead of merged, or None."""
    if options.ranks:
        return "--ranks"
    if not all(isinstance(t, dict) for t in trees.values()):
        return "a rank does not hold a state dict"
    return None


def _distributed(parts: Parts, options: ReadOptions, config: Any) -> _Weights | None:
    from . import dcp

    prefix = f"{_DIST_FOLDER}/"
    members = {key[len(prefix) :]: p for key, p in parts.files.items() if key.startswith(prefix)}
    if dcp.METADATA not in members:
        return None
    ranges = {name: dcp.FileRange(p.path, p.member.offset, p.member.size)
              for name, p in members.items()}
    loaded = dcp.read_files(parts.label(_DIST_FOLDER), ranges, options)
    notes = [f"distributed checkpoint (torch_dist) in {prefix}, read in place", *loaded.notes]
    meta = {"distributed": {"folder": prefix, "files": sorted(members)}, **loaded.metadata}
    return _Weights(loaded.tree, loaded.root, [prefix + k for k in members], meta, notes,
                    loaded.sources)


# Weight layouts, tried in order: one state dict, model-parallel ranks, a distributed folder.
LAYOUTS: tuple[Callable[[Parts, ReadOptions, Any], _Weights | None], ...] = (
    _single,
    _ranks,
    _distributed,
)


def _weights(parts: Parts, options: ReadOptions, config: Any) -> _Weights:
    for layout in LAYOUTS:
        found = layout(parts, options, config)
        if found is not None:
            return found
    raise MissingRecordError(
        parts.where,
        f"no weights in the {parts.kind}: expected model_weights.ckpt, "
        f"mp_rank_XX/model_weights.ckpt or a {_DIST_FOLDER}/ folder",
    )


def _read_zip_member(part: Part, options: ReadOptions) -> Loaded:
    from . import torch_zip  # imported here: this module must load even where that one is absent

    # `member` names the zip in messages and prefixes its storage keys: every torch zip numbers
    # its records from 0, and equal keys across ranks would show unrelated tensors as tied.
    member = part.member
    loaded: Loaded = torch_zip.read_zip_at(
        part.path, member.offset, member.size, options, member=member.name
    )
    return loaded


# tar.gz ------------------------------------------------------------------------------------------


# A gzip bomb must not fill the disk: expansion stops past the larger of
# `MAX_GZIP_RATIO` x the compressed size and `MIN_GZIP_LIMIT` (real .nemo weights barely compress,
# so a tar.gz .nemo expands a few times at most), or past the byte count in the environment
# variable `GZIP_LIMIT_ENV`; and when the cache folder's free space drops under `MIN_FREE_BYTES`.
MAX_GZIP_RATIO = 100
MIN_GZIP_LIMIT = 1 << 30
MIN_FREE_BYTES = 256 << 20
GZIP_LIMIT_ENV = "CKPT_INSPECTOR_MAX_EXPANDED_BYTES"
_CHUNK = 1 << 20
_FREE_CHECK_EVERY = 64  # chunks between free-space checks


def expand_gzip(path: Path, cache_dir: Path | None) -> Path:
    """An uncompressed copy of a gzip file, streamed into the cache (`expand_cache`); reused
    while the source file is unchanged (the name carries its path, size and mtime). Capped
    (`gzip_limit`, free space, checked before starting and while writing): past a cap the
    partial copy is removed and an ArchiveError names the file. The cache is kept under its
    size cap, least recently used entries evicted first."""
    st = path.stat()
    ident = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()
    folder = expand_cache.cache_folder(cache_dir)
    target = folder / f"{path.stem}-{hashlib.sha256(ident).hexdigest()[:16]}.tar"
    if target.is_file():
        expand_cache.touch(target)
        return target
    limit, why = gzip_limit(path, st.st_size)
    cap = expand_cache.cache_limit(path)
    need = expand_cache.expanded_size(path, st.st_size)
    expand_cache.evict(folder, cap, room=need)
    expand_cache.check_room(path, folder, need, MIN_FREE_BYTES)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=target.name, suffix=".part")
    try:
        with (
            os.fdopen(fd, "wb") as dst,
            opened(path) as source,
            gzip.GzipFile(fileobj=stream(source), mode="rb") as src,
        ):
            _copy_capped(path, src, dst, limit, why, folder)
        os.replace(tmp, target)
    except EOFError:
        raise TruncatedFileError(path, "gzip stream ends early: the file is truncated") from None
    except (gzip.BadGzipFile, zlib.error) as e:
        raise ArchiveError(path, f"corrupt gzip data: {e}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    expand_cache.evict(folder, cap, keep=target)
    return target


def gzip_limit(path: Path, compressed: int) -> tuple[int, str]:
    """Bytes a gzip .nemo may expand to, and why: the environment's override, else the ratio
    cap."""
    override = os.environ.get(GZIP_LIMIT_ENV)
    if override is None:
        why = f"{MAX_GZIP_RATIO}x its compressed size, at least {MIN_GZIP_LIMIT:,}"
        return max(compressed * MAX_GZIP_RATIO, MIN_GZIP_LIMIT), why
    if not override.strip().isdigit():
        raise ArchiveError(path, f"{GZIP_LIMIT_ENV}={override!r} is not a number of bytes")
    return int(override), f"set by {GZIP_LIMIT_ENV}"


def _copy_capped(path: Path, src: Any, dst: Any, limit: int, why: str, folder: Path) -> None:
    written = 0
    for n in itertools.count():
        if n % _FREE_CHECK_EVERY == 0:
            _check_free(path, folder)
        chunk = src.read(_CHUNK)
        if not chunk:
            return
        written += len(chunk)
        if written > limit:
            raise ArchiveError(
                path,
                f"gzip data expands past {limit:,} bytes ({why}): stopped, as a gzip bomb would "
                f"fill the disk; set {GZIP_LIMIT_ENV} to a larger byte count to allow it",
            )
        dst.write(chunk)


def _check_free(path: Path, folder: Path) -> None:
    free = shutil.disk_usage(folder).free
    if free < MIN_FREE_BYTES:
        raise ArchiveError(
            path,
            f"stopped expanding the gzip data: {folder} has {free:,} bytes free, less than the "
            f"{MIN_FREE_BYTES:,} kept free; point --cache-dir (inspector.open(cache_dir=...), "
            f"or {expand_cache.CACHE_DIR_ENV}) at a folder with more space",
        )

