"""The folder the documentation's examples run in: every file name the docs use, made from the
demo pair (`inspector.demo.build_demo`) the way a user's files would be made (torch.save,
safetensors, torch.distributed.checkpoint), plus `mypkg.models:build_model`, the model factory
the CI examples name.

Python blocks run with `model` bound to a live module of the target's architecture (what a user
holds when they call `load_into`)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import torch

import inspector
from inspector.demo import build_demo

# A model factory like a user's: builds an nn.Module with the demo target's state dict shapes.
MYPKG_MODELS = '''
import torch
import inspector

TARGET = "rnnt_bpe.nemo"


def build_model(cfg=None, like=TARGET):
    """An nn.Module whose state dict has `like`'s names and shapes (zeros)."""
    ckpt = inspector.open(like)
    root = torch.nn.Module()
    for name in ckpt:
        *path, leaf = name.split(".")
        owner = root
        for part in path:
            if not hasattr(owner, part):
                owner.add_module(part, torch.nn.Module())
            owner = getattr(owner, part)
        info = ckpt[name]
        value = torch.zeros(info.shape, dtype=getattr(torch, info.dtype))
        if value.is_floating_point():
            owner.register_parameter(leaf, torch.nn.Parameter(value))
        else:
            owner.register_buffer(leaf, value)
    return root
'''

PYTHON_PRELUDE = "from mypkg.models import build_model\ncfg = None\nmodel = build_model(cfg)\n"


def _tensors(path: Path) -> dict[str, torch.Tensor]:
    ckpt = inspector.open(path)
    return {n: torch.from_numpy(np.array(ckpt.array(n))) for n in ckpt}


def build_workspace(folder: Path) -> Path:
    demo = build_demo(folder)
    char, bpe = demo.source, demo.target
    for name in ("old.pt", "model.pt", "a.pt", "plain.pt", "before.pt", "src.pt"):
        shutil.copy(char, folder / name)
    for name in ("new.nemo", "model.nemo", "pretrained.nemo", "tgt.nemo", "other.nemo",
                 "char_rnnt.nemo", "bpe_rnnt.nemo", "src.nemo", "target.nemo"):
        shutil.copy(bpe, folder / name)

    target = _tensors(bpe)
    source = _tensors(char)
    after = dict(source)
    first = next(iter(after))
    after[first] = after[first] + 1
    torch.save(target, folder / "new.pt")
    torch.save(target, folder / "ref.pt")
    torch.save(target, folder / "pretrained.pt")
    torch.save({"epoch": 3, "global_step": 10, "state_dict": source}, folder / "model.ckpt")
    _training_dict(folder / "train.pt", source)
    _training_dict(folder / "finetuned.pt", after)
    torch.save({f"module.{n}": t for n, t in source.items()}, folder / "ddp.pt")
    torch.save({"state_dict": after}, folder / "after.pt")
    torch.save({"state_dict": after}, folder / "b.pt")
    import safetensors.torch

    safetensors.torch.save_file({n: t.contiguous() for n, t in source.items()},
                                folder / "b.safetensors")
    for module in ("encoder", "decoder"):
        part = {n[len(module) + 1:]: t for n, t in source.items() if n.startswith(module + ".")}
        torch.save(part, folder / f"Jasper{module.capitalize()}.pt")
        torch.save(part, folder / f"{module[:3]}.pt")
    _hf_folder(folder / "hf_model", target)
    torch.save({"args": None, "model": source}, folder / "fairseq.pt")
    _dcp_folder(folder / "dcp_checkpoint", target)
    inspector.propose(str(folder / "old.pt"), str(folder / "new.nemo")).save(folder / "plan.yaml")
    downloads = folder / "downloads"
    downloads.mkdir()
    shutil.copy(char, downloads / "rnnt_char.pt")
    shutil.copy(folder / "b.safetensors", downloads / "model.safetensors")
    package = folder / "mypkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "models.py").write_text(MYPKG_MODELS)
    return folder


def _training_dict(path: Path, weights: dict[str, torch.Tensor]) -> None:
    """What a training script saves: weights, an Adam state after one step, scalars."""
    params = [torch.nn.Parameter(t.clone()) for t in weights.values() if t.is_floating_point()]
    opt = torch.optim.Adam(params)
    for p in params:
        p.grad = torch.ones_like(p)
    opt.step()
    torch.save({"epoch": 3, "model": weights, "optimizer": opt.state_dict(),
                "loss": torch.tensor(0.25)}, path)


def _hf_folder(folder: Path, tensors: dict[str, torch.Tensor]) -> None:
    import json

    import safetensors.torch

    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "demo"}))
    safetensors.torch.save_file({n: t.contiguous() for n, t in tensors.items()},
                                folder / "model.safetensors")


def _dcp_folder(folder: Path, tensors: dict[str, torch.Tensor]) -> None:
    import warnings

    import torch.distributed.checkpoint as dcp

    with warnings.catch_warnings():  # "torch.distributed is disabled ... single process": intended
        warnings.simplefilter("ignore", UserWarning)
        dcp.save(dict(tensors), checkpoint_id=str(folder), no_dist=True)
