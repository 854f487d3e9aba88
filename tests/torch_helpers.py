"""Shared by the torch reader tests: save with torch, open with inspector, compare tensors."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import torch

import inspector
from inspector.containers import dotted

# Every dtype torch.save can write. The legacy format also writes the dtypes that have no typed
# storage class, but torch itself cannot load those back from it (so we compare with the source).
ALL_DTYPES = [
    torch.float64, torch.float32, torch.float16, torch.bfloat16,
    torch.float8_e4m3fn, torch.float8_e5m2, torch.float8_e4m3fnuz, torch.float8_e5m2fnuz,
    torch.float8_e8m0fnu,
    torch.int64, torch.int32, torch.int16, torch.int8,
    torch.uint64, torch.uint32, torch.uint16, torch.uint8,
    torch.bool, torch.complex32, torch.complex64, torch.complex128,
]  # fmt: skip


def sample(dtype: torch.dtype, shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    n = int(np.prod(shape)) if shape else 1
    if dtype == torch.bool:
        return (torch.randint(0, 2, (n,), generator=g) == 1).reshape(shape)
    if dtype.is_complex:
        return torch.randn(n, dtype=torch.complex64, generator=g).to(dtype).reshape(shape)
    if dtype.is_floating_point:
        return (torch.randn(n, generator=g) * 4).to(dtype).reshape(shape)
    return torch.randint(0, 100, (n,), generator=g).to(dtype).reshape(shape)


def save(obj: Any, path: Path, legacy: bool) -> Path:
    torch.save(obj, path, _use_new_zipfile_serialization=not legacy)
    return path


def torch_tensors(obj: Any, prefix: tuple[Any, ...] = ()) -> dict[str, torch.Tensor]:
    """Dotted name -> tensor, walking dicts, lists, tuples and Namespaces like inspector does."""
    out: dict[str, torch.Tensor] = {}
    if isinstance(obj, torch.Tensor):
        out[dotted(prefix)] = obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            out.update(torch_tensors(v, (*prefix, k)))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            out.update(torch_tensors(v, (*prefix, i)))
    return out


def raw_bytes(t: torch.Tensor) -> bytes:
    return t.detach().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


def torch_load(path: Path) -> Any:
    with torch.serialization.safe_globals([argparse.Namespace]):
        return torch.load(path, weights_only=True)


def assert_same_tensors(path: Path, expected_obj: Any) -> inspector.Checkpoint:
    """Open `path` with inspector (whole tree as root) and compare every tensor with torch's."""
    ckpt = inspector.open(path, root="")
    expected = torch_tensors(expected_obj)
    assert list(ckpt.tensors) == list(expected)
    for name, t in expected.items():
        info = ckpt[name]
        assert info.dtype == str(t.dtype).removeprefix("torch."), name
        assert info.shape == tuple(t.shape), name
        assert info.strides == tuple(t.stride()), name
        assert info.storage_offset == t.storage_offset(), name
        assert info.is_parameter == isinstance(t, torch.nn.Parameter), name
        assert info.requires_grad == t.requires_grad, name
        got = np.ascontiguousarray(ckpt.array(name))
        assert got.tobytes() == raw_bytes(t), name
        if t.dtype in (torch.float32, torch.float64, torch.int64, torch.complex64):
            np.testing.assert_array_equal(got, t.detach().numpy())
    _assert_same_sharing(ckpt, expected)
    return ckpt


def _assert_same_sharing(ckpt: inspector.Checkpoint, expected: dict[str, torch.Tensor]) -> None:
    by_ptr: dict[int, set[str]] = {}
    for name, t in expected.items():
        if t.untyped_storage().nbytes():
            by_ptr.setdefault(t.untyped_storage().data_ptr(), set()).add(name)
    want = sorted(sorted(g) for g in by_ptr.values() if len(g) > 1)
    assert sorted(sorted(g) for g in ckpt.tied_groups()) == want


# Checkpoint shapes seen in the wild, built from real torch objects. ------------------------------


def all_dtypes_case(legacy: bool) -> dict[str, Any]:
    sd: dict[str, Any] = {}
    for i, dt in enumerate(ALL_DTYPES):
        name = str(dt).removeprefix("torch.")
        sd[f"{name}.matrix"] = sample(dt, (3, 4), seed=i)
        sd[f"{name}.scalar"] = sample(dt, (), seed=100 + i)
        sd[f"{name}.empty"] = sample(dt, (0, 5), seed=0)
    return sd


def views_case(legacy: bool) -> dict[str, Any]:
    base = sample(torch.float32, (6, 8), seed=1)
    ints = sample(torch.int16, (4, 5, 6), seed=2)
    return {
        "transposed": base.t(),
        "sliced": base[2:, 3:],  # storage offset 19, strides (8, 1)
        "stepped": base[::2, 1::3],
        "expanded": torch.arange(3.0).expand(4, 3),  # stride 0
        "permuted": ints.permute(2, 0, 1),
        "narrow_bf16": sample(torch.bfloat16, (10,), seed=3)[4:7],
        "base": base,
    }


def tied_case(legacy: bool) -> dict[str, Any]:
    emb = torch.nn.Parameter(sample(torch.float16, (10, 4), seed=4))
    other = sample(torch.float32, (5,), seed=5)
    return {
        "embed.weight": emb,
        "lm_head.weight": emb,  # tied weights: two names, one storage
        "x": other,
        "x_view": other[1:4],
    }


def parameters_case(legacy: bool) -> dict[str, Any]:
    lin = torch.nn.Linear(3, 2)
    frozen = torch.nn.Parameter(torch.ones(2), requires_grad=False)
    return {
        "weight": lin.weight,
        "bias": lin.bias,
        "frozen": frozen,
        "grad_tensor": torch.zeros(3).requires_grad_(),
    }


def _module_state_dict() -> dict[str, Any]:
    model = torch.nn.Sequential(
        torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3), torch.nn.Linear(3, 2)
    )
    return model.state_dict()


def fairseq_case(legacy: bool) -> dict[str, Any]:
    args = argparse.Namespace(arch="wav2vec2", encoder_layers=2, lr=[0.0005], fp16=True)
    return {
        "args": args,
        "model": _module_state_dict(),
        "extra_state": {"epoch": 3},
        "optimizer_history": [{"criterion_name": "ctc", "num_updates": 10}],
    }


def lightning_case(legacy: bool) -> dict[str, Any]:
    sd = {f"model.{k}": v for k, v in _module_state_dict().items()}
    opt_state = {
        "state": {0: {"step": torch.tensor(3.0), "exp_avg": torch.zeros(3, 4)}},
        "param_groups": [{"lr": 0.1, "params": [0]}],
    }
    return {
        "epoch": 2,
        "global_step": 100,
        "pytorch-lightning_version": "2.4.0",
        "state_dict": sd,
        "optimizer_states": [opt_state],
        "lr_schedulers": [],
        "hyper_parameters": {"d_model": 4, "name": "x"},
    }


def training_case(legacy: bool) -> dict[str, Any]:
    model = torch.nn.Linear(4, 2)
    opt = torch.optim.Adam(model.parameters())
    model(torch.ones(1, 4)).sum().backward()
    opt.step()
    return {"epoch": 5, "model": model.state_dict(), "optimizer": opt.state_dict(), "loss": 0.25}


CASES = {
    "all_dtypes": all_dtypes_case,
    "views": views_case,
    "tied": tied_case,
    "parameters": parameters_case,
    "fairseq": fairseq_case,
    "lightning": lightning_case,
    "training": training_case,
}

# Where open() should find the weights, per case.
ROOTS = {"fairseq": ("model",), "lightning": ("state_dict",), "training": ("model",)}
