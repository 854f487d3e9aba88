"""Apply a plan to a live `torch.nn.Module`: no file written, the same transfer report.

    report = inspector.load_into(model, "plan.yaml")                 # an approved plan
    report = inspector.load_into(model, "pretrained.pt", freeze=True)  # propose and load

With a plan, only its approved rows load (its proposed ones too: the report marks them accepted
without review, as the module has no reviewer). With a checkpoint, the mapping is proposed on the
spot and every row it decides to copy loads; rows it flags (shape mismatch, ambiguous, vocabulary
change) keep the module's values and are listed as skipped. This replaces the usual
`load_partial_checkpoint` helper. torch is imported only here, lazily.
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np

from .applying import (
    Inputs,
    _expected,
    entry_value,
    partial_modules_of,
    plan_report,
    refuse_partials,
)
from .errors import PlanError
from .hashing import hash_tensors
from .mapping.plan import Plan
from .model import Checkpoint
from .reader import open_checkpoint
from .report import TransferReport, Verification
from .writers.produce import materialize

_PLAN_SUFFIXES = (".yaml", ".yml")


def load_into(
    module: Any, plan_or_source: Any, *, freeze: bool = False, strict: bool = False
) -> TransferReport:
    """Copy the plan's (or a proposal's) source tensors into `module`'s parameters and buffers.

    `strict`: refuse (errors.PartialTransferError, the module untouched) when any of its
    tensors would keep its init with no declared reason (see `apply`)."""
    import torch

    started = time.monotonic()
    target = open_checkpoint(module)
    plan, sources = _plan(plan_or_source, target)
    ins = Inputs(plan, sources, target, [])
    if strict:
        refuse_partials(ins, "load_into")
    report = plan_report(plan, target, True, None)
    report.partial_modules = partial_modules_of(ins)
    report.mode = "live"
    state = module.state_dict(keep_vars=True)
    values = {row.target: entry_value(plan.entries[row.target], sources, target)
              for row in report.loaded}
    with torch.no_grad():
        for name, value in values.items():
            if name not in state:
                raise PlanError(f"the module has no parameter or buffer {name!r}")
            dest = state[name]
            if tuple(value.shape) != tuple(dest.shape):
                raise PlanError(f"{name}: the plan gives shape {list(value.shape)}, the module "
                                f"holds {list(dest.shape)}")
            dest.copy_(_as_tensor(torch, materialize(value, value.dtype, tuple(value.shape)),
                                  value.dtype))
            if freeze and isinstance(dest, torch.nn.Parameter):
                dest.requires_grad_(False)
                report.frozen.append(name)
    report.verification = _verify(module, ins, values)
    report.seconds = time.monotonic() - started
    return report


def _plan(obj: Any, target: Checkpoint) -> tuple[Plan, dict[str, Checkpoint]]:
    if isinstance(obj, (str, os.PathLike)) and str(obj).endswith(_PLAN_SUFFIXES):
        obj = Plan.load(obj)
    if isinstance(obj, Plan):
        sources = {ref.label: open_checkpoint(ref.path, root=ref.root or None)
                   for ref in obj.sources if ref.path}
        return obj, sources
    from .mapping.propose import propose

    source = open_checkpoint(obj)
    plan = propose(source, target)
    return plan, {plan.sources[0].label: source}


def _as_tensor(torch: Any, array: np.ndarray, dtype: str) -> Any:
    raw = np.ascontiguousarray(array).reshape(-1).view(np.uint8)
    t = torch.frombuffer(bytearray(raw.tobytes()), dtype=getattr(torch, dtype)) if raw.size else \
        torch.empty(0, dtype=getattr(torch, dtype))
    return t.reshape(array.shape)


def _verify(module: Any, ins: Inputs, values: dict[str, Any]) -> Verification:
    started = time.monotonic()
    result = Verification()
    after = open_checkpoint(module)
    expected = _expected(ins, values, None)
    got = hash_tensors(after, list(expected))
    for name, d in expected.items():
        result.checked += 1
        if got[name] == d:
            result.replaced_ok += 1
        else:
            result.mismatches.append(f"{name}: digest {got[name]} expected {d}")
    result.seconds = time.monotonic() - started
    return result
