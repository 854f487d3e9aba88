"""`open()`: pick the reader for a path (or wrap an object) and build a `Checkpoint`."""

from __future__ import annotations

import os
from dataclasses import fields
from itertools import islice
from pathlib import Path
from types import ModuleType
from typing import Any, cast

from .bulk import rare_gc
from .containers import detect_root, dotted, iter_tensors, parse_root, subtree, training_state
from .errors import CheckpointError, UnsupportedFormatError
from .formats import READERS, Loaded, ReadOptions, check_names, pick, reader_module
from .formats.pickle_build import AttrDict
from .model import Checkpoint, TensorInfo, TreePath
from .sources import Source, opened


def open_checkpoint(
    source: Any,
    *,
    root: str | TreePath | None = None,
    strict: bool = False,
    cache_dir: str | os.PathLike[str] | None = None,
    ranks: bool = False,
) -> Checkpoint:
    """Open a checkpoint lazily: a path (file or folder), a byte source (`inspector.sources`:
    bytes in memory, ...), a state dict, or an `nn.Module`.

    `root` picks the weights sub-tree (`"model"`, `"state_dict"`, `""` for the top); by default
    it is detected. A path may carry it too: `"train.pt::model"` (see `split_root`).
    `strict` turns unsupported pickle globals into `UnsafePickleError`. `ranks` lists a
    model-parallel checkpoint's shards per rank instead of merged into the model's tensors.
    """
    source, root = split_root(source, root)
    if isinstance(source, Checkpoint):
        return source if root is None else with_root(source, root)
    if is_remote(source):
        options = ReadOptions(strict=strict, cache_dir=Path(cache_dir) if cache_dir else None,
                              ranks=ranks)
        return _open_remote(source, root, options)
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        options = ReadOptions(strict=strict, cache_dir=Path(cache_dir) if cache_dir else None,
                              ranks=ranks)
        loaded = _read_path(path, options)
    elif isinstance(source, Source):
        options = ReadOptions(strict=strict)
        ckpt = _build(Path(source.name), read_source(source, options), root)
        ckpt.sources[source.name] = source  # the caller's: close() leaves it open
        return ckpt
    else:
        from .formats import memory  # in-memory objects need numpy (and maybe torch): lazily

        path = None
        loaded = memory.read(source)
    return _build(path, loaded, root)


def is_remote(source: Any) -> bool:
    """A URL this tool reads remotely (s3://, gs://, hf://, http(s)://): `inspector.remote`,
    imported only for a string that looks like one."""
    if not isinstance(source, str) or "://" not in source:
        return False
    from .remote import is_url

    return is_url(source)


def _open_remote(url: str, root: str | TreePath | None, options: ReadOptions) -> Checkpoint:
    """A checkpoint at a URL, read by range requests (`inspector.remote`): a single file as a
    byte source; a folder, or an index read by name, through the folder readers
    (`inspector.remote_folder`). The checkpoint owns the remote files it opened. Its `path`
    prints as the URL without secrets."""
    from .formats.expand_cache import cache_folder
    from .remote import RemoteFile, URLPath

    if _read_by_path(url):
        return _open_remote_folder(url, root, options)
    remote = RemoteFile(url, cache_dir=cache_folder(options.cache_dir))
    ckpt = _build(URLPath(remote.name), read_source(remote, options), root)
    ckpt.sources[remote.name] = remote
    ckpt._owned.add(remote.name)
    ckpt.metadata["remote"] = {"url": remote.name, "size": remote.size,
                               "version": remote.version}
    return ckpt


# Files at a URL that are read by name, as a local path is (they name other files).
_BY_PATH_SUFFIXES = (".index.json",)


def _read_by_path(url: str) -> bool:
    """True for a URL read through the folder readers: one that may be a folder
    (`remote_folder.may_be_folder`), or an index file. Other files are read as byte sources."""
    from .remote import public_name
    from .remote_folder import may_be_folder

    return public_name(url).endswith(_BY_PATH_SUFFIXES) or may_be_folder(url)


def _open_remote_folder(url: str, root: str | TreePath | None,
                        options: ReadOptions) -> Checkpoint:
    from .formats.expand_cache import cache_folder
    from .remote_folder import open_folder

    where = open_folder(url, cache_dir=cache_folder(options.cache_dir))
    if not where.exists():
        from .errors import RemoteNotFoundError

        raise RemoteNotFoundError(where, "not found (404)")
    if where.is_file() and not where.name.endswith(_BY_PATH_SUFFIXES):
        from .remote import RemoteFile

        remote = where.open_source()
        assert isinstance(remote, RemoteFile)
        loaded = read_source(remote, options)
    else:
        loaded = _read_path(where, options)
    ckpt = _build(where, loaded, root)
    files = where.opened_files()
    for name, src in files.items():
        ckpt.sources.setdefault(name, src)
        ckpt._owned.add(name)
    ckpt.metadata["remote"] = {"url": str(where), "files": len(files),
                               "size": sum(f.size for f in files.values())}
    return ckpt


def path_label(source: str | os.PathLike[str]) -> str:
    """How messages name a path the user gave: a URL without secrets (`remote.public_name`),
    a local path normalised as `Path` does."""
    text = os.fspath(source)
    if is_remote(text):
        from .remote import public_name

        return public_name(text)
    return str(Path(text))


ROOT_SEPARATOR = "::"


def split_root(source: Any, root: str | TreePath | None = None) -> tuple[Any, Any]:
    """`"PATH::ROOT"` -> `("PATH", "ROOT")`: the one parser of per-input roots, for every command.

    A path that exists as named is taken whole (a file may have `::` in its name); otherwise the
    text after the last `::` is the root (`""` for the top). Anything else passes through. A root
    given both ways must agree.
    """
    if not isinstance(source, (str, os.PathLike)):
        return source, root
    text = os.fspath(source)
    if not isinstance(text, str) or ROOT_SEPARATOR not in text or os.path.exists(text):
        return source, root
    if is_remote(text) and ROOT_SEPARATOR not in text.rpartition("/")[2]:
        return source, root  # a URL's host may hold '::' (http://[::1]/x): roots follow the name
    path, _, spec = text.rpartition(ROOT_SEPARATOR)
    if root is not None and parse_root(spec) != (
        parse_root(root) if isinstance(root, str) else tuple(root)
    ):
        raise CheckpointError(path, f"two roots asked for: '{ROOT_SEPARATOR}{spec}' and {root!r}")
    return path, spec


def _read_path(path: Path, options: ReadOptions) -> Loaded:
    loaded: Loaded = pick_reader(path).read(path, options)
    return loaded


def read_source(source: Source, options: ReadOptions) -> Loaded:
    """Read a checkpoint file from a byte source, by the readers that take one (their
    `sniff_source(name, head)` picks): the plug-in point for bytes that are not a local file."""
    head = source.read(0, min(512, source.size))
    if not head:
        raise UnsupportedFormatError(source.name, "file is empty")
    for claim in READERS:  # as pick(): only readers whose claim fits are imported
        if not claim.may_read(Path(source.name), False, head):
            continue
        mod = reader_module(claim)
        sniff = getattr(mod, "sniff_source", None)
        if sniff is not None and sniff(source.name, head):
            loaded: Loaded = mod.read(source, options)
            return loaded
    raise UnsupportedFormatError(
        source.name,
        "not a checkpoint this tool reads from a byte source (safetensors, torch zip, legacy "
        "pickle or .nemo)",
    )


def pick_reader(path: Path) -> ModuleType:
    """The reader module for `path` (chosen by content, not by suffix), or a clear error."""
    if not path.exists():
        raise CheckpointError(path, "no such file or folder")
    head = b""
    if path.is_file():
        with opened(path) as src:
            head = src.read(0, min(512, src.size))
        if not head:
            raise UnsupportedFormatError(path, "file is empty")
    mod = pick(path, head)
    if mod is not None:
        return mod
    kind = "folder" if path.is_dir() else "file"
    raise UnsupportedFormatError(
        path,
        f"not a checkpoint {kind} this tool can read (torch zip or legacy pickle, safetensors, "
        ".nemo, HF folder, torch.distributed.checkpoint folder)",
    )


def _build(path: Path | None, loaded: Loaded, root: str | TreePath | None) -> Checkpoint:
    ckpt = Checkpoint(
        path=path,
        format=loaded.format,
        tree=loaded.tree,
        tensors={},
        metadata=loaded.metadata,
        notes=list(loaded.notes),
        sources=dict(loaded.sources),
        _owned=set(loaded.sources),
    )
    if root is None and loaded.root is not None:
        root = loaded.root
    return with_root(ckpt, root)


def with_root(ckpt: Checkpoint, root: str | TreePath | None) -> Checkpoint:
    """Set the weights sub-tree (detected when `root` is None) and name its tensors."""
    ckpt.notes = [n for n in ckpt.notes if not n.startswith(_ROOT_NOTES)]  # from a former root
    if root is None:
        path = detect_root(ckpt.tree)
        if path:
            ckpt.notes.append(f"{_DETECTED} '{dotted(path)}' (choose another with --root)")
    else:
        path = parse_root(root) if isinstance(root, str) else tuple(root)
    try:
        node = subtree(ckpt.tree, path)
    except (KeyError, IndexError, TypeError):
        raise CheckpointError(
            ckpt.path, "no such sub-tree in the checkpoint", key=dotted(path)
        ) from None
    ckpt.root = path
    ckpt.tensors = _named(node, ckpt.path)
    note = _training_state_note(ckpt)
    if note and note not in ckpt.notes:
        ckpt.notes.append(note)
    return ckpt


_DETECTED = "weights found under"
_TRAINING = "optimizer or training state listed"
_ROOT_NOTES = (_DETECTED, _TRAINING)


def _training_state_note(ckpt: Checkpoint) -> str:
    """Say so when the listed tensors include optimizer (or other training) state."""
    parts = training_state(ckpt.tree, ckpt.root)
    if not parts:
        return ""
    total = sum(n for _, n in parts)
    where = ", ".join(f"'{dotted(p) or '<top>'}' ({n})" for p, n in parts)
    text = f"{_TRAINING}, not model weights ({total} of {len(ckpt)} tensors): {where}"
    weights = detect_root(ckpt.tree)
    if weights and weights != ckpt.root:
        w = dotted(weights)
        text += f"; the weights look to be under '{w}' (PATH{ROOT_SEPARATOR}{w} or --root {w})"
    return text


def _named(node: Any, path: Path | None) -> dict[str, TensorInfo]:
    with rare_gc():  # an object or two per tensor, none cyclic
        named = _named_flat(node)
    if named is None:
        named = {}
        for p, t in iter_tensors(node):
            name = dotted(p)
            named[name] = t if t.name == name else _rename(t, name)
    check_names(named, path)
    return named


def _named_flat(node: Any) -> dict[str, TensorInfo] | None:
    """A state dict's tensors (a dict of str keys and TensorInfo values: what iter_tensors
    walks to, in the same order, with its key as each name) without walking; else None.

    The state dict itself when every tensor could be named in place: the checkpoint's tree and
    tensors are then one dict (a second one is 4 MB at 100k tensors)."""
    if type(node) not in _STATE_DICTS or not all(type(t) is TensorInfo for t in node.values()):
        return None
    if not all(type(k) is str for k in node):
        return None
    # A tensor under two keys is named in place at the first and copied at the second, where its
    # name is no longer "", but for one first met under the key "" (a set of every id seen costs
    # ~7 MB at 100k tensors).
    named: dict[str, TensorInfo] | None = None
    unnamed = None
    for i, (k, t) in enumerate(node.items()):
        if t.name != k:
            if t.name or t is unnamed:
                if named is None:  # from here on, a dict of its own
                    named = dict(islice(node.items(), i))
                t = _rename(t, k)
            else:  # fresh from the reader, unnamed and not shared: named in place
                object.__setattr__(t, "name", k)
        elif not k:
            unnamed = t
        if named is not None:
            named[k] = t
    return cast(dict[str, TensorInfo], node) if named is None else named


_STATE_DICTS = (dict, AttrDict)  # walked by iter_tensors as their items() go


_FIELDS = (
    "name", "dtype", "shape", "strides", "storage_offset", "storage", "is_parameter",
    "requires_grad",
)
assert tuple(f.name for f in fields(TensorInfo)) == _FIELDS, "_rename must copy every field"


def _rename(t: TensorInfo, name: str) -> TensorInfo:
    """`dataclasses.replace(t, name=name)` at a third of its cost (a .pt names all its tensors
    here)."""
    return TensorInfo(
        name, t.dtype, t.shape, t.strides, t.storage_offset, t.storage, t.is_parameter,
        t.requires_grad,
    )
