"""Megatron-LM checkpoint folders: `iter_NNNNNNN/mp_rank_TT[_PPP]/model_optim_rng.pt`.

Megatron-LM's save folder (megatron/training/checkpointing.py) holds
`latest_checkpointed_iteration.txt` (the last iteration saved, or `release`) and a folder per
saved iteration, `iter_0001000` (7 digits) or `release`. In a torch-format iteration, each
model-parallel rank has a folder, `mp_rank_TT` (tensor parallel only) or `mp_rank_TT_PPP` (with
pipeline stages), holding `model_optim_rng.pt`: `{'args', 'checkpoint_version', 'iteration',
'model' (that rank's state dict), 'optimizer', 'opt_param_scheduler', 'rng_state', ...}`. A
`torch_dist` iteration is a torch.distributed.checkpoint folder instead (`.metadata`).

Opening the save folder reads the iteration its `latest_checkpointed_iteration.txt` names;
opening an iteration folder reads that one. The ranks' `model` state dicts are merged into the
model's logical tensors by the split rules of `tensor_parallel` (a gated MLP when the args say
`swiglu`), pipeline stages joined with global layer numbers; `--ranks` lists each rank's state
dict instead. Optimizer and RNG states are not listed. A `torch_dist` iteration is read by the
DCP reader. Folders are walked without following a link out of the save folder.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ..errors import CheckpointError, MissingRecordError, UnsafeArchiveMemberError
from ..model import Record
from ..sources import opened
from . import Loaded, ReadOptions, tensor_parallel

FORMAT = "megatron"
LATEST = "latest_checkpointed_iteration.txt"
RANK_FILE = "model_optim_rng.pt"
MAX_LATEST_SIZE = 64  # an iteration number or "release"
_ITERATION = re.compile(r"iter_\d{7}|release")
_RANK = re.compile(r"mp_rank_\d{2}(?:_\d{3})?")


def sniff(path: Path, head: bytes) -> bool:
    if not path.is_dir():
        return False
    if (path / LATEST).is_file():
        return True
    return bool(_ITERATION.fullmatch(path.name)) and any(
        _RANK.fullmatch(p.name) and (p / RANK_FILE).is_file() for p in path.iterdir())


def read(path: Path, options: ReadOptions) -> Loaded:
    folder, iteration = _iteration_folder(path, path.resolve())
    if (folder / ".metadata").is_file():  # a torch_dist iteration: a DCP folder
        from . import dcp

        loaded = dcp.read(folder, options)
        loaded.notes.insert(0, f"Megatron-LM iteration {iteration} saved as torch_dist "
                               f"({folder.name}/), read as a torch.distributed.checkpoint folder")
        loaded.metadata["megatron"] = {"iteration": iteration, "folder": folder.name}
        return loaded
    ranks = {name: f for name, f in _rank_folders(folder)}
    if not ranks:
        raise MissingRecordError(path, f"no mp_rank_TT[_PPP]/{RANK_FILE} and no .metadata in "
                                       f"{folder.name}/", key=folder.name)
    return _read_ranks(path, folder, iteration, ranks, options)


def _iteration_folder(path: Path, root: Path) -> tuple[Path, str]:
    """The iteration folder to read and its name for reports."""
    if not (path / LATEST).is_file():
        return path, path.name
    latest = path / LATEST
    if latest.stat().st_size > MAX_LATEST_SIZE:
        raise CheckpointError(path, f"is over {MAX_LATEST_SIZE} bytes: not an iteration number",
                              key=LATEST)
    with opened(latest) as src:
        text = src.read(0, src.size).decode("utf-8", errors="replace").strip()
    if text == "release":
        name = "release"
    elif text.isdigit():
        name = f"iter_{int(text):07d}"
    else:
        raise CheckpointError(path, f"says {text!r}, not an iteration number or 'release'",
                              key=LATEST)
    folder = _inside(path / name, root, name)
    if not folder.is_dir():
        raise MissingRecordError(path, f"names iteration {text}, but there is no {name}/ folder",
                                 key=LATEST)
    return folder, name


def _inside(path: Path, root: Path, key: str) -> Path:
    """`path`, refused when a link takes it out of the save folder."""
    real = path.resolve()
    if not real.is_relative_to(root):
        raise UnsafeArchiveMemberError(root, "a symbolic link leading out of the checkpoint "
                                             "folder", key=key)
    return real


def _rank_folders(folder: Path) -> list[tuple[str, Path]]:
    """(rank folder name, its model_optim_rng.pt) in name order; a link out of `folder` is
    refused."""
    root = folder.resolve()
    out = []
    for sub in sorted(folder.iterdir()):
        if _RANK.fullmatch(sub.name) and (sub / RANK_FILE).is_file():
            out.append((sub.name, _inside(sub / RANK_FILE, root, f"{sub.name}/{RANK_FILE}")))
    return out


def _read_ranks(path: Path, folder: Path, iteration: str, ranks: dict[str, Path],
                options: ReadOptions) -> Loaded:
    from . import torch_zip

    models: dict[str, Any] = {}
    notes: list[str] = []
    args: Any = None
    for name, file in ranks.items():
        loaded = torch_zip.read(file, options)
        tree = loaded.tree
        model = tree.get("model") if isinstance(tree, dict) else None
        if not isinstance(model, dict):
            has = sorted(k for k in tree if isinstance(k, str) and k.startswith("model")) \
                if isinstance(tree, dict) else []
            what = (f"holds {', '.join(has)} (virtual pipeline stages), not one 'model'"
                    if has else "holds no 'model' state dict")
            raise CheckpointError(path, what, key=f"{folder.name}/{name}/{RANK_FILE}")
        models[name] = model
        args = args if args is not None else tree.get("args")
        notes += [f"{name}: {n}" for n in loaded.notes]
    meta = {"megatron": {"iteration": iteration, "ranks": sorted(ranks)}}
    described = (f"Megatron-LM checkpoint, {folder.name}/: {len(ranks)} model-parallel ranks; "
                 "optimizer and RNG states are not listed")
    if options.ranks:
        return Loaded(FORMAT, models, meta, [f"{described}; each rank listed (--ranks)", *notes],
                      root=())
    merged = tensor_parallel.merge_model_parallel(path.as_posix(), models, _gated(args),
                                                  what="Megatron-LM checkpoint")
    if isinstance(merged, str):
        return Loaded(FORMAT, models, meta, [f"{described}; each rank listed under its name, not "
                                             f"merged ({merged})", *notes], root=())
    return Loaded(FORMAT, merged.tree, meta, [described, *merged.notes, *notes], root=(),
                  sources=merged.sources)


def _gated(args: Any) -> bool:
    """The args' `swiglu` (Megatron-LM's gated MLP flag), from the pickled Namespace."""
    state = args.state if isinstance(args, Record) else None
    return isinstance(state, dict) and state.get("swiglu") is True
