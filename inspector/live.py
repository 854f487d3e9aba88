"""Apply a plan to a live `torch.nn.Module`: no file written, the same transfer report.

    report = inspector.load_into(model, "plan.yaml")                 # an approved plan
    report = inspector.load_into(model, "pretrained.pt", freeze=True)  # propose and load
    report = inspector.load_into(model.joint, "whole.nemo", prefix="joint.")  # one submodule

With a plan, only its approved rows load (its proposed ones too: the report marks them accepted
without review, as the module has no reviewer). With a checkpoint, the mapping is proposed on the
spot and every row it decides to copy loads; rows it flags (shape mismatch, ambiguous, vocabulary
change) keep the module's values and are listed as skipped. This replaces the usual
`load_partial_checkpoint` helper. torch is imported only here, lazily.

`prefix` loads a whole model's plan or checkpoint into one of its submodules: the plan's target
names (or, for a checkpoint, the names the submodule's tensors have in the whole model) are the
submodule's own names with `prefix` before them. Plan rows and source tensors outside the prefix
are ignored and counted in the report (`outside_prefix`); nothing under it is an error.
"""

from __future__ import annotations

import dataclasses
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
    refuse_ambiguous,
    refuse_partials,
)
from .errors import PlanError
from .hashing import hash_tensors
from .mapping.plan import Plan
from .model import Checkpoint
from .reader import open_checkpoint
from .report import TransferReport, Verification
from .tree import fold_names
from .writers.produce import materialize

_PLAN_SUFFIXES = (".yaml", ".yml")


def load_into(
    module: Any,
    plan_or_source: Any,
    *,
    freeze: bool = False,
    strict: bool = False,
    prefix: str = "",
    skip_ambiguous: bool = False,
) -> TransferReport:
    """Copy the plan's (or a proposal's) source tensors into `module`'s parameters and buffers.

    `strict`: refuse (errors.PartialTransferError, the module untouched) when any of its
    tensors would keep its init with no declared reason (see `apply`). `prefix`: `module` is
    the submodule of the plan's (or checkpoint's) model whose names start with it (`"joint."`).
    Ambiguous rows (equally good sources, none chosen) raise AmbiguousRowsError, the module
    untouched, unless `skip_ambiguous` leaves them at the module's values (see `apply`)."""
    import torch

    started = time.monotonic()
    target = open_checkpoint(module)
    prefix = prefix + "." if prefix and not prefix.endswith(".") else prefix
    plan, sources, outside = _plan(plan_or_source, target, prefix)
    skipped = refuse_ambiguous(plan, "load_into", True, skip_ambiguous)
    ins = Inputs(plan, sources, target, [])
    if strict:
        refuse_partials(ins, "load_into", skipped)
    report = plan_report(plan, target, True, None, skipped=skipped)
    report.partial_modules = partial_modules_of(ins)
    report.mode = "live"
    report.prefix, report.outside_prefix = prefix, outside
    _refuse_unknown([row.target for row in report.loaded], target, prefix)
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


def _plan(obj: Any, target: Checkpoint, prefix: str
          ) -> tuple[Plan, dict[str, Checkpoint], int]:
    """The plan for `target` (its names without `prefix`), its opened sources, and how many
    plan rows (or, proposing, source tensors) lie outside the prefix."""
    if isinstance(obj, (str, os.PathLike)) and str(obj).endswith(_PLAN_SUFFIXES):
        obj = Plan.load(obj)
    if isinstance(obj, Plan):
        sources = {ref.label: open_checkpoint(ref.path, root=ref.root or None)
                   for ref in obj.sources if ref.path}
        plan, outside = _under(obj, prefix)
        return plan, sources, outside
    from .mapping.propose import propose

    source = open_checkpoint(obj)
    outside = sum(not n.startswith(prefix) for n in source)
    if prefix and outside == len(source):
        raise PlanError(f"{source.label}: no tensor name starts with the prefix {prefix!r}")
    whole = dataclasses.replace(target, tensors={prefix + n: t for n, t in target.items()})
    plan, _ = _under(propose(source, whole), prefix)
    return plan, {plan.sources[0].label: source}, outside


def _refuse_unknown(names: list[str], target: Checkpoint, prefix: str) -> None:
    """PlanError (the module untouched) naming the rows the module has no tensor for."""
    unknown = [n for n in names if n not in target]
    if unknown:
        where = f" (the plan's {', '.join(fold_names([prefix + n for n in unknown]))})" \
            if prefix else ""
        raise PlanError(f"the module has no parameter or buffer "
                        f"{', '.join(fold_names(unknown))}{where}")


def _under(plan: Plan, prefix: str) -> tuple[Plan, int]:
    """`plan` with only the rows whose target starts with `prefix`, renamed without it (and only
    the unused source tensors under it); and the number of rows left out."""
    if not prefix:
        return plan, 0
    inside = {t[len(prefix):]: dataclasses.replace(e, target=t[len(prefix):])
              for t, e in plan.entries.items() if t.startswith(prefix)}
    if not inside:
        tops = sorted({t.split(".", 1)[0] + "." for t in plan.entries})
        raise PlanError(f"no row of the plan has a target under the prefix {prefix!r} "
                        f"(its targets start with {', '.join(tops[:8])})")
    unused = [u for u in plan.unused if u.name.startswith(prefix)]
    # unbound: the plan's checkpoints context knows the whole model's names, not these
    cut = dataclasses.replace(plan, entries=inside, unused=unused, _context=None, _layout=None)
    return cut, len(plan.entries) - len(inside)


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
