"""Propose a plan: for each target tensor, where its value comes from, and why.

Order of evidence, strongest first: a rule that maps a source name onto the target name, the same
name, a prefix put before or taken off most of a source's names (renames), then ranked
candidates (dotted suffix, name tokens, layer index, shape, dtype, digest).
Nothing ambiguous is decided: ties are flagged and left to the user. A module whose vocabulary-
facing layer changed keeps its target init as a whole (module-level reasoning).
"""

from __future__ import annotations

import dataclasses
import gc
import os
import re
from collections.abc import Hashable, Iterator, Mapping
from contextlib import contextmanager
from functools import lru_cache
from itertools import chain
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

from ..errors import PlanError
from ..model import Checkpoint, TensorInfo
from . import names as nm
from . import renames
from .entries import (
    ENTRY_FIELDS,
    Candidate,
    Entry,
    Evidence,
    SourceRef,
    Unused,
    alike,
    built,
    copied_sources,
    fingerprint,
)
from .groups import follow_groups
from .modules import Unit, assign_units, partial_modules, source_classes
from .plan import Plan
from .prefixed import split_source
from .rules import Rule, apply_rules, kept_by, load_rules, rules_from_list
from .transforms import Cast, Transform, chain_shape

_H = TypeVar("_H", bound=Hashable)

# Weights of the similarity score (sum 1.0) and the thresholds a heuristic match must pass.
WEIGHTS = {"suffix": 0.35, "tokens": 0.25, "layer": 0.15, "shape": 0.2, "dtype": 0.05}
W_SUFFIX, W_TOKENS, W_LAYER = WEIGHTS["suffix"], WEIGHTS["tokens"], WEIGHTS["layer"]
W_SHAPE, W_DTYPE = WEIGHTS["shape"], WEIGHTS["dtype"]
DIGEST_BONUS = 0.3
MIN_SCORE = 0.55  # below: not proposed
TIE = 0.02  # top two candidates closer than this: ambiguous
MAX_CANDIDATES = 5
MAX_BUCKET = 256  # an index bucket larger than this says nothing: skipped
EMBED_TOKENS = frozenset({"embed", "embedding", "emb", "embeddings", "wte"})
# Every EMBED_TOKENS word holds one of these (a test holds them to it): a name holding none, in
# any case (tokens are lowercased), is no embedding, without its tokens worked out
# (`_vocab_change`, 100k names)
EMBED_HINTS = ("emb", "wte")
_MAY_EMBED = re.compile("|".join(EMBED_HINTS), re.IGNORECASE).search
NO_SOURCE = "no source tensor fits: keeps its own init"
_HEURISTIC = frozenset({"heuristic"})


class Src(NamedTuple):
    """One source tensor as the proposer sees it."""

    label: str
    name: str  # name in its checkpoint
    full: str  # prefix + name, after the rules (the name compared with target names)
    info: TensorInfo


class Claim(NamedTuple):
    """A source that a rule, the exact name or a prefix change sends to a target."""

    src: Src
    via: str  # "exact", a rule path, or "prefix"
    transforms: tuple[Transform, ...]
    renamed: renames.PrefixChange | None = None  # via "prefix": the change


class _Alike(NamedTuple):
    """Rows alike (see `Context._alike_key`): the fields of the first one made, and the names
    and sources of the others, made together by `Context._alike_rows`."""

    fields: dict[str, Any]
    targets: list[str]
    sources: list[tuple[tuple[str, str], ...]]


# -- inputs ----------------------------------------------------------------------------------------
def _open(obj: Any) -> Checkpoint:
    if isinstance(obj, Checkpoint):
        return obj
    from ..reader import open_checkpoint

    return open_checkpoint(obj)


def _default_label(ckpt: Checkpoint, fallback: str) -> str:
    return Path(ckpt.path).name if ckpt.path is not None else fallback


def _unique(label: str, taken: set[str]) -> str:
    out, n = label, 2
    while out in taken:
        out, n = f"{label}#{n}", n + 1
    taken.add(out)
    return out


def _root_str(ckpt: Checkpoint) -> str:
    return ".".join(str(p) for p in ckpt.root)


def open_inputs(
    sources: Any, target: Any, *, labels: list[str] | None = None, prefixes: list[str] | None = None
) -> tuple[list[tuple[SourceRef, Checkpoint]], Checkpoint]:
    """Normalise `sources` (one, a list, or (prefix, source) pairs) and open everything."""
    items = sources if isinstance(sources, list) else [sources]
    if not items:
        raise PlanError("propose needs at least one source")
    if labels is not None and len(labels) != len(items):
        raise PlanError(f"the plan has {len(labels)} source(s), {len(items)} given")
    out: list[tuple[SourceRef, Checkpoint]] = []
    taken: set[str] = set()
    for i, item in enumerate(items):
        prefix, obj = split_source(item)
        if prefixes is not None:
            prefix = prefixes[i]
        ckpt = _open(obj)
        label = labels[i] if labels is not None else _unique(_default_label(ckpt, "source"), taken)
        ref = SourceRef(label, _path(ckpt), prefix, fingerprint(ckpt), _root_str(ckpt))
        out.append((ref, ckpt))
    return out, _open(target)


def bind(
    plan: Plan, sources: Any, target: Any, *, force: bool = False, digests: Any = None
) -> Plan:
    """Attach the checkpoints to a loaded plan (after check_fingerprints) so its edits can look
    at headers; returns the plan. `propose()` returns a plan bound already."""
    srcs, tgt = open_inputs(
        sources,
        target,
        labels=[s.label for s in plan.sources],
        prefixes=[s.prefix for s in plan.sources],
    )
    plan.check_fingerprints([c for _, c in srcs], tgt, force=force)
    plan._context = Context(srcs, tgt, digests)
    return plan


def _path(ckpt: Checkpoint) -> str | None:
    return os.fspath(ckpt.path) if ckpt.path is not None else None


def propose(
    sources: Any,
    target: Any,
    rules: Any = None,
    *,
    digests: Mapping[str, Mapping[str, str]] | None = None,
) -> Plan:
    """Propose where every target tensor comes from.

    sources: a Checkpoint or path, a `(prefix, Checkpoint | path)` pair, or a list of those
        (several sources feed one target; each prefix is put before that source's names).
    target: a Checkpoint or path.
    rules: None, a list of `Rule`s or rule mappings, a built-in rule set name, or a rules file.
    digests: optional content digests, {label: {tensor name: digest}}; the target's under its
        label. Equal digests are strong evidence.
    Returns a Plan bound to the checkpoints (its edit methods can look at headers).
    """
    with _gc_paused():
        return _propose(sources, target, rules, digests)


def _propose(
    sources: Any, target: Any, rules: Any, digests: Mapping[str, Mapping[str, str]] | None
) -> Plan:
    srcs, tgt = open_inputs(sources, target)
    if rules is None:
        rule_list: list[Rule] = []
    elif isinstance(rules, (str, os.PathLike)):
        rule_list = load_rules(os.fspath(rules))
    else:
        rule_list = rules_from_list(list(rules))
    ctx = Context(srcs, tgt, digests)
    plan = ctx.propose(rule_list)
    plan._context = ctx
    return plan


# -- the proposer ----------------------------------------------------------------------------------
class Context:
    """The checkpoints a plan is about; proposes entries for a list of rules."""

    def __init__(
        self,
        sources: list[tuple[SourceRef, Checkpoint]],
        target: Checkpoint,
        digests: Mapping[str, Mapping[str, str]] | None = None,
    ):
        self.sources = sources
        self.target = target
        self.digests = digests or {}
        taken = {ref.label for ref, _ in sources}
        label = _unique(_default_label(target, "target"), taken)
        self.target_ref = SourceRef(
            label, _path(target), "", fingerprint(target), _root_str(target)
        )
        self.by_label = {ref.label: ckpt for ref, ckpt in sources}
        self.units = assign_units(target.tensors, target.metadata)
        self._reasons: dict[tuple[str, str], str] = {}
        self._values: dict[Any, Any] = {}  # see `_shared`
        self._alike: dict[tuple[Any, ...], _Alike] = {}  # see `_add_row`
        # per source: the reasons its rows were made with, the rows, whether every tensor has one
        self._unused_made: dict[str, tuple[dict[tuple[str, str], str], dict[str, Unused],
                                           bool]] = {}

    def _shared(self, value: _H) -> _H:
        """The first value equal to `value` this proposer kept (rows hold many equal tuples,
        floats and evidence: one object each, not one per row of 100k)."""
        return self._values.setdefault(value, value)

    # -- public ------------------------------------------------------------------------------------
    def propose(self, rules: list[Rule]) -> Plan:
        with _gc_paused():
            return self._propose(rules)

    def _propose(self, rules: list[Rule]) -> Plan:
        self._alike.clear()
        claims, pool, reasons = self._resolve(rules)
        entries: dict[str, Entry] = {}
        open_targets = []
        for name, info in self.target.tensors.items():
            kept = kept_by(rules, name) if rules else None
            if kept is not None:
                entries[name] = _keep(name, info, f"{kept}: keep target init", {"kept-by-rule"})
            elif name in claims:  # taken off as used: a row made, its claims let go
                self._add_row(entries, name, info, claims.pop(name), reasons)
            else:
                open_targets.append(name)
        renamed, pool = self._renamed(open_targets, pool)
        open_targets = [name for name in open_targets if name not in renamed]
        while renamed:  # taken off as used, as above
            name, claim = renamed.popitem()
            self._add_row(entries, name, self.target.tensors[name], [claim], reasons)
        entries.update(self._alike_rows())
        entries.update(self._heuristic(open_targets, pool, reasons))
        # The claims and the pool hold a Src per source tensor, `entries` every row again: let
        # them go before the passes below (at 100k rows they set the peak of `ckpt map`)
        del claims, pool, renamed, open_targets
        ordered = {n: entries.pop(n) for n in self.target.tensors}
        del entries
        ordered = self._vocabulary(ordered, reasons)
        ordered = self._follow_groups(ordered, reasons)
        self._reasons = reasons
        plan = Plan([ref for ref, _ in self.sources], self.target_ref, list(rules), ordered)
        plan.unused = self.unused_for(plan.entries, rules)
        return plan

    def partial_modules(self, entries: Mapping[str, Entry]) -> dict[str, list[str]]:
        metadata = {label: ckpt.metadata for label, ckpt in self.by_label.items()}
        return partial_modules(entries, self.units, source_classes(metadata))

    @staticmethod
    def _follow_groups(
        entries: dict[str, Entry], reasons: dict[tuple[str, str], str]
    ) -> dict[str, Entry]:
        """Stateful groups (norm buffers, weight-norm pairs) move as a unit: see follow_groups."""
        out = follow_groups(entries)
        for name, e in out.items():
            if e is not entries[name]:
                for label, src in entries[name].sources:
                    reasons[(label, src)] = f"its target keeps its init: {e.reason}"
        return out

    def prepare(self) -> None:
        """Every source tensor's Unused row, made now (a UI's worker calls this through
        `Plan.prepare`): a proposal makes only those of the tensors it leaves unread, and a bulk
        reject of 100k rows would otherwise make the rest on its key."""
        for ref, ckpt in self.sources:
            self._unused_rows(ref.label, ckpt, None)

    def unused_for(self, entries: Mapping[str, Entry], rules: list[Rule]) -> list[Unused]:
        read: dict[str, set[str]] = {}  # source label -> the names rows copy
        for label, name in chain.from_iterable(copied_sources(entries.values())):
            read.setdefault(label, set()).add(name)
        out: list[Unused] = []
        for ref, ckpt in self.sources:
            names = read.get(ref.label)
            rows = self._unused_rows(ref.label, ckpt, names)
            out += [u for n, u in rows.items() if n not in names] if names else rows.values()
        return out

    def _unused_rows(
        self, label: str, ckpt: Checkpoint, read: set[str] | None
    ) -> dict[str, Unused]:
        """Source `label`'s tensors (all of them, or at least those not in `read`) as the rows
        saying they are unused, and why. Rows are frozen: each is made once per proposal, not on
        each edit (a bulk reject made 100k of them again). The proposal itself asks only for
        the few its rows leave unread (a row for every tensor was ~100 B a tensor in
        `ckpt map`); the first edit fills in the rest."""
        reasons, default = self._reasons, "no target tensor of that name"
        made = self._unused_made.get(label)
        if made is not None and made[0] is not reasons:  # an earlier proposal's
            made = None
        if made is not None and made[2]:
            return made[1]
        rows = made[1] if made is not None else {}
        whole = made is not None or not read  # asked again (an edit), or every tensor unread
        wanted = ckpt.tensors if whole or not read else (n for n in ckpt.tensors if n not in read)
        table = {name: rows.get(name) or Unused(label, name, reasons.get((label, name), default))
                 for name in wanted}
        self._unused_made[label] = (reasons, table, whole)
        return table

    def user_entry(
        self, e: Entry, label: str, name: str, transform: tuple[Transform, ...]
    ) -> Entry:
        ckpt = self.by_label.get(label)
        if ckpt is None:
            raise PlanError(f"no source labelled {label!r} (sources: {sorted(self.by_label)})")
        if name not in ckpt.tensors:
            raise PlanError(f"{ckpt.label}: {name!r}: no such tensor in source {label!r}")
        info = ckpt.tensors[name]
        tgt = self.target.tensors[e.target]
        shape, dtype = chain_shape(transform, [info.shape], [info.dtype])
        if shape != tgt.shape:
            raise PlanError(
                f"{e.target!r}: source {label}:{name} gives shape {list(shape)}, "
                f"the target needs {list(tgt.shape)}"
            )
        steps = transform if dtype == tgt.dtype else (*transform, Cast(tgt.dtype))
        return dataclasses.replace(
            e,
            decision="copy",
            sources=((label, name),),
            transform=steps,
            status="approved",
            reason=f"chosen by user: {label}:{name}",
            confidence=1.0,
            flags=frozenset({"user"} | ({"dtype-change"} if dtype != tgt.dtype else set())),
            source_shapes=(info.shape,),
            source_dtypes=(info.dtype,),
        )

    # -- step 1: rules and exact names ------------------------------------------------------------
    def _resolve(
        self, rules: list[Rule]
    ) -> tuple[dict[str, list[Claim]], list[Src], dict[tuple[str, str], str]]:
        claims: dict[str, list[Claim]] = {}
        pool: list[Src] = []
        reasons: dict[tuple[str, str], str] = {}
        targets = self.target.tensors
        for ref, ckpt in self.sources:
            for name, info in ckpt.tensors.items():
                if not rules:  # names as they are (the common case, kept cheap)
                    full = ref.prefix + name
                    src = Src(ref.label, name, full, info)
                    if full in targets:
                        claims.setdefault(full, []).append(Claim(src, "exact", ()))
                    else:
                        pool.append(src)
                    continue
                res = apply_rules(rules, ref.prefix + name, ref.label)
                if res.dropped:
                    why = f": {res.why}" if res.why else ""
                    reasons[(ref.label, name)] = f"dropped by {res.fired[-1]}{why}"
                    continue
                hit = next((n for n in res.names if n in targets), None)
                src = Src(ref.label, name, hit or res.names[0], info)
                if hit is None:
                    if res.fired:
                        reasons[(ref.label, name)] = (
                            f"{res.fired[-1]} maps it to {res.names[0]}: no such target tensor"
                        )
                    pool.append(src)
                    continue
                via = res.fired[-1] if res.fired and hit != ref.prefix + name else "exact"
                claims.setdefault(hit, []).append(Claim(src, via, res.transforms))
        return claims, pool, reasons

    def _add_row(
        self,
        entries: dict[str, Entry],
        name: str,
        info: TensorInfo,
        found: list[Claim],
        reasons: dict[tuple[str, str], str],
    ) -> None:
        """`entries[name]`: the row `found` makes; or, for a row alike one made before (see
        `_alike_key`), its name and source kept for `_alike_rows`, which makes them together."""
        key = self._alike_key(info, found)
        later = self._alike.get(key) if key is not None else None
        if later is not None:
            (c,) = found
            later.targets.append(name)
            later.sources.append(((c.src.label, c.src.name),))
            return
        row = entries[name] = self._from_claims(name, info, found, reasons)
        if key is not None and row.decision == "copy":  # a mismatch's reason names its rows
            self._alike[key] = _Alike({f: getattr(row, f) for f in ENTRY_FIELDS}, [], [])

    def _alike_key(self, info: TensorInfo, found: list[Claim]) -> tuple[Any, ...] | None:
        """What the rows copied by the exact name or one prefix change share when they are alike:
        with equal shapes and dtypes they differ only in their names (no digest or transform
        tells them apart). None for any other row."""
        if len(found) != 1 or self.digests:
            return None
        (c,) = found
        if c.transforms or not (c.via == "exact" or c.renamed):
            return None
        return (c.src.label, c.renamed, c.src.info.shape, c.src.info.dtype, info.shape,
                info.dtype)

    def _alike_rows(self) -> Iterator[tuple[str, Entry]]:
        """(name, row) of the rows `_add_row` kept for later, made in the core from the fields of
        the first row of their kind (100k renamed rows each made their evidence and checks
        again: ~0.5 s; one by one from the fields: ~0.1 s)."""
        for kind in self._alike.values():
            if kind.targets:
                yield from zip(kind.targets, alike(kind.fields, kind.targets, kind.sources),
                               strict=True)
        self._alike.clear()

    def _from_claims(
        self, name: str, info: TensorInfo, found: list[Claim], reasons: dict[tuple[str, str], str]
    ) -> Entry:
        if len(found) > 1:
            cands = tuple(
                Candidate(c.src.label, c.src.name, 1.0, _via_text(c, self.sources)) for c in found
            )
            for c in found:
                reasons[(c.src.label, c.src.name)] = f"one of {len(found)} sources for {name}"
            listed = ", ".join(f"{c.label}:{c.name}" for c in cands)
            return _keep(
                name,
                info,
                f"{len(found)} sources map here: {listed}; pick one",
                {"ambiguous"},
                cands,
            )
        (c,) = found
        return self._copy_or_mismatch(
            name,
            info,
            c.src,
            c.transforms,
            _via_evidence(c, self.sources),
            1.0 if c.via == "exact" else 0.98,
            reasons,
        )

    def _copy_or_mismatch(
        self,
        name: str,
        info: TensorInfo,
        src: Src,
        transforms: tuple[Transform, ...],
        evidence: list[Evidence],
        confidence: float,
        reasons: dict[tuple[str, str], str],
        extra_flags: frozenset[str] = frozenset(),
        candidates: tuple[Candidate, ...] = (),
    ) -> Entry:
        s = src.info
        shape, dtype = s.shape, s.dtype
        if transforms:
            try:
                shape, dtype = chain_shape(transforms, [s.shape], [s.dtype])
            except PlanError as e:
                shape = ()
                evidence.append(Evidence("shape", f"transform does not apply: {e}", 0.0))
        if self.digests:
            evidence.extend(self._digest_evidence(src, name))
        if shape != info.shape:
            evidence.append(Evidence("shape", f"{list(s.shape)} vs {list(info.shape)}", 0.0))
            reasons[(src.label, src.name)] = (
                f"shape {list(s.shape)} does not fit {name} {list(info.shape)}"
            )
            reason = f"{src.label}:{src.name} has shape {list(s.shape)}, target {list(info.shape)}"
            cand = candidates or (Candidate(src.label, src.name, confidence, evidence[0].detail),)
            return _keep(
                name, info, reason, {"shape-mismatch"} | extra_flags, cand, tuple(evidence)
            )
        evidence.append(_shape_fits(info.shape))
        flags = extra_flags
        steps = transforms
        if dtype != info.dtype:
            steps = (*transforms, Cast(info.dtype))
            flags = extra_flags | {"dtype-change"}
            evidence.append(Evidence("dtype", f"{dtype} -> {info.dtype}", 0.0))
        shared = self._shared(tuple(map(self._shared, evidence)))
        return built(Entry, {  # Entry(...) without its 14 frozen setattrs: one row per target
            "target": name, "decision": "copy", "sources": ((src.label, src.name),),
            "transform": steps, "status": "proposed", "reason": shared[0].detail,
            "evidence": shared,
            "confidence": self._shared(round(confidence, 3)),
            "flags": flags, "candidates": candidates, "shape": info.shape,
            "dtype": info.dtype, "source_shapes": self._shared((s.shape,)),
            "source_dtypes": self._shared((s.dtype,)),
        })

    def _digest_evidence(self, src: Src, target: str) -> list[Evidence]:
        a = self.digests.get(src.label, {}).get(src.name)
        b = self.digests.get(self.target_ref.label, {}).get(target)
        if a is None or b is None:
            return []
        return [
            Evidence(
                "digest",
                "equal content digest" if a == b else "content differs",
                1.0 if a == b else 0.0,
            )
        ]

    # -- step 2: a prefix put before or taken off the names of a source -----------------------
    def _renamed(
        self, open_targets: list[str], pool: list[Src]
    ) -> tuple[dict[str, Claim], list[Src]]:
        """The open targets a source's unclaimed names reach with one prefix change
        (renames.find, per source), and the sources left for the similarity ranking."""
        by_label: dict[str, list[Src]] = {}
        for s in pool:
            by_label.setdefault(s.label, []).append(s)
        claims: dict[str, Claim] = {}
        left: list[Src] = []  # the pool's order: its sources come one after another
        collided = False
        for srcs in by_label.values():
            free = [name for name in open_targets if name not in claims] if claims else open_targets
            fulls = [s.full for s in srcs]
            change = renames.find(fulls, free)
            if change is None:
                left += srcs
                continue
            targets = {name: name for name in free}  # the target's own strings, kept in rows
            for s, renamed in zip(srcs, change.apply_all(fulls), strict=True):
                name = targets.get(renamed)  # type: ignore[arg-type]  # None is no name
                if name is None:
                    left.append(s)
                    continue
                # two sources a rule sent to one name: the last one takes it, the other stays
                # in the pool, in its place there (below)
                collided = collided or name in claims
                claims[name] = Claim(s, "prefix", (), change)
        if collided:
            taken = {id(c.src) for c in claims.values()}
            left = [s for s in pool if id(s) not in taken]
        return claims, left if claims else pool

    # -- step 3: ranked candidates for the rest ---------------------------------------------------
    def _heuristic(
        self, open_targets: list[str], pool: list[Src], reasons: dict[tuple[str, str], str]
    ) -> dict[str, Entry]:
        index = _Index(pool)
        tgt_digests = self.digests.get(self.target_ref.label, {})
        ranked: dict[str, list[_Ranked]] = {}
        parsed = dict(zip(open_targets, nm.parse_many(open_targets), strict=True))
        for name, t in parsed.items():
            info = self.target.tensors[name]
            found = []
            for s, p in index.candidates(t, info.shape):
                r = self._score(t, info, s, p, tgt_digests.get(name))
                if r is not None:
                    found.append(r)
            if len(found) > 1:
                found.sort(key=_rank_key)
            ranked[name] = found
        taken: set[tuple[str, str]] = set()
        out: dict[str, Entry] = {}
        order = sorted(open_targets, key=lambda n: (-(ranked[n][0].score if ranked[n] else 0.0), n))
        for name in order:
            out[name] = self._pick(parsed[name], ranked[name], taken, reasons)
        return out

    def _score(
        self, t: nm.Parsed, info: TensorInfo, s: Src, p: nm.Parsed, t_digest: str | None
    ) -> _Ranked | None:
        """Similarity of source `s` (parsed `p`) to target `t`; None when they cannot match."""
        t_idx, s_idx = t.indices, p.indices
        if t_idx and s_idx and t_idx[-len(s_idx) :] != s_idx[-len(t_idx) :]:
            return None  # layer indices disagree: never a match
        suffix = nm.common_suffix_parts(t.parts, p.parts)
        if suffix == 0:
            return None
        tokens = nm.jaccard(t.tokens, p.tokens)
        score = sum(  # the order of WEIGHTS: the float sum is the same on every run
            (
                W_SUFFIX * min(suffix / max(len(t.parts) - 1, 1), 1.0),
                W_TOKENS * tokens,
                W_LAYER * (1.0 if t_idx == s_idx else 0.5),
                W_SHAPE * (1.0 if s.info.shape == info.shape else 0.0),
                W_DTYPE * (1.0 if s.info.dtype == info.dtype else 0.0),
            )
        )
        if t_digest is not None and self.digests.get(s.label, {}).get(s.name) == t_digest:
            score += DIGEST_BONUS
        return _Ranked(round(min(score, 1.0), 3), s, p, suffix, tokens)

    @staticmethod
    def _why(t: nm.Parsed, info: TensorInfo, r: _Ranked) -> str:
        """The evidence behind a score, as text (built only for the candidates a row keeps)."""
        layer = "same" if t.indices == r.parsed.indices else "n/a"
        shape = "equal" if r.src.info.shape == info.shape else list(r.src.info.shape)
        suffix = ".".join(t.parts[-r.suffix :])  # r.suffix >= 1: a candidate shares the leaf
        return f"suffix {suffix!r}, tokens {r.tokens:.2f}, layer {layer}, shape {shape}"

    def _pick(
        self,
        t: nm.Parsed,
        ranked: list[_Ranked],
        taken: set[tuple[str, str]],
        reasons: dict[tuple[str, str], str],
    ) -> Entry:
        name = t.name
        info = self.target.tensors[name]
        free = [r for r in ranked if (r.src.label, r.src.name) not in taken]
        cands = tuple(
            Candidate(r.src.label, r.src.name, r.score, self._why(t, info, r))
            for r in free[:MAX_CANDIDATES]
        )
        if not free or free[0].score < MIN_SCORE:  # sorted: the best is free[0]
            return _keep(name, info, NO_SOURCE, {"no-source"}, cands)
        best = free[0]
        if len(free) > 1 and free[1].score >= MIN_SCORE and best.score - free[1].score < TIE:
            a, b = best.src, free[1].src
            for s in (a, b):
                reasons.setdefault((s.label, s.name), f"ambiguous candidate for {name}")
            reason = f"{a.label}:{a.name} and {b.label}:{b.name} fit equally well; pick one"
            return _keep(name, info, reason, {"ambiguous"}, cands)
        src = best.src
        if src.info.shape != info.shape and best.score < MIN_SCORE + WEIGHTS["shape"]:
            return _keep(name, info, NO_SOURCE, {"no-source"}, cands)
        taken.add((src.label, src.name))
        detail = f"similar to {src.label}:{src.name} ({cands[0].why})"
        evidence = [Evidence("similar", detail, best.score)]
        return self._copy_or_mismatch(
            name, info, src, (), evidence, best.score, reasons, _HEURISTIC, cands
        )

    # -- step 4: module-level vocabulary reasoning ------------------------------------------------
    def _vocabulary(
        self, entries: dict[str, Entry], reasons: dict[tuple[str, str], str]
    ) -> dict[str, Entry]:
        modules: dict[Unit, list[str]] = {}
        for name, unit in self.units.items():
            modules.setdefault(unit, []).append(name)
        out = dict(entries)
        for unit, members in modules.items():
            change = self._vocab_change(members, entries)
            if change is None:
                continue
            keeps = f"{unit.label} keeps its init"
            reason = f"vocabulary changed {change[0]} -> {change[1]}"
            for n in members:
                e = entries[n]
                mismatched = e.candidates[:1] if "shape-mismatch" in e.flags else ()
                for label, src in (*e.sources, *((c.label, c.name) for c in mismatched)):
                    reasons[(label, src)] = f"{reason} ({keeps})"
                out[n] = dataclasses.replace(
                    e,
                    decision="keep",
                    sources=(),
                    transform=(),
                    source_shapes=(),
                    source_dtypes=(),
                    reason=reason,
                    confidence=0.95,
                    flags=(e.flags - {"shape-mismatch", "heuristic", "dtype-change", "ambiguous"})
                    | {"vocab-change"},
                    evidence=(*e.evidence, Evidence("vocab", f"{reason}: {keeps}", 1.0)),
                    candidates=e.candidates or _as_candidates(e),
                )
        return out

    def _vocab_change(
        self, members: list[str], entries: dict[str, Entry]
    ) -> tuple[int, int] | None:
        two_d = [n for n in members if len(self.target.tensors[n].shape) == 2]
        embeddings = [n for n in two_d if _MAY_EMBED(n) and nm.tokens(n) & EMBED_TOKENS]
        facing = [(n, True) for n in embeddings] + [(n, False) for n in two_d[-1:]]
        for n, embedding in facing:
            e = entries[n]
            src_shape = _counterpart_shape(e, self.by_label, deeper=embedding)
            tgt_shape = self.target.tensors[n].shape
            if src_shape is None or len(src_shape) != 2 or src_shape == tgt_shape:
                continue
            if src_shape[1:] == tgt_shape[1:]:
                return src_shape[0], tgt_shape[0]
        return None


class _Ranked(NamedTuple):
    """A scored candidate, with what its `why` text needs."""

    score: float
    src: Src
    parsed: nm.Parsed
    suffix: int  # trailing components shared with the target
    tokens: float  # name-token similarity


def _rank_key(r: _Ranked) -> tuple[float, str, str]:
    return -r.score, r.src.label, r.src.name


_Item = tuple[Src, nm.Parsed]


class _Index:
    """Blocking index over unclaimed sources: only tensors sharing a key are ever compared.

    Keys: the last two components with the layer indices; the leaf, indices and shape; and, for
    the short-circuit, the last three components, indices and shape (a source sharing those ranks
    above every other, so the others are not scored).
    """

    def __init__(self, pool: list[Src]):
        self.by_suffix: dict[tuple[tuple[str, ...], tuple[int, ...]], list[_Item]] = {}
        self.by_shape: dict[tuple[str, tuple[int, ...], tuple[int, ...]], list[_Item]] = {}
        self.strong: dict[tuple[tuple[str, ...], tuple[int, ...], tuple[int, ...]], list[_Item]]
        self.strong = {}
        for s, p in zip(pool, nm.parse_many([s.full for s in pool]), strict=True):
            item = (s, p)
            self.by_suffix.setdefault((p.parts[-2:], p.indices), []).append(item)
            self.by_shape.setdefault((p.parts[-1], p.indices, s.info.shape), []).append(item)
            if len(p.parts) >= 3:
                self.strong.setdefault((p.parts[-3:], p.indices, s.info.shape), []).append(item)

    def candidates(self, t: nm.Parsed, shape: tuple[int, ...]) -> list[_Item]:
        if len(t.parts) >= 3:
            strong = self.strong.get((t.parts[-3:], t.indices, shape))
            if strong and len(strong) <= MAX_BUCKET:
                return strong
        seen: dict[tuple[str, str], _Item] = {}
        for bucket in (
            self.by_suffix.get((t.parts[-2:], t.indices), []),
            self.by_shape.get((t.parts[-1], t.indices, shape), []),
        ):
            if len(bucket) <= MAX_BUCKET:
                for item in bucket:
                    seen.setdefault((item[0].label, item[0].name), item)
        return list(seen.values())


# -- the garbage collector ---------------------------------------------------------------------
@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector, restoring its state on exit.

    A proposal allocates several small objects per tensor (entries, evidence, candidates) that all
    live on and form no reference cycles; the collector's repeated passes over that growing heap
    took about half of propose() (10k x 10k tensors: 1.0 s -> 0.5 s CPU). Reference counting
    still frees everything as usual.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


# -- small helpers -------------------------------------------------------------------------------
@lru_cache(maxsize=1024)
def _shape_fits(shape: tuple[int, ...]) -> Evidence:
    """The evidence that a source has the target's shape: one (frozen) object per shape."""
    return Evidence("shape", f"{list(shape)}", 1.0)


def _keep(
    name: str,
    info: TensorInfo,
    reason: str,
    flags: set[str] | frozenset[str],
    candidates: tuple[Candidate, ...] = (),
    evidence: tuple[Evidence, ...] = (),
) -> Entry:
    return Entry(
        name,
        "keep",
        reason=reason,
        evidence=evidence,
        flags=frozenset(flags),
        candidates=candidates,
        shape=info.shape,
        dtype=info.dtype,
    )


def _via_text(c: Claim, sources: list[tuple[SourceRef, Checkpoint]]) -> str:
    if c.renamed is not None:
        return f"{c.src.name} with {c.renamed.describe()}"
    return "same name" if c.via == "exact" else f"{c.via} maps {c.src.name} here"


def _via_evidence(c: Claim, sources: list[tuple[SourceRef, Checkpoint]]) -> list[Evidence]:
    if c.via == "exact":
        return [Evidence("exact-name", f"same name in {c.src.label}", 1.0)]
    if c.renamed is not None:
        r = c.renamed
        # not the source's name (the row names it): one text for every row the prefix explains
        detail = f"{r.describe()} (as {r.matched} of the {r.of} names it was left with)"
        return [Evidence("prefix", detail, 1.0)]
    return [Evidence("rule", f"{c.via} maps {c.src.label}:{c.src.name}", 1.0)]


def _counterpart_shape(
    e: Entry, by_label: dict[str, Checkpoint], *, deeper: bool = False
) -> tuple[int, ...] | None:
    """The shape of the source the row takes, was refused for its shape, or ties for (several
    sources fit equally); with `deeper`, also of its best candidate when that is the row's own
    path inside a bigger model."""
    if e.sources:
        return e.source_shapes[0]
    if e.candidates and (e.flags & {"shape-mismatch", "ambiguous"}
                         or (deeper and _same_path_deeper(e))):
        c = e.candidates[0]
        ckpt = by_label.get(c.label)
        if ckpt is not None and c.name in ckpt.tensors:
            return ckpt.tensors[c.name].shape
    return None


def _same_path_deeper(e: Entry) -> bool:
    """The best candidate is the target's own path inside a bigger model (`decoder.` + name):
    a submodule filled from a whole-model file, whose counterpart's shape counts even when the
    shape change left the row without a source."""
    return e.candidates[0].name.endswith("." + e.target)


def _as_candidates(e: Entry) -> tuple[Candidate, ...]:
    return tuple(
        Candidate(label, name, e.confidence, "was proposed before the vocabulary check")
        for label, name in e.sources
    )
