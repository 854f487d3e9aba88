"""Readers, one module per format, behind one small interface.

A reader module defines:

    FORMAT: str                                     # name shown to users ("safetensors", ...)
    def sniff(path: Path, head: bytes) -> bool      # cheap: path and its first 512 bytes
    def read(path: Path, options: ReadOptions) -> Loaded

A reader of single files may also define `sniff_source(name: str, head: bytes) -> bool`; its
`read` then takes a `sources.Source` for `path` as well (`inspector.open(source)`). Readers reach
bytes only through `sources` (`opened(path)`: read at an offset, view, size, name), never by
opening or mapping files themselves.

`read` returns the container tree with `TensorInfo` leaves (their `name` may be empty: `open()`
names them after choosing the weights root) and never reads tensor data. Readers know nothing of
the CLI or the TUI. Order matters in `READERS`: the first whose `sniff` says yes reads the file.
`READERS` also says, as data, what each reader's sniff needs (`Claim`), so that opening a path
imports only the reader it needs (`ckpt ls x.safetensors` does not import the pickle machine).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from ..errors import HeaderError
from ..model import TreePath
from ..sources import Source

# Where compressed archives are expanded when `cache_dir` is not given (expand_cache reads it).
CACHE_DIR_ENV = "CKPT_INSPECTOR_CACHE_DIR"


@dataclass(frozen=True)
class ReadOptions:
    strict: bool = False  # unsupported pickle globals become errors instead of records
    cache_dir: Path | None = None  # where compressed archives (.nemo as tar.gz) are expanded
    ranks: bool = False  # model-parallel shards listed per rank, not merged into logical tensors


@dataclass
class Loaded:
    format: str
    tree: Any
    metadata: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    root: TreePath | None = None  # the reader knows where the weights are (else: detected)
    # Sources the reader made for storages to name (by `name`), owned by the checkpoint: a
    # sharded tensor's assembled bytes (`inspector.sharded`).
    sources: dict[str, Source] = field(default_factory=dict)


@dataclass(frozen=True)
class Claim:
    """What a reader's `sniff` needs before it can say yes, known without importing the reader:
    a folder (holding one of the files `holds`, when given), or a file whose name ends with one of
    `suffixes` or whose first bytes hold one of `magic` (offset, bytes); a file reader with
    neither takes any file. A necessary condition,
    never a sufficient one: the reader's own `sniff` decides (tests check that no sniff says yes
    where its claim says no). This keeps start-up to the one reader a path needs."""

    module: str  # under inspector.formats
    folders: bool = False
    files: bool = False
    suffixes: tuple[str, ...] = ()
    magic: tuple[tuple[int, bytes], ...] = ()
    holds: tuple[str, ...] = ()

    def may_read(self, path: Path, is_dir: bool, head: bytes) -> bool:
        if is_dir:
            return self.folders and (
                not self.holds or any((path / name).is_file() for name in self.holds)
            )
        if not self.files:
            return False
        if not (self.suffixes or self.magic):
            return True
        return path.name.endswith(self.suffixes) or any(
            head[at : at + len(b)] == b for at, b in self.magic
        )


_TAR = (257, b"ustar")  # tar_safe.is_tar_head

# The readers, most specific first: the first whose `sniff` says yes reads the path.
READERS: tuple[Claim, ...] = (
    Claim("nemo", files=True, suffixes=(".nemo",), magic=(_TAR,)),
    Claim("nemo_folder", folders=True, holds=("model_config.yaml",)),  # nemo.CONFIG
    Claim("megatron_folder", folders=True),
    Claim("dcp", folders=True, holds=(".metadata",)),  # dcp.METADATA
    Claim("hf_folder", folders=True, holds=("config.json",)),  # hf_folder.CONFIG
    Claim("safetensors_index", folders=True, files=True, suffixes=(".safetensors.index.json",)),
    Claim("safetensors", files=True, suffixes=(".safetensors",), magic=((8, b"{"),)),
    Claim("torch_zip", files=True, magic=((0, b"PK\x03\x04"),)),  # zipfile_safe.is_zip_head
    Claim("torch_legacy", files=True),  # a legacy tar or a pickle: its sniff runs the VM
)


def reader_module(claim: Claim) -> ModuleType:
    """The reader module of `claim`. Every reader ships with the package: an ImportError here
    is a bug, and it propagates."""
    return importlib.import_module(f"{__name__}.{claim.module}")


def reader_modules() -> list[ModuleType]:
    """Every reader module, in `READERS` order (all imported: for tools that need them all)."""
    return [reader_module(c) for c in READERS]


def pick(path: Path, head: bytes) -> ModuleType | None:
    """The first reader whose claim and sniff take `path` (`head`: a file's first 512 bytes);
    only readers whose claim fits are imported."""
    is_dir = path.is_dir()
    for claim in READERS:
        if claim.may_read(path, is_dir, head):
            mod = reader_module(claim)
            if mod.sniff(path, head):
                return mod
    return None


def check_names(names: Iterable[str], path: Path | None) -> None:
    """Refuse a tensor name no file or terminal can hold (a lone surrogate: JSON `\\ud800`, a
    pickle's surrogatepass string), as the safetensors reference implementation does."""
    names = list(names) if not isinstance(names, list) else names
    if all(map(str.isascii, names)):
        return
    for name in names:
        try:
            name.encode("utf-8")
        except UnicodeEncodeError as e:
            shown = name.encode("utf-8", "backslashreplace").decode("utf-8")
            raise HeaderError(path, f"tensor name is not valid Unicode ({e.reason} at position "
                                    f"{e.start})", key=shown) from None
