"""Generator of the `ckpt scan` corpus: malicious payload styles and benign checkpoints.

Run by the tests into tmp_path (`build(tmp_path)`); nothing here is ever loaded. Payloads are
built with `pickle.dumps` of objects whose `__reduce__` names the target (pickling runs nothing)
or written opcode by opcode where a style needs exact bytes (protocol 0 INST/OBJ, memoised
STACK_GLOBAL operands, obfuscated names). Every payload command is the harmless `true`.
"""

from __future__ import annotations

import argparse
import io
import os
import pickle
import posix
import runpy
import subprocess
import tarfile
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Item:
    name: str
    path: Path
    malicious: bool
    style: str


class Reduce:
    """Pickles as `func(*args)`: what an attacker's class does with __reduce__."""

    def __init__(self, func: Any, *args: Any) -> None:
        self.func, self.args = func, args

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return self.func, self.args


def _p0(text: str) -> bytes:
    return text.encode("latin-1")


# Hand-written opcode streams (protocol 0 unless noted).
RAW_PAYLOADS: dict[str, tuple[bytes, str]] = {
    "os_system_global": (_p0("cos\nsystem\n(S'true'\ntR."), "GLOBAL os.system + REDUCE"),
    "getattr_import_chain": (
        _p0("cbuiltins\ngetattr\n(cbuiltins\n__import__\n(S'os'\ntRS'system'\ntR(S'true'\ntR."),
        "builtins.getattr(builtins.__import__('os'), 'system')('true')",
    ),
    "stack_global_memo": (
        b"\x80\x04\x8c\x02os\x94\x8c\x06system\x940"  # push + memoise, then POP
        b"0h\x00h\x01\x93\x8c\x04true\x85R.",  # BINGET both back, STACK_GLOBAL
        "protocol 4 STACK_GLOBAL with operands fetched from the memo",
    ),
    "inst_opcode": (_p0("(S'true'\nios\nsystem\n."), "protocol 0 INST os.system"),
    "obj_opcode": (_p0("(cos\nsystem\nS'true'\no."), "protocol 0 OBJ with a GLOBAL class"),
    "py2_builtin_name": (_p0("c__builtin__\neval\n(S'1'\ntR."), "Python 2 module name __builtin__"),
    "operator_attrgetter": (_p0("c_operator\nattrgetter\n(S'system'\ntR."), "_operator.attrgetter"),
    "torch_load_recursive": (_p0("ctorch\nload\n(S'other.pt'\ntR."), "torch.load of another file"),
    "torch_hub_load": (_p0("ctorch.hub\nload\n(S'owner/repo'\nS'model'\ntR."), "torch.hub.load"),
    "whitespace_module": (
        _p0("cbuiltins \neval\n(S'1'\ntR."),
        "module name 'builtins ' with a space",
    ),
    "types_function": (_p0("ctypes\nFunctionType\n(S'x'\ntR."), "types.FunctionType"),
    "ctypes_cdll": (_p0("cctypes\nCDLL\n(S'libc.so.6'\ntR."), "ctypes.CDLL"),
    "dotted_stack_global": (
        b"\x80\x04\x8c\x05torch\x8c\x12serialization.load\x93\x8c\x01x\x85R.",
        "protocol 4 dotted name torch/serialization.load",
    ),
}

# Reduce-style payloads pickled by Python itself.
REDUCE_PAYLOADS: dict[str, tuple[Callable[[], Any], str]] = {
    "posix_system": (lambda: Reduce(posix.system, "true"), "__reduce__ to posix.system"),
    "subprocess_popen": (
        lambda: Reduce(subprocess.Popen, ["true"]),
        "__reduce__ to subprocess.Popen",
    ),
    "subprocess_check_output": (
        lambda: Reduce(subprocess.check_output, ["true"]),
        "__reduce__ to subprocess.check_output",
    ),
    "builtins_eval": (lambda: Reduce(eval, "1+1"), "__reduce__ to builtins.eval"),
    "builtins_exec": (lambda: Reduce(exec, "x=1"), "__reduce__ to builtins.exec"),
    "runpy_run_code": (lambda: Reduce(runpy._run_code, "x=1", {}), "__reduce__ to runpy._run_code"),
    "nested_pickle_loads": (
        lambda: Reduce(pickle.loads, pickle.dumps(Reduce(posix.system, "true"))),
        "pickle.loads of a nested payload",
    ),
    "functools_partial": (
        lambda: Reduce(partial(posix.system, "true")),
        "functools.partial chain",
    ),
}


def _state_dict(all_dtypes: bool = False) -> dict[str, Any]:
    import torch

    sd: dict[str, Any] = {
        "encoder.layers.0.weight": torch.randn(4, 3),
        "encoder.layers.0.bias": torch.zeros(4),
        "decoder.weight": torch.randn(2, 4),
    }
    if all_dtypes:
        for dt in (
            torch.float64,
            torch.float16,
            torch.bfloat16,
            torch.int64,
            torch.int32,
            torch.int16,
            torch.int8,
            torch.uint8,
            torch.bool,
            torch.complex64,
            torch.float8_e4m3fn,
            torch.float8_e5m2,
        ):
            sd[f"extra.{str(dt).removeprefix('torch.')}"] = torch.ones(3).to(dt)
    return sd


def _torch_save(obj: Any, path: Path, **kw: Any) -> Path:
    import torch

    torch.save(obj, path, **kw)
    return path


def _zip_replace(
    src: Path, dst: Path, members: dict[str, bytes], compress: set[str] = frozenset()
) -> Path:  # type: ignore[assignment]
    """Copy a torch zip, replacing (or adding) members."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            data = members.pop(info.filename, None)
            data = zin.read(info) if data is None else data
            method = zipfile.ZIP_DEFLATED if info.filename in compress else zipfile.ZIP_STORED
            zout.writestr(info.filename, data, compress_type=method)
        for name, data in members.items():
            zout.writestr(name, data)
    return dst


def _nemo(path: Path, weights: Path, mode: str = "w") -> Path:
    with tarfile.open(path, mode) as tf:
        for name, data in (
            ("./model_config.yaml", b"target: nemo.collections.asr.models.EncDecCTCModel\n"),
            ("./0a1b_tokenizer.model", b"sentencepiece model bytes"),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        tf.add(weights, arcname="./model_weights.ckpt")
    return path


def build(root: Path) -> list[Item]:
    """Write the whole corpus under `root`; return what each file is."""
    import torch

    root.mkdir(parents=True, exist_ok=True)
    items: list[Item] = []

    def add(name: str, path: Path, malicious: bool, style: str) -> None:
        items.append(Item(name, path, malicious, style))

    for name, (data, style) in RAW_PAYLOADS.items():
        p = root / f"{name}.pkl"
        p.write_bytes(data)
        add(name, p, True, style)
    for name, (make, style) in REDUCE_PAYLOADS.items():
        p = root / f"{name}.pkl"
        p.write_bytes(pickle.dumps(make(), protocol=2))
        add(name, p, True, style)

    evil = Reduce(posix.system, "true")
    evil_pt = _torch_save({"state_dict": _state_dict(), "hook": evil}, root / "evil_torch_zip.pt")
    add("torch_zip_payload", evil_pt, True, "payload in data.pkl of a torch.save'd zip")
    add(
        "nemo_payload",
        _nemo(root / "evil.nemo", evil_pt),
        True,
        "payload in a .nemo's model_weights.ckpt",
    )
    add(
        "nemo_targz_payload",
        _nemo(root / "evil_gz.nemo", evil_pt, "w:gz"),
        True,
        "payload in a tar.gz .nemo",
    )
    add(
        "legacy_payload",
        _torch_save(
            {"w": torch.ones(2), "hook": evil},
            root / "evil_legacy.pt",
            _use_new_zipfile_serialization=False,
        ),
        True,
        "payload in a legacy (pre-1.6) torch file",
    )
    benign_pt = _torch_save(_state_dict(), root / "plain.pt")
    with zipfile.ZipFile(benign_pt) as zf:
        prefix = zf.namelist()[0].split("/", 1)[0]
    add(
        "odd_folder_pickle",
        _zip_replace(
            benign_pt,
            root / "odd_folder.pt",
            {f"{prefix}/extra/data.pkl": RAW_PAYLOADS["os_system_global"][0]},
        ),
        True,
        "second data.pkl in an odd folder of the zip",
    )
    add(
        "compressed_data_pkl",
        _zip_replace(evil_pt, root / "compressed.pt", {}, {f"{prefix}/data.pkl"}),
        True,
        "deflate-compressed data.pkl with a payload",
    )
    polyglot = root / "polyglot.pt"
    polyglot.write_bytes(RAW_PAYLOADS["os_system_global"][0] + benign_pt.read_bytes())
    add("pickle_zip_polyglot", polyglot, True, "a pickle payload prepended to a valid torch zip")
    hf = root / "hf_model"
    hf.mkdir()
    (hf / "config.json").write_text('{"model_type": "bert"}')
    (hf / "pytorch_model.bin").write_bytes(evil_pt.read_bytes())
    add("hf_bin_payload", hf, True, "HF folder whose pytorch_model.bin carries a payload")
    dcp = root / "evil_dcp"
    dcp.mkdir()
    (dcp / ".metadata").write_bytes(pickle.dumps(evil, protocol=2))
    (dcp / "__0_0.distcp").write_bytes(b"\0" * 64)
    add("dcp_metadata_payload", dcp, True, "payload in a DCP .metadata pickle")

    _benign(root, add, benign_pt)
    return items


def _benign(root: Path, add: Callable[[str, Path, bool, str], None], plain_pt: Path) -> None:
    import numpy as np
    import torch

    add("plain_state_dict", plain_pt, False, "torch.save'd state dict")
    add(
        "all_dtypes",
        _torch_save(_state_dict(all_dtypes=True), root / "all_dtypes.pt"),
        False,
        "state dict with every common dtype",
    )
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters())
    model(torch.ones(1, 3)).sum().backward()
    opt.step()
    training = {
        "epoch": 3,
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "loss": 0.5,
        "np_scalar": np.float32(1.5),
        "np_array": np.arange(3),
    }
    add(
        "training_dict",
        _torch_save(training, root / "training.pt"),
        False,
        "training dict with optimizer state and numpy values",
    )
    fairseq = {"args": argparse.Namespace(arch="wav2vec2", lr=[0.1]), "model": _state_dict()}
    add(
        "fairseq_namespace",
        _torch_save(fairseq, root / "fairseq.pt"),
        False,
        "fairseq-style dict with argparse.Namespace",
    )
    add(
        "legacy_state_dict",
        _torch_save(_state_dict(), root / "legacy.pt", _use_new_zipfile_serialization=False),
        False,
        "legacy torch file",
    )
    add("nemo_tar", _nemo(root / "model.nemo", plain_pt), False, "NeMo-style tar")
    add("nemo_targz", _nemo(root / "model_gz.nemo", plain_pt, "w:gz"), False, "NeMo-style tar.gz")
    from safetensors.torch import save_file

    st = root / "model.safetensors"
    save_file({k: v.contiguous() for k, v in _state_dict().items()}, st)
    add("safetensors", st, False, "safetensors file")
    add("dcp_folder", _dcp(root / "dcp"), False, "torch.distributed.checkpoint folder")


def _dcp(path: Path) -> Path:
    import torch
    import torch.distributed.checkpoint as dcp

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dcp.save({"w": torch.ones(2, 2), "step": 7}, checkpoint_id=os.fspath(path), no_dist=True)
    return path
