"""Apply an approved plan: write the target with the approved tensors replaced, verified.

    report = inspector.apply("plan.yaml", "migrated.nemo")
    print(report.to_text())

Only approved rows change the output; rows still `proposed` that would change it are refused
(listed) unless `accept_proposed`. Accepting them never decides an ambiguous row (two or more
equally good sources, none chosen): those are refused too (listed, folded) unless
`skip_ambiguous` says to write them at the target's init; the report then counts them.

When the output keeps the target's layout (same format, names, shapes, dtypes) the target is
cloned and patched in place; otherwise the output is rewritten in full, streamed. Either way
the write is atomic and verified by content digest before it is renamed into place.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import dtypes
from .errors import (
    AmbiguousRowsError,
    PartialTransferError,
    PendingRowsError,
    PlanError,
    WriteError,
)
from .hashing import hash_tensors
from .io.atomic import atomic_path, start_writeback
from .mapping.modules import partial_modules_in
from .mapping.plan import Entry, Plan
from .mapping.transforms import check_chain, nbytes
from .model import Checkpoint, TensorInfo, element_span
from .reader import open_checkpoint
from .report import LoadedRow, SkippedRow, TransferReport, Verification, module_of
from .tree import fold_names
from .writers import SAME_AS_TARGET, Format, choose_format, writer
from .writers.build import build_output
from .writers.foreign_globals import find_unknown_globals, weights_only_refused
from .writers.patch import patch, patch_target, patchable
from .writers.produce import Producer, View, ViewValue
from .writers.transformed import apply_transforms, source_value
from .writers.verify import mismatches, value_digest, written_digests

Progress = Callable[[int, int], None]


def refuse_partials(ins: Inputs, what: str, declared: Collection[str] = ()) -> None:
    """Raise PartialTransferError listing the plan's partial rows (mapping.plan.is_partial)
    other than those in `declared` (ambiguous rows the user said to skip), and its modules
    copied in part (`partial_modules_of`)."""
    skip = set(declared)
    partial = [n for n in ins.plan.partials() if n not in skip]
    modules = partial_modules_of(ins)
    problems = []
    if partial:
        problems.append(f"{len(partial)} target tensor(s) would keep their init with no declared "
                        f"reason: {', '.join(fold_names(partial))}")
    problems += list(modules)
    if problems:
        raise PartialTransferError(
            f"{what}: strict: {'; '.join(problems)}. Nothing was written. Fix the mapping, or "
            "declare the keeps (a keep rule, or reject the rows to keep their init), or approve "
            "a module's copies after review")


def partial_modules_of(ins: Inputs) -> dict[str, list[str]]:
    """The plan's modules copied in part, judged with its checkpoints' module classes."""
    sources = {label: c.metadata for label, c in ins.sources.items()}
    return partial_modules_in(ins.plan.entries, ins.target.metadata, sources)


@dataclass
class Inputs:
    plan: Plan
    sources: dict[str, Checkpoint]  # by label
    target: Checkpoint
    problems: list[str]  # fingerprint differences accepted with force


def open_plan_inputs(plan: Plan, *, force: bool = False) -> Inputs:
    """Open the plan's checkpoints and check their fingerprints (PlanError unless `force`)."""
    sources = {ref.label: _open_ref(ref.path, ref.root, ref.label) for ref in plan.sources}
    target = _open_ref(plan.target.path, plan.target.root, plan.target.label)
    problems = plan.check_fingerprints(list(sources.values()), target, force=force)
    return Inputs(plan, sources, target, problems)


def _open_ref(path: str | None, root: str, label: str) -> Checkpoint:
    if not path:
        raise PlanError(f"plan input {label!r} has no path to open")
    return open_checkpoint(path, root=root or None)


def apply(
    plan: Plan | str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    accept_proposed: bool = False,
    force: bool = False,
    threads: int | None = None,
    progress: Progress | None = None,
    format: str | None = None,
    inputs: Inputs | None = None,
    keep_unknown_globals: bool = False,
    strict: bool = False,
    shards: int = 1,
    skip_ambiguous: bool = False,
) -> TransferReport:
    """Write `out`: the plan's target with its approved rows applied. Returns the report.

    A target whose tree holds calls to globals the safe reader did not recognise as data
    (`os.system(...)` beside the weights) is refused, nothing written, unless
    `keep_unknown_globals`: the output would carry them as the target does.

    `strict`: refuse (PartialTransferError, nothing written) when any target tensor would keep
    its init with no declared reason; without it they are listed as a WARNING in the report.

    `accept_proposed` never decides an ambiguous row (`Plan.ambiguous`: equally good sources,
    still proposed): AmbiguousRowsError names them, nothing written, unless `skip_ambiguous`,
    which writes them at the target's init and counts them in the report (declared, so
    `strict` does not refuse them either).

    `shards`: the number of rank files of a DCP output (format "dcp" only)."""
    started = time.monotonic()
    plan_file = None if isinstance(plan, Plan) else str(plan)
    if not isinstance(plan, Plan):
        plan = Plan.load(plan)
    _refuse_proposed(plan, accept_proposed)
    skipped = refuse_ambiguous(plan, str(out), accept_proposed, skip_ambiguous)
    ins = inputs or open_plan_inputs(plan, force=force)
    if strict:
        refuse_partials(ins, str(out), skipped)
    target = ins.target
    values = entry_values(ins, accept_proposed)
    drop = {e.target for e in _rows(plan, "drop", accept_proposed)}
    fmt = choose_format(out, target.format, format)
    report = plan_report(plan, target, accept_proposed, str(out), skipped=skipped)
    report.partial_modules = partial_modules_of(ins)
    report.format = fmt
    report.notes += ins.problems
    spec, mod = writer(fmt)
    options = writer_options(spec, fmt, shards, str(out))
    if spec.pickles:
        report.unknown_globals, notes = guard_globals(target, str(out), keep_unknown_globals)
        report.notes += notes
    inputs_files = [*target.files, *(f for c in ins.sources.values() for f in c.files)]
    if target.path is not None:
        inputs_files.append(str(target.path))
    if plan_file is not None:
        inputs_files.append(plan_file)
    followers = tied_followers(target, values)
    report.notes += [f"{f}: tied to the replaced {lead}, follows its new values"
                     for f, lead in followers.items()]
    where = patch_target(target)
    in_place = (where is not None and not drop and SAME_AS_TARGET.get(target.format) == fmt
                and _same_layout(target, values))
    # the disk writes the output while it is being written and verified: the fsync before the
    # rename then waits only for the tail
    with atomic_path(out, inputs_files, folder=spec.folder) as tmp, start_writeback(tmp):
        if in_place:
            assert where is not None
            report.mode = "patch"
            report.clone = patch(target, where, values, tmp, threads=threads, progress=progress)
        else:
            report.mode = "rewrite"
            output = build_output(target, values, drop)
            output.keep_unknown_globals = keep_unknown_globals
            if spec.folder:
                tmp.mkdir(exist_ok=True)
            getattr(mod, spec.function)(output, tmp, threads=threads, progress=progress,
                                        **options)
        report.bytes_written = output_size(tmp)
        report.verification = verify(tmp, output_root(target, fmt), ins, values, drop, followers,
                                     threads=threads)
        if not report.verification.ok:
            raise WriteError(f"{out}: verification failed, nothing written: "
                             + "; ".join(report.verification.mismatches[:5]))
    report.seconds = time.monotonic() - started
    return report


def writer_options(spec: Format, fmt: str, shards: int, out: str) -> dict[str, Any]:
    """Keyword options for the writer: `shards` where the format takes it."""
    if shards < 1:
        raise WriteError(f"{out}: --shards must be at least 1, not {shards}")
    if spec.shards:
        return {"shards": shards}
    if shards != 1:
        raise WriteError(f"{out}: --shards applies to DCP output (--format dcp), not {fmt}")
    return {}


def guard_globals(target: Checkpoint, out: str, keep: bool) -> tuple[list[str], list[str]]:
    """Refuse (unless `keep`) a target tree holding unknown calls; returns them, described, and
    notes on the object classes torch.load(weights_only=True) refuses. Both are written as the
    target has them."""
    found = find_unknown_globals(target.tree)
    if found and not keep:
        listed = "; ".join(g.describe() for g in found[:10])
        more = f"; ... ({len(found)} in all)" if len(found) > 10 else ""
        raise WriteError(
            f"{out}: refusing to write {len(found)} global(s) from {target.label} that are not "
            f"data (a full torch.load would import or call them): {listed}{more}. Nothing was "
            "written. Check where they come from (ckpt scan); to copy them anyway pass "
            "--keep-unknown-globals (keep_unknown_globals=True)")
    notes = []
    for cls, where in weights_only_refused(target.tree).items():
        shown = ", ".join(where[:3]) + (f", ... ({len(where)} in all)" if len(where) > 3 else "")
        notes.append(
            f"{cls} at {shown}: kept as in the target; torch.load(weights_only=True) refuses "
            f"this class unless allowed with torch.serialization.add_safe_globals")
    return [g.describe() for g in found], notes


def _refuse_proposed(plan: Plan, accept_proposed: bool) -> None:
    pending = plan.pending()
    if pending and not accept_proposed:
        shown = ", ".join(pending[:10]) + (f", ... ({len(pending)} in all)" if len(pending) > 10
                                            else "")
        raise PendingRowsError(
            f"{len(pending)} row(s) are still proposed, not approved: {shown}. Review and approve "
            "them (ckpt-tui, plan.approve), or pass --accept-proposed to apply them unreviewed"
        )


LISTED = 12  # folded names an error lists before "... (N more)"


def refuse_ambiguous(plan: Plan, what: str, accept_proposed: bool, skip: bool) -> list[str]:
    """The plan's undecided ambiguous rows the user said to skip (`skip`); AmbiguousRowsError,
    naming them folded, when they would otherwise pass with the accepted proposed rows."""
    rows = plan.ambiguous()
    if rows and accept_proposed and not skip:
        folded = fold_names(rows)
        shown = ", ".join(folded[:LISTED]) + (
            f", ... ({len(folded) - LISTED} more)" if len(folded) > LISTED else "")
        raise AmbiguousRowsError(
            f"{what}: {len(rows)} ambiguous row(s): two or more sources fit equally well and "
            f"none was chosen: {shown}. Nothing was written. Pick their "
            "source (ckpt-tui c, plan.set_source, a rule or a PREFIX=SOURCE that tells the "
            "sources apart), reject them to keep their init, or pass --skip-ambiguous "
            "(skip_ambiguous=True) to write them at the target's init")
    return rows if skip else []


def _rows(plan: Plan, decision: str, accept_proposed: bool) -> list[Entry]:
    ok = {"approved", "proposed"} if accept_proposed else {"approved"}
    return [e for e in plan.entries.values() if e.effective == decision and e.status in ok]


def entry_values(ins: Inputs, accept_proposed: bool = False) -> dict[str, Producer]:
    """Target name -> its new value, for every applied copy row."""
    rows = _rows(ins.plan, "copy", accept_proposed)
    for e in rows:  # every row is checked before any value is computed
        check_entry(e, ins.sources, ins.target)
    return {e.target: entry_value(e, ins.sources, ins.target) for e in rows}


# No transform step may make a tensor more than this many times the larger of the target tensor
# and the entry's sources: the widest cast (1-byte float8 to float64). A `pad` by two billion rows
# is refused here, before anything is allocated or written.
GROWTH_LIMIT = 8


def check_entry(e: Entry, sources: dict[str, Checkpoint], target: Checkpoint) -> None:
    """Check a copy row against the checkpoints before any work: its sources and target exist,
    and its transforms fit their inputs' shapes and dtypes (PlanError naming the row)."""
    own, found = _row_tensors(e, sources, target)
    infos = [info for _, info in found]
    sizes = [nbytes(t.shape, t.dtype) for t in (own, *infos) if t.dtype in dtypes.DTYPES]
    try:
        check_chain(e.transform, [t.shape for t in infos], [t.dtype for t in infos],
                    target=(own.shape, own.dtype), max_bytes=GROWTH_LIMIT * max([4096, *sizes]))
    except PlanError as err:
        raise PlanError(f"entries[{e.target!r}]: {err}") from None


def entry_value(e: Entry, sources: dict[str, Checkpoint], target: Checkpoint) -> Producer:
    own, found = _row_tensors(e, sources, target)
    inputs: list[Producer] = [source_value(ckpt, info) for ckpt, info in found]
    return apply_transforms(inputs, e.transform, source_value(target, own))


def _row_tensors(e: Entry, sources: dict[str, Checkpoint], target: Checkpoint
                 ) -> tuple[TensorInfo, list[tuple[Checkpoint, TensorInfo]]]:
    """The row's target tensor and its (checkpoint, tensor) sources; PlanError naming the row
    when a label, a source tensor or the target tensor is missing."""
    found = []
    for label, name in e.sources:
        ckpt = sources.get(label)
        if ckpt is None:
            raise PlanError(f"entries[{e.target!r}]: unknown source label {label!r}")
        if name not in ckpt.tensors:
            raise PlanError(f"entries[{e.target!r}]: {ckpt.label} has no tensor {name!r}")
        found.append((ckpt, ckpt.tensors[name]))
    own = target.tensors.get(e.target)
    if own is None:
        raise PlanError(f"entries[{e.target!r}]: the target has no such tensor")
    return own, found


def _same_layout(target: Checkpoint, values: dict[str, Producer]) -> bool:
    for name, v in values.items():
        t = target.tensors[name]
        if v.dtype != t.dtype or tuple(v.shape) != t.shape or not patchable(t):
            return False
    return True


def output_root(target: Checkpoint, fmt: str) -> Any:
    """Where the weights lie in an output of `target` written as `fmt`: the target's own root
    when the output keeps its tree (its own format; a DCP output nests the whole tree too),
    else None (detected, as any reader does)."""
    same_tree = SAME_AS_TARGET.get(target.format) == fmt or fmt == "dcp"
    return target.root if same_tree else None


def output_size(path: Path) -> int:
    """Bytes of a written file, or of every file in a written folder."""
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


# -- verification ---------------------------------------------------------------------------------


def tied_followers(target: Checkpoint, values: dict[str, Producer]) -> dict[str, str]:
    """Untouched target tensors that view a replaced tensor's storage the same way (tied
    weights): they take its new values. Another overlapping view is refused."""
    by_storage: dict[str, list[str]] = {}
    for name in values:
        by_storage.setdefault(target.tensors[name].storage.key, []).append(name)
    out: dict[str, str] = {}
    for name, t in target.tensors.items():
        if name in values:
            continue
        for lead in by_storage.get(t.storage.key, []):
            if View.of(target.tensors[lead]) == View.of(t):
                out[name] = lead
            elif _overlaps(target.tensors[lead], t):
                raise PlanError(f"{name}: shares its storage with the replaced {lead} through "
                                "another view; replace both or neither")
    return out


def _overlaps(a: TensorInfo, b: TensorInfo) -> bool:
    alo, ahi = element_span(a.shape, a.strides, a.storage_offset)
    blo, bhi = element_span(b.shape, b.strides, b.storage_offset)
    return alo < bhi and blo < ahi


def verify(path: Path, root: Any, ins: Inputs, values: dict[str, Producer], drop: set[str],
           followers: dict[str, str], *, threads: int | None = None) -> Verification:
    """Re-open the written output (weights under `root`, detected when None); every replaced
    tensor must hash to its expected value and every other one to the target's."""
    started = time.monotonic()
    result = Verification()
    target = ins.target
    expected = _expected(ins, values, threads)
    untouched = [n for n in target.tensors
                 if n not in values and n not in drop and n not in followers]
    expected.update(hash_tensors(target, untouched, threads=threads))
    expected.update({f: expected[lead] for f, lead in followers.items()})
    got, missing = written_digests(path, root, expected, threads)
    result.mismatches += mismatches(expected, got, missing)
    result.checked = len(got)
    result.replaced_ok = sum(got[n] == expected[n] for n in got if n in values)
    result.untouched_ok = sum(got[n] == expected[n] for n in got if n not in values)
    result.seconds = time.monotonic() - started
    return result


def _expected(ins: Inputs, values: dict[str, Producer], threads: int | None) -> dict[str, Any]:
    """Expected digests: an untransformed source tensor is hashed where it lies (independent of
    the copy); a transformed one by streaming its transform."""
    plain: dict[str, list[tuple[str, str]]] = {}
    out: dict[str, Any] = {}
    for name, v in values.items():
        e = ins.plan.entries[name]
        if not e.transform and isinstance(v, ViewValue) and len(e.sources) == 1:
            plain.setdefault(e.sources[0][0], []).append((name, e.sources[0][1]))
        else:
            out[name] = value_digest(v)
    for label, pairs in plain.items():
        got = hash_tensors(ins.sources[label], [src for _, src in pairs], threads=threads)
        out.update({name: got[src] for name, src in pairs})
    return out


# -- the report -----------------------------------------------------------------------------------


_SKIP_FLAGS = {
    "shape-mismatch": "shape mismatch",
    "vocab-change": "vocabulary changed",
    "no-source": "unmapped",
    "ambiguous": "ambiguous",
}


def plan_report(plan: Plan, target: Checkpoint, accept_proposed: bool, output: str | None,
                *, skipped: Collection[str] = ()) -> TransferReport:
    """The report's rows from the plan (which rows load, which are skipped and why).
    `skipped`: ambiguous rows the user said to skip: listed as such, not as partial."""
    report = TransferReport(target=target.label, output=output)
    applied = {e.target for e in _rows(plan, "copy", accept_proposed)}
    totals: dict[str, list[int]] = {}
    for name, t in target.tensors.items():
        totals.setdefault(module_of(name), [0, 0])[1] += t.numel
    for name, e in plan.entries.items():
        numel = target.tensors[name].numel if name in target.tensors else 0
        if name in applied:
            report.loaded.append(LoadedRow(
                name, tuple(f"{a}:{b}" for a, b in e.sources),
                " | ".join(t.describe() for t in e.transform), numel,
                accepted_without_review=e.status == "proposed"))
            totals.setdefault(module_of(name), [0, 0])[0] += numel
        elif e.effective == "drop" and (e.status == "approved" or accept_proposed):
            report.dropped.append(name)
        else:
            reason = _skip_reason(e)
            if reason:
                report.skipped.append(SkippedRow(name, reason, numel))
    declared = set(skipped)
    report.partial = [n for n in plan.partials() if n not in declared]
    report.ambiguous_skipped = list(skipped)
    listed = {*applied, *report.dropped, *(r.target for r in report.skipped)}
    report.kept = [n for n in target.tensors if n not in listed]
    report.unused = [(u.label, u.name, u.reason) for u in plan.unused]
    report.modules = {m: (a, b) for m, (a, b) in totals.items()}
    return report


def _skip_reason(e: Entry) -> str:
    if e.status == "rejected":
        return f"rejected ({e.reason})" if e.reason else "rejected"
    for flag, what in _SKIP_FLAGS.items():
        if flag in e.flags:
            if not e.reason or e.reason.startswith(what):
                return e.reason or what
            return f"{what}: {e.reason}"
    if e.decision == "copy":  # a copy row that was not applied: not approved
        return f"not approved ({e.status})"
    return ""
