"""The transfer report: what was loaded from where, what was skipped and why, what kept its init.

Built by `apply()` and `load_into()`; printed with `to_text()` (what the users' scripts printed by
hand: loaded keys, skipped keys with reasons, unused source weights, per-module coverage) and
saved with `to_json()` for CI.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from .humanize import floor_percent, floor_share
from .humanize import nbytes as human_bytes
from .tree import fold_names


@dataclass(frozen=True)
class LoadedRow:
    target: str
    sources: tuple[str, ...]  # "label:name"
    transform: str  # "" or "cast(dtype=bfloat16) | transpose(...)"
    numel: int
    accepted_without_review: bool = False


@dataclass(frozen=True)
class SkippedRow:
    target: str
    reason: str  # "rejected", "shape mismatch: ...", "unmapped", ...
    numel: int


@dataclass
class Verification:
    checked: int = 0  # tensors whose digest was compared
    replaced_ok: int = 0
    untouched_ok: int = 0
    mismatches: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.mismatches


@dataclass
class TransferReport:
    target: str
    output: str | None  # None for a live module
    format: str = ""
    mode: str = ""  # "patch" (clone + overwrite), "rewrite", "live"
    clone: str = ""  # how the target was cloned when patching: reflink, copy_file_range, copy
    loaded: list[LoadedRow] = field(default_factory=list)
    skipped: list[SkippedRow] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # target tensors left at their own init
    # Target tensors left at their init with no declared reason (mapping.plan.is_partial): a
    # shape mismatch, no source, ambiguous sources. Printed as a WARNING; --strict refuses them.
    partial: list[str] = field(default_factory=list)
    # Modules copied in part, {description: copied rows} (mapping.modules.partial_modules):
    # a WARNING too; --strict refuses them.
    partial_modules: dict[str, list[str]] = field(default_factory=dict)
    # Ambiguous rows (equally good sources, none chosen) written at their init because the user
    # said so (skip_ambiguous, --skip-ambiguous); not counted in `partial`.
    ambiguous_skipped: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    unused: list[tuple[str, str, str]] = field(default_factory=list)  # (label, name, reason)
    modules: dict[str, tuple[int, int]] = field(default_factory=dict)  # params loaded / total
    frozen: list[str] = field(default_factory=list)
    prefix: str = ""  # load_into(..., prefix=): the submodule's names in the whole model
    outside_prefix: int = 0  # plan rows (or source tensors) outside `prefix`, ignored
    verification: Verification | None = None
    notes: list[str] = field(default_factory=list)
    # Calls to globals that are not data, written because the user asked (keep_unknown_globals).
    unknown_globals: list[str] = field(default_factory=list)
    bytes_written: int = 0
    seconds: float = 0.0

    @property
    def params_loaded(self) -> int:
        return sum(r.numel for r in self.loaded)

    @property
    def params_total(self) -> int:
        return sum(total for _, total in self.modules.values())

    @property
    def accepted_without_review(self) -> list[str]:
        return [r.target for r in self.loaded if r.accepted_without_review]

    def module_percent(self, module: str) -> float:
        done, total = self.modules.get(module, (0, 0))
        return 100.0 * done / total if total else 0.0

    # -- output ----------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["params_loaded"] = self.params_loaded
        d["params_total"] = self.params_total
        d["modules"] = {
            m: {"loaded": a, "total": b, "percent": floor_share(a, b, 2)}
            for m, (a, b) in self.modules.items()
        }
        d["partial"] = {"count": len(self.partial), "names": fold_names(self.partial)}
        d["partial_modules"] = [{"module": detail, "rows": fold_names(rows)}
                                for detail, rows in self.partial_modules.items()]
        d["ambiguous_skipped"] = {"count": len(self.ambiguous_skipped),
                                  "names": fold_names(self.ambiguous_skipped)}
        d["unused"] = [{"label": a, "name": b, "reason": c} for a, b, c in self.unused]
        if self.verification is not None:
            d["verification"]["ok"] = self.verification.ok
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def to_text(self, *, limit: int = 20) -> str:
        lines = [self._headline()]
        if self.partial:
            lines.append(f"WARNING: {len(self.partial)} target tensor(s) keep their init with no "
                         "declared reason (shape mismatch, no source, ambiguous); the output is a "
                         "partial transfer: " + ", ".join(fold_names(self.partial)))
        lines += partial_module_warnings(self.partial_modules)
        if self.ambiguous_skipped:
            lines.append(f"skipped ambiguous: {len(self.ambiguous_skipped)} row(s) with equally "
                         "good sources keep the target's init (--skip-ambiguous): "
                         + _capped(fold_names(self.ambiguous_skipped), limit))
        if self.unknown_globals:
            lines.append(f"WARNING: {len(self.unknown_globals)} global(s) that are not data were "
                         "kept (--keep-unknown-globals): a full torch.load of the output imports "
                         "or calls them, torch.load(weights_only=True) refuses it")
            lines += [f"  {g}" for g in self.unknown_globals[:limit]]
        lines += _section(f"loaded ({len(self.loaded)})", [_loaded_line(r) for r in self.loaded],
                          limit)
        lines += _section(f"skipped ({len(self.skipped)})",
                          [f"{r.target}: {r.reason}" for r in self.skipped], limit)
        lines += _section(f"kept at own init ({len(self.kept)})", self.kept, limit)
        lines += _section(f"dropped ({len(self.dropped)})", self.dropped, limit)
        lines += _section(f"unused source tensors ({len(self.unused)})",
                          [f"{a}:{b}: {c}" for a, b, c in self.unused], limit)
        lines += _section(f"frozen ({len(self.frozen)})", self.frozen, limit)
        if self.prefix:
            lines.append(f"outside prefix {self.prefix!r}: {self.outside_prefix} ignored")
        lines.append("modules:")
        lines += [f"  {m}: {floor_percent(done, total, 1)} of {total:,} params loaded"
                  for m, (done, total) in self.modules.items()]
        unreviewed = self.accepted_without_review
        if unreviewed:
            lines.append(f"accepted without review: {len(unreviewed)} row(s) (--accept-proposed)")
        if self.verification is not None:
            v = self.verification
            state = "OK" if v.ok else f"FAILED ({len(v.mismatches)})"
            lines.append(f"verified: {state}: {v.replaced_ok} replaced and {v.untouched_ok} "
                         f"untouched tensors match by content digest ({v.seconds:.2f} s)")
            lines += [f"  {m}" for m in v.mismatches[:limit]]
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)

    def _headline(self) -> str:
        where = self.output or "live module"
        total = self.params_total
        pct = floor_percent(self.params_loaded, total, 1)
        how = f"{self.mode}" + (f" ({self.clone})" if self.clone else "")
        size = f", {human_bytes(self.bytes_written)} written" if self.bytes_written else ""
        return (f"{where}: {len(self.loaded)} tensors loaded, {self.params_loaded:,} of "
                f"{total:,} params ({pct}), {how}{size}, {self.seconds:.2f} s")


def _loaded_line(r: LoadedRow) -> str:
    src = ", ".join(r.sources)
    via = f" [{r.transform}]" if r.transform else ""
    mark = " (accepted without review)" if r.accepted_without_review else ""
    return f"{r.target} <- {src}{via}{mark}"


def _capped(names: list[str], limit: int) -> str:
    more = f", ... ({len(names) - limit} more)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def _section(title: str, rows: list[str], limit: int) -> list[str]:
    if not rows:
        return []
    out = [f"{title}:"] + [f"  {r}" for r in rows[:limit]]
    if len(rows) > limit:
        out.append(f"  ... and {len(rows) - limit} more")
    return out


def module_of(name: str) -> str:
    return name.split(".", 1)[0] if "." in name else "(top)"


def partial_module_warnings(modules: dict[str, list[str]]) -> list[str]:
    """One WARNING line per module copied in part, naming the rows it copies (folded)."""
    out = []
    for detail, rows in modules.items():
        folded = fold_names(rows)
        listed = ", ".join(folded[:3]) + (f", … ({len(folded)} groups)" if len(folded) > 3 else "")
        out.append(f"WARNING: {detail}; review its copies: {listed}")
    return out
