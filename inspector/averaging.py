"""Average checkpoints tensor by tensor (`ckpt average`), streamed, written atomically, verified.

    report = inspector.average(["epoch-28.pt", "epoch-29.pt", "epoch-30.pt"], "avg.pt")
    print(report.to_text())

Every weight of the output is the (weighted) mean of the same tensor in every input, computed by
the C++ core in double and rounded once to the tensor's dtype (`writers.averaged`). Integer
tensors follow icefall's `average_checkpoints` (the floor of the mean, `//`) unless `ints` says
`first` or `last`; bool tensors take the first input's values. Names, shapes and dtypes must agree
across the inputs (MismatchError naming the tensor and the files, nothing written).

The output is the first input (or `like`) with its weights replaced: everything else in it (a
.nemo's config and artifacts, a Lightning checkpoint's other entries) is kept as it is. When its
layout allows, the first input is cloned and patched in place, as `apply` does.

`from_averaged=True` takes two icefall checkpoints, START and END, and computes what icefall's
`average_checkpoints_with_averaged_model` (--use-averaged-model) does: the mean of the model over
the batches between them, (avg_end * n_end - avg_start * n_start) / (n_end - n_start), from the
running averages under `model_avg`, where n is `batch_idx_train` rounded down to a multiple of
START's `average_period`. Integer tensors keep END's values there, as icefall leaves them. The
result is written into END's `model` (END's other entries kept).
"""

from __future__ import annotations

import copy
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import dtypes, humanize
from .applying import guard_globals, output_root, output_size, tied_followers, writer_options
from .errors import CheckpointError, MismatchError, WriteError
from .hashing import Digest
from .io.atomic import atomic_path, start_writeback
from .model import Checkpoint, TensorInfo
from .reader import open_checkpoint
from .tree import fold_names
from .writers import SAME_AS_TARGET, choose_format, writer
from .writers.averaged import AverageValue
from .writers.build import build_output
from .writers.patch import patch, patch_target, patchable
from .writers.produce import Producer, View, ViewValue
from .writers.stream import default_threads
from .writers.verify import mismatches, value_digest, written_digests

Progress = Callable[[int, int], None]
Input = str | os.PathLike[str] | Checkpoint
INT_RULES = ("mean", "first", "last")
MAX_SPREAD = 900  # log2 of the largest weight over the smallest nonzero one
# icefall's checkpoint keys (icefall/checkpoint.py, average_checkpoints_with_averaged_model)
ICEFALL_AVG, ICEFALL_MODEL = "model_avg", "model"
ICEFALL_STEPS, ICEFALL_PERIOD = "batch_idx_train", "average_period"


@dataclass
class Averaging:
    """What `average` wrote, for the report (`to_text`, `to_json`)."""

    inputs: list[str]
    output: str
    format: str = ""
    mode: str = ""  # "patch" (the first input cloned, its weights overwritten) or "rewrite"
    weights: list[float] = field(default_factory=list)
    divisor: float = 0.0
    tensors: int = 0  # float tensors averaged
    int_tensors: int = 0
    int_rule: str = "mean"
    bool_tensors: int = 0  # bool tensors (the first input's values)
    tied: int = 0  # tensors tied to an averaged one (they follow it)
    kept: list[str] = field(default_factory=list)  # non-weight entries kept as they are
    from_averaged: dict[str, Any] | None = None
    nbytes: int = 0  # the averaged tensors' logical bytes
    bytes_written: int = 0
    verified: int = 0
    mismatches: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_text(self) -> str:
        how = (f"icefall model_avg from {self.inputs[0]} to {self.inputs[1]} "
               f"(batch_idx_train {self.from_averaged['n_start']} -> "
               f"{self.from_averaged['n_end']})" if self.from_averaged
               else f"{len(self.inputs)} inputs" + (
                   f", weights {', '.join(f'{w:g}' for w in self.weights)}"
                   if len(set(self.weights)) > 1 else ""))
        ints = {"mean": "floor of the mean", "first": "first input's values",
                "last": "last input's values"}[self.int_rule]
        lines = [
            f"averaged {how} -> {self.output} ({self.format}, {self.mode})",
            f"tensors: {self.tensors} averaged, {self.int_tensors} integer ({ints}), "
            f"{self.bool_tensors} bool (first input's values), {self.tied} tied",
            f"kept: {len(self.kept)} non-weight entries"
            + (f" ({', '.join(self.kept[:8])}{', ...' if len(self.kept) > 8 else ''})"
               if self.kept else ""),
            f"{humanize.nbytes(self.nbytes)} of weights, {humanize.nbytes(self.bytes_written)} "
            f"written in {self.seconds:.2f} s",
            f"verified: OK: {self.verified} tensors match the computed averages by content digest",
        ]
        return "\n".join(lines + [f"note: {n}" for n in self.notes])

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)


@dataclass
class _Job:
    sources: list[Checkpoint]
    target: Checkpoint
    weights: list[float]
    divisor: float
    rule: str


def average(
    inputs: Sequence[Input],
    out: str | os.PathLike[str],
    *,
    weights: Sequence[float] | None = None,
    root: str | None = None,
    ints: str | None = None,
    from_averaged: bool = False,
    like: Input | None = None,
    format: str | None = None,
    threads: int | None = None,
    progress: Progress | None = None,
    keep_unknown_globals: bool = False,
) -> Averaging:
    """Write `out`: the mean of `inputs` (paths, `PATH::ROOT`, or open Checkpoints) tensor by
    tensor, in the first input's container (or `like`'s). `weights`: one per input, relative
    (the mean divides by their sum). `root`: the weights sub-tree of every input given as a
    path without one. `ints`: "mean" (floor, icefall's `//`), "first" or "last".
    `from_averaged`: inputs are icefall's START and END checkpoints (see the module doc).
    MismatchError when the inputs disagree, WriteError when the output does not verify; either
    way nothing is written."""
    started = time.monotonic()
    check_arguments(len(inputs), weights, ints, from_averaged, root)
    report = Averaging([_label(i) for i in inputs], str(out))
    if from_averaged:
        job = _icefall_job(inputs, like, ints, report)
    else:
        job = _plain_job(inputs, like, weights, root, ints)
    check_agree(job.sources, job.target)
    report.weights, report.divisor, report.int_rule = job.weights, job.divisor, job.rule
    values = _values(job, report)
    _write(job, values, out, report, format=format, threads=threads, progress=progress,
           keep_unknown_globals=keep_unknown_globals)
    report.seconds = time.monotonic() - started
    return report


def check_arguments(n: int, weights: Sequence[float] | None, ints: str | None,
                    from_averaged: bool, root: str | None = None) -> None:
    """ValueError for arguments that cannot work together, before any file is opened."""
    if ints is not None and ints not in INT_RULES:
        raise ValueError(f"ints must be one of {', '.join(INT_RULES)}, not {ints!r}")
    if from_averaged:
        if n != 2 or weights is not None or root is not None:
            raise ValueError("--from-averaged takes two inputs, START and END, and no weights "
                             f"or root (it reads {ICEFALL_AVG!r} and writes {ICEFALL_MODEL!r})")
        return
    if n < 2:
        raise ValueError(f"average needs two inputs or more, got {n}")
    if weights is not None:
        if len(weights) != n:
            raise ValueError(f"{len(weights)} weights for {n} inputs: give one per input")
        if not all(math.isfinite(w) for w in weights) or not math.isfinite(sum(weights)):
            raise ValueError(f"weights must be finite numbers, not {list(weights)}")
        if sum(weights) <= 0 or any(w < 0 for w in weights):
            raise ValueError(f"weights must be >= 0 with a positive sum, not {list(weights)}")
        if min((w for w in weights if w > 0), default=1.0) < max(weights) * 2.0 ** -MAX_SPREAD:
            raise ValueError(f"weights span more than 2^{MAX_SPREAD}: the small ones would not "
                             f"count in double precision, not {list(weights)}")


def _scaled(weights: list[float]) -> list[float]:
    """Extreme weights (the largest outside 2^-500..2^500) times a power of two (exact) that
    brings the largest to [0.5, 1): the same mean, with no weight or sum near overflow or
    subnormal. Ordinary weights are kept (integer weights keep integer tensors' sums exact)."""
    largest = max(weights)
    if 2.0 ** -500 <= largest <= 2.0 ** 500:
        return weights
    exponent = math.frexp(largest)[1]
    return [math.ldexp(w, -exponent) for w in weights]


def _label(i: Input) -> str:
    return i.label if isinstance(i, Checkpoint) else os.fspath(i)


def _open(i: Input, root: str | None = None) -> Checkpoint:
    if isinstance(i, Checkpoint):
        return i if root is None else rooted(i, root)
    has_root = "::" in os.fspath(i)
    return open_checkpoint(i, root=None if has_root else root)


def _plain_job(inputs: Sequence[Input], like: Input | None, weights: Sequence[float] | None,
               root: str | None, ints: str | None) -> _Job:
    sources = [_open(i, root) for i in inputs]
    w = [1.0] * len(sources) if weights is None else _scaled([float(x) for x in weights])
    target = _open(like) if like is not None else sources[0]
    return _Job(sources, target, w, sum(w), ints or "mean")


def _icefall_job(inputs: Sequence[Input], like: Input | None, ints: str | None,
                 report: Averaging) -> _Job:
    start, end = (_open(i) for i in inputs)
    period = _icefall_int(start, ICEFALL_PERIOD)
    if period <= 0:
        raise CheckpointError(start.path, f"{ICEFALL_PERIOD} is {period}; it must be positive",
                              key=ICEFALL_PERIOD)
    n_start = _icefall_int(start, ICEFALL_STEPS) // period * period
    n_end = _icefall_int(end, ICEFALL_STEPS) // period * period
    if n_end - n_start <= 0:
        raise CheckpointError(end.path, f"{ICEFALL_STEPS} rounded to {ICEFALL_PERIOD} {period} "
                              f"is {n_end}, not past START's {n_start}: give START before END",
                              key=ICEFALL_STEPS)
    report.from_averaged = {"n_start": n_start, "n_end": n_end, "average_period": period}
    sources = [_icefall_root(c, ICEFALL_AVG) for c in (start, end)]
    target = _open(like) if like is not None else _icefall_root(end, ICEFALL_MODEL)
    return _Job(sources, target, [float(-n_start), float(n_end)], float(n_end - n_start),
                ints or "last")


def _icefall_int(c: Checkpoint, key: str) -> int:
    tree = c.tree
    value = tree.get(key) if isinstance(tree, dict) else None
    if not isinstance(value, int) or isinstance(value, bool):
        what = "missing" if value is None else f"{type(value).__name__}, not an int"
        raise CheckpointError(c.path, f"{what}: --from-averaged needs icefall's {key!r} (an int "
                              "written by save_checkpoint's params)", key=key)
    return value


def _icefall_root(c: Checkpoint, key: str) -> Checkpoint:
    if not isinstance(c.tree, dict) or not isinstance(c.tree.get(key), dict):
        raise CheckpointError(c.path, f"no {key!r} state dict: --from-averaged needs icefall "
                              f"checkpoints saved with {key!r}", key=key)
    return rooted(c, key)


def rooted(c: Checkpoint, root: str) -> Checkpoint:
    """`c` with another weights root, as a new handle on the same files (setting a root on `c`
    itself would change it for every other user: END's `model` and `model_avg` are both read)."""
    return open_checkpoint(copy.copy(c), root=root)


def check_agree(sources: Sequence[Checkpoint], target: Checkpoint) -> None:
    """MismatchError unless every source (and the target) holds the same tensor names with the
    same shapes, and the sources the same dtypes."""
    first = sources[0]
    for other in [*sources[1:], target]:
        for a, b in ((first, other), (other, first)):
            missing = [n for n in a.tensors if n not in b.tensors]
            if missing:
                folded = fold_names(missing)
                shown = ", ".join(folded[:8]) + (f", ... ({len(missing)} in all)"
                                                 if len(folded) > 8 else "")
                raise MismatchError(b.path, f"lacks tensor(s) {shown} that {a.label} holds; "
                                    "every input must hold the same tensors", key=missing[0])
    for other in sources[1:]:
        for name, t in first.tensors.items():
            o = other.tensors[name]
            if o.shape != t.shape or o.dtype != t.dtype:
                raise MismatchError(other.path, f"{o.dtype}{list(o.shape)} here, {t.dtype}"
                                    f"{list(t.shape)} in {first.label}", key=name)
    for name, t in first.tensors.items():
        o = target.tensors[name]
        if o.shape != t.shape:
            raise MismatchError(target.path, f"shape {list(o.shape)} here, {list(t.shape)} in "
                                f"{first.label}", key=name)


def _values(job: _Job, report: Averaging) -> dict[str, Producer]:
    """One producer per target tensor (tied twins: only the first; they follow it, and must be
    tied in every input too, else their means differ)."""
    leads: dict[tuple[str, tuple[Any, ...]], str] = {}
    values: dict[str, Producer] = {}
    for name, t in job.target.tensors.items():
        key = (t.storage.key, (t.shape, t.strides, t.storage_offset, t.dtype))
        lead = leads.get(key)
        if lead is not None:
            _check_tied(job, lead, name)
            continue
        leads[key] = name
        values[name] = _value(job, name, t, report)
    return values


def _check_tied(job: _Job, lead: str, twin: str) -> None:
    """MismatchError unless `twin` is the same tensor as `lead` (one storage, one view) in every
    input: the output holds one tensor for both, so their means must be one mean."""
    for c in job.sources:
        a, b = c.tensors[lead], c.tensors[twin]
        if a.storage.key != b.storage.key or View.of(a) != View.of(b):
            raise MismatchError(c.path, f"{twin} and {lead} are one tensor (tied) in "
                                f"{job.target.label} but two here: their means differ and "
                                "cannot stay tied; average inputs tied alike, or untie the "
                                "target (--like a file where they are two tensors)", key=twin)


def _value(job: _Job, name: str, t: TensorInfo, report: Averaging) -> Producer:
    parts = [(c, c.tensors[name]) for c in job.sources]
    kind = dtypes.get(parts[0][1].dtype).kind
    report.nbytes += t.nbytes
    if kind == "b" or (kind in "iu" and job.rule != "mean"):
        if kind == "b":
            report.bool_tensors += 1
        else:
            report.int_tensors += 1
        ckpt, src = parts[-1] if kind != "b" and job.rule == "last" else parts[0]
        return ViewValue(ckpt, src.storage, View.of(src), t.dtype)
    if kind == "c":
        raise MismatchError(parts[0][0].path, f"{parts[0][1].dtype} tensors are not averaged",
                            key=name)
    if kind == "f" and dtypes.get(t.dtype).kind != "f":
        raise MismatchError(job.target.path, f"{t.dtype} here, {parts[0][1].dtype} in the "
                            "inputs: a floating mean cannot be written as an integer", key=name)
    if kind in "iu":
        report.int_tensors += 1
        if dtypes.get(t.dtype).kind not in "iu":
            raise MismatchError(job.target.path, f"{t.dtype} here, an integer in the inputs",
                                key=name)
    else:
        report.tensors += 1
    return AverageValue(parts, t.dtype, job.weights, job.divisor)


# -- writing and verification --------------------------------------------------------------------


def _write(job: _Job, values: dict[str, Producer], out: str | os.PathLike[str],
           report: Averaging, *, format: str | None, threads: int | None,
           progress: Progress | None, keep_unknown_globals: bool) -> None:
    target = job.target
    fmt = report.format = choose_format(out, target.format, format)
    spec, mod = writer(fmt)
    options = writer_options(spec, fmt, 1, str(out))
    if spec.pickles:
        _, notes = guard_globals(target, str(out), keep_unknown_globals)
        report.notes += notes
    followers = tied_followers(target, values)
    report.tied = len(followers)
    report.kept = kept_entries(target)
    files = [f for c in (*job.sources, target) for f in c.files]
    where = patch_target(target)
    in_place = (where is not None and SAME_AS_TARGET.get(target.format) == fmt
                and all(v.dtype == target.tensors[n].dtype and patchable(target.tensors[n])
                        for n, v in values.items()))
    with atomic_path(out, files, folder=spec.folder) as tmp, start_writeback(tmp):
        if in_place:
            assert where is not None
            report.mode = "patch"
            patch(target, where, values, tmp, threads=threads, progress=progress)
        else:
            report.mode = "rewrite"
            output = build_output(target, values)
            output.keep_unknown_globals = keep_unknown_globals
            if spec.folder:
                tmp.mkdir(exist_ok=True)
            getattr(mod, spec.function)(output, tmp, threads=threads, progress=progress,
                                        **options)
        report.bytes_written = output_size(tmp)
        _verify(tmp, output_root(target, fmt), values, followers, report, threads)
        if report.mismatches:
            raise WriteError(f"{out}: verification failed, nothing written: "
                             + "; ".join(report.mismatches[:5]))


def kept_entries(target: Checkpoint) -> list[str]:
    """What the output keeps besides the weights: a .nemo's config and artifacts, the other
    top-level entries of a container (optimizer states, epoch, ...)."""
    if target.format == "nemo":
        artifacts = target.metadata.get("artifacts") or []
        return ["model_config.yaml", *(str(a["name"]) for a in artifacts)]
    tree = target.tree
    if isinstance(tree, dict) and target.root:
        return [str(k) for k in tree if k != target.root[0]]
    return []


def _verify(path: Path, root: Any, values: dict[str, Producer], followers: dict[str, str],
            report: Averaging, threads: int | None) -> None:
    """The written tensors' digests must equal the digests of the averages as they were computed
    (hashed while produced; a value not hashed whole, in order, is computed again)."""
    with ThreadPoolExecutor(threads or default_threads()) as pool:
        digests = dict(zip(values, pool.map(_digest, values.values()), strict=True))
    expected: dict[str, Digest] = {**digests, **{f: digests[lead] for f, lead in followers.items()}}
    got, missing = written_digests(path, root, expected, threads)
    report.mismatches += mismatches(expected, got, missing)
    report.verified += sum(got[n] == expected[n] for n in got)


def _digest(value: Producer) -> Digest:
    produced = value.produced_digest() if isinstance(value, AverageValue) else None
    return produced if produced is not None else value_digest(value)
