"""`check()`: does a checkpoint (or a model built in code) fit a reference, a manifest or a plan?

Every violation is reported, not only the first. Names compared are the weights sub-tree's
tensor names. Scope: with `require` globs only matching names are checked (a glob matching
nothing is itself a violation); without, every name is. `allow_missing` globs (and a manifest's
`optional`) let a name be absent on either side. Dtypes of the same kind (float16 vs float32)
are a warning, a cast `load_state_dict` does silently; different kinds are an error.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from . import dtypes
from .errors import CheckpointError, PlanError
from .findings import ERROR, INFO, WARNING, Finding, Report
from .manifest import Manifest, TensorSpec, load_manifest
from .model import Checkpoint
from .reader import open_checkpoint


@dataclass
class CheckResult(Report):
    pass


@dataclass(frozen=True)
class _Side:
    label: str
    specs: dict[str, TensorSpec]


def check(
    ckpt: Any,
    *,
    against: Any = None,
    manifest: Manifest | str | os.PathLike[str] | None = None,
    plan: Any = None,
    require: Sequence[str] = (),
    allow_missing: Sequence[str] = (),
    values: bool = False,
    strict: bool = False,
) -> CheckResult:
    """Gate `ckpt` (path, Checkpoint, state dict or nn.Module) against `against` (same kinds) or a
    `manifest` (path or Manifest). `values` also requires equal content digests.

    With `plan` (path or Plan) `ckpt` is the plan's sources (see `plan_sources.bind_sources`:
    one item per source in the plan's order, `LABEL=PATH` items, or None for the paths the plan
    records) and `against` its target (None: the path the plan records). Each row is checked
    against its own source; a source whose header is not the plan's is a violation."""
    if plan is not None:
        if manifest is not None:
            raise ValueError("a plan is checked against its target (`against`), not a manifest")
        return _check_with_plan(ckpt, _load_plan(plan), against, require, strict)
    if (against is None) == (manifest is None):
        raise ValueError("check needs exactly one of `against` or `manifest`")
    actual = open_checkpoint(ckpt)
    result = CheckResult("check", [actual.label], strict=strict)
    if manifest is not None:
        m = manifest if isinstance(manifest, Manifest) else load_manifest(manifest)
        ref = _Side(m.path or "manifest", dict(m.tensors))
        allow_missing = [*allow_missing, *m.optional]
        here = _Side(actual.label, _specs(actual, values and _wants_digests(ref)))
    else:
        reference = open_checkpoint(against)
        result.targets.append(reference.label)
        ref = _Side(reference.label, _specs(reference, values))
        here = _Side(actual.label, _specs(actual, values))
    _compare(result, here, ref, require, allow_missing, values)
    return result


def _wants_digests(side: _Side) -> bool:
    return any(s.digest for s in side.specs.values())


def _specs(ckpt: Checkpoint, with_digests: bool) -> dict[str, TensorSpec]:
    digests: Mapping[str, Any] = {}
    if with_digests:
        if any(
            t.storage.source.buffer is None and t.storage.source.path is None for t in ckpt.values()
        ):
            raise CheckpointError(
                ckpt.label, "has tensors without data (meta device): --values needs real weights"
            )
        from .hashing import hash_tensors

        digests = hash_tensors(ckpt)
    return {
        name: TensorSpec(t.dtype, tuple(t.shape), str(digests[name]) if name in digests else None)
        for name, t in ckpt.items()
    }


def _matches(name: str, globs: Iterable[str]) -> bool:
    return any(fnmatchcase(name, g) for g in globs)


def _compare(
    result: CheckResult,
    here: _Side,
    ref: _Side,
    require: Sequence[str],
    allow_missing: Sequence[str],
    values: bool,
) -> None:
    add = _adder(result, here.label)
    names = list(dict.fromkeys([*ref.specs, *here.specs]))
    for pattern in require:
        if not any(fnmatchcase(n, pattern) for n in names):
            add(
                "require-unmatched",
                ERROR,
                pattern,
                "required pattern matches no tensor on either side",
            )
    scoped = [n for n in names if not require or _matches(n, require)]
    for name in scoped:
        a, b = here.specs.get(name), ref.specs.get(name)
        if a is None or b is None:
            present, absent = (ref.label, here.label) if a is None else (here.label, ref.label)
            spec = b if a is None else a
            assert spec is not None
            if _matches(name, allow_missing):
                add("allowed-missing", INFO, name, f"only in {present} (allowed)")
            else:
                code = "missing" if a is None else "unexpected"
                add(code, ERROR, name, f"not in {absent}; {present} has {_fmt(spec)}")
            continue
        result.checked += 1
        _compare_spec(add, name, a, b, ref.label, values)


def _compare_spec(
    add: Any, name: str, a: TensorSpec, b: TensorSpec, ref_label: str, values: bool
) -> None:
    if a.shape != b.shape:
        add(
            "shape-mismatch", ERROR, name, f"shape {list(a.shape)}, {ref_label} has {list(b.shape)}"
        )
    if a.dtype != b.dtype:
        same_kind = dtypes.get(a.dtype).kind == dtypes.get(b.dtype).kind
        code, sev = ("dtype-cast", WARNING) if same_kind else ("dtype-mismatch", ERROR)
        add(code, sev, name, f"dtype {a.dtype}, {ref_label} has {b.dtype}")
    if values and a.shape == b.shape and a.dtype == b.dtype:
        if b.digest is None:
            add("no-digest", ERROR, name, f"{ref_label} records no digest to compare values with")
        elif a.digest != b.digest:
            add("value-mismatch", ERROR, name, f"content digest differs from {ref_label}'s")


def _fmt(spec: TensorSpec) -> str:
    return f"{spec.dtype}{list(spec.shape)}"


def _adder(result: CheckResult, file: str) -> Any:
    def add(code: str, severity: str, key: str | None, message: str, **details: Any) -> None:
        result.findings.append(Finding(code, severity, file, key, message, details))

    return add


# --- plans ---------------------------------------------------------------------------------------


def _load_plan(plan: Any) -> Any:
    if isinstance(plan, (str, os.PathLike)):
        from .mapping import Plan

        return Plan.load(plan)
    return plan


def _check_with_plan(
    given: Any, plan: Any, against: Any, require: Sequence[str], strict: bool
) -> CheckResult:
    from .plan_sources import bind_sources, mismatches, open_ref

    sources = bind_sources(plan, given)
    target = open_checkpoint(against) if against is not None else open_ref(plan.target, None)
    result = CheckResult("check", [c.label for c in sources.values()], strict=strict)
    result.targets.append(target.label)
    for source, file, problem in mismatches(plan, sources):
        result.findings.append(Finding(
            "plan-source-mismatch", ERROR, file, None,
            f"given for the plan's source {source.label!r}: {problem}",
            {"label": source.label},
        ))
    here = {label: _Side(c.label, _specs(c, False)) for label, c in sources.items()}
    _check_plan(result, plan, here, _Side(target.label, _specs(target, False)), require)
    return result


def _check_plan(
    result: CheckResult, plan: Any, here: dict[str, _Side], ref: _Side, require: Sequence[str]
) -> None:
    """Every approved copy, and every target matching `require`, must still apply: its sources
    exist in the checkpoint given for their label, its target in `ref`, and the transformed
    shape and dtype fit."""
    add = _adder(result, ref.label)
    for pattern in require:
        if not any(fnmatchcase(t, pattern) for t in plan.entries):
            add("require-unmatched", ERROR, pattern, "required pattern matches no plan entry")
    for target, entry in plan.entries.items():
        required = bool(require) and _matches(target, require)
        approved = entry.status == "approved" and entry.effective == "copy"
        if required and entry.effective != "copy":
            add(
                "plan-not-mapped",
                ERROR,
                target,
                f"required, but the plan says {entry.effective} ({entry.status}: {entry.reason})",
            )
            continue
        if approved or required:
            result.checked += 1
            _check_entry(_adder(result, _files(entry, here)), entry, here, ref)


def _files(entry: Any, here: dict[str, _Side]) -> str:
    return ", ".join(dict.fromkeys(here[label].label for label, _ in entry.sources)) or "plan"


def _check_entry(add: Any, entry: Any, here: dict[str, _Side], ref: _Side) -> None:
    target = entry.target
    specs = []
    for label, name in entry.sources:
        side = here[label]
        spec = side.specs.get(name)
        if spec is None:
            add(
                "plan-source-missing",
                ERROR,
                target,
                f"source tensor '{name}' is not in {side.label} (the plan's source {label!r})",
            )
        specs.append(spec)
    goal = ref.specs.get(target)
    if goal is None:
        add("plan-target-missing", ERROR, target, f"not in {ref.label}")
    found = [s for s in specs if s is not None]
    if goal is None or len(found) != len(specs):
        return
    shapes = [s.shape for s in found]
    kinds = [s.dtype for s in found]
    try:
        for t in entry.transform:
            shapes, kinds = [t.out_shape(shapes)], [t.out_dtype(kinds)]
    except (PlanError, ValueError) as e:
        add("plan-transform-error", ERROR, target, f"transform does not apply: {e}")
        return
    if len(shapes) != 1:
        add(
            "plan-shape-mismatch",
            ERROR,
            target,
            f"{len(shapes)} sources and no transform joins them",
        )
        return
    _compare_spec(add, target, TensorSpec(kinds[0], tuple(shapes[0])), goal, ref.label, False)


# --- models built in code -------------------------------------------------------------------------


def load_model(spec: str) -> tuple[Any, list[str]]:
    """`pkg.module:build_model` -> (the built module, notes). Built on the meta device when the
    factory allows it (no weights allocated), else on the CPU. Imports torch (only here)."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise CheckpointError(spec, "expected 'package.module:factory'")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # like `python -m`: the user's project is importable
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as e:
        raise CheckpointError(spec, f"cannot import the model factory: {e}") from None
    import torch

    try:
        with torch.device("meta"):
            return factory(), []
    except Exception as e:  # a factory that cannot run on meta (reads a file, calls .item())
        note = f"built on the CPU: the factory failed on the meta device ({type(e).__name__}: {e})"
    try:
        return factory(), [note]
    except Exception as e:
        raise CheckpointError(spec, f"the model factory raised {type(e).__name__}: {e}") from None


def check_model(spec: str, **kwargs: Any) -> CheckResult:
    """`check()` for a model built by `pkg.module:factory`; its state dict is the checked side."""
    model, notes = load_model(spec)
    ckpt = open_checkpoint(model)
    ckpt.path = Path(spec)
    result = check(ckpt, **kwargs)
    for note in notes:
        result.findings.append(Finding("model-built-on-cpu", INFO, spec, None, note))
    return result
