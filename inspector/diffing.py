"""`diff()`: what two checkpoints share and what differs, tensor by tensor.

Names are joined (optionally through a mapping), signatures (shape, dtype) compared, and for
tensors whose signatures agree the content digests decide identical vs changed; only changed
tensors get the numeric comparison.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import groupby
from typing import TYPE_CHECKING, Any

from ._native import core, core_error
from .errors import CheckpointError
from .model import Checkpoint
from .reader import open_checkpoint, path_label
from .signature import Signature, signature
from .tree import FOLD_IN_CORE_FROM, fold_names

if TYPE_CHECKING:  # hashing and comparison (and numpy) are imported only when values are compared
    from .compare import Comparison
    from .hashing import Digest

# Row status, in the order they are reported.
ONLY_A, ONLY_B, SHAPE, DTYPE, CHANGED, IDENTICAL, UNCHECKED = (
    "only-a",
    "only-b",
    "shape-mismatch",
    "dtype-mismatch",
    "changed",
    "identical",
    "same-signature",
)
STATUSES = (ONLY_A, ONLY_B, SHAPE, DTYPE, CHANGED, IDENTICAL, UNCHECKED)
DIFFERENT = frozenset({ONLY_A, ONLY_B, SHAPE, DTYPE, CHANGED})

NameMap = Callable[[str], str | None]

IN_CORE_FROM = FOLD_IN_CORE_FROM  # names; for fewer, Python is as fast as the call into C++


@dataclass
class TensorDiff:
    status: str
    name_a: str | None
    name_b: str | None
    shape_a: tuple[int, ...] | None = None
    shape_b: tuple[int, ...] | None = None
    dtype_a: str | None = None
    dtype_b: str | None = None
    digest_a: Digest | None = None
    digest_b: Digest | None = None
    comparison: Comparison | None = None

    @property
    def name(self) -> str:
        return self.name_b or self.name_a or ""

    @property
    def reason(self) -> str:
        """One line saying why the row has its status."""
        reasons: dict[str, Callable[[], str]] = {
            ONLY_A: lambda: "only in A",
            ONLY_B: lambda: "only in B",
            SHAPE: lambda: f"shape {list(self.shape_a or ())} vs {list(self.shape_b or ())}",
            DTYPE: lambda: f"dtype {self.dtype_a} vs {self.dtype_b}",
            CHANGED: self._changed_reason,
            IDENTICAL: lambda: "identical",
            UNCHECKED: lambda: "same shape and dtype (values not compared)",
        }
        return reasons[self.status]()

    def _changed_reason(self) -> str:
        c = self.comparison
        if c is None:
            return "values differ"
        return (
            f"max abs diff {c.max_abs_diff:.3g}, cosine {c.cosine:.6f}, "
            f"{c.n_diff} of {c.numel} differ"
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": self.status, "a": self.name_a, "b": self.name_b}
        if self.shape_a is not None:
            out["shape_a"], out["dtype_a"] = list(self.shape_a), self.dtype_a
        if self.shape_b is not None:
            out["shape_b"], out["dtype_b"] = list(self.shape_b), self.dtype_b
        if self.digest_a is not None:
            out["digest_a"] = str(self.digest_a)
        if self.digest_b is not None:
            out["digest_b"] = str(self.digest_b)
        if self.comparison is not None:
            out["comparison"] = self.comparison.to_json()
        return out


@dataclass
class ModuleSummary:
    module: str
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@dataclass
class Join:
    """The rows of a diff as columns of indices into the two signatures (from `_core.shape_diff`).

    Pairs (names on both sides with equal shape and dtype) keep A's order; `pair_status` is None
    until values are compared, then IDENTICAL or CHANGED per pair, with `extras` holding the
    digests and comparison of pair k.
    """

    only_a: list[int]
    only_b: list[int]
    shape_a: list[int]
    shape_b: list[int]
    dtype_a: list[int]
    dtype_b: list[int]
    pair_a: list[int]
    pair_b: list[int]
    pair_status: list[str] | None = None
    extras: dict[int, tuple[Digest, Digest, Comparison | None]] = field(default_factory=dict)


class DiffResult:
    """What `diff()` found. Rows are built on demand from columns, so that a header-only diff of
    millions of tensors costs no Python object per tensor until someone asks for the rows."""

    def __init__(
        self, a: str, b: str, values: bool, sig_a: Signature, sig_b: Signature, join: Join
    ):
        self.a, self.b, self.values = a, b, values
        self.sig_a, self.sig_b, self.join = sig_a, sig_b, join
        self._rows: list[TensorDiff] | None = None

    @property
    def rows(self) -> list[TensorDiff]:
        """Every row: only in A, shape and dtype mismatches, pairs (A's order), only in B."""
        if self._rows is None:
            self._rows = list(self._iter_rows())
        return self._rows

    @property
    def equal(self) -> bool:
        return not any(n for s, n in self.counts().items() if s in DIFFERENT)

    def by_status(self, status: str) -> list[TensorDiff]:
        return [r for r in self._iter_rows(status) if r.status == status]

    def counts(self) -> dict[str, int]:
        j = self.join
        out = dict.fromkeys(STATUSES, 0)
        out[ONLY_A], out[ONLY_B] = len(j.only_a), len(j.only_b)
        out[SHAPE], out[DTYPE] = len(j.shape_a), len(j.dtype_a)
        if j.pair_status is None:
            out[UNCHECKED] = len(j.pair_a)
        else:
            for status, n in Counter(j.pair_status).items():
                out[status] += n
        return {k: v for k, v in out.items() if v}

    def names(self, status: str) -> list[str]:
        """The names of the rows with one status (B's name where there is one)."""
        return [n for _, names in self._runs(status) for n in names]

    def modules(self, depth: int = 1) -> list[ModuleSummary]:
        """Per-module counts, modules being the first `depth` dotted parts of the name."""
        table: dict[str, ModuleSummary] = {}
        for status, names in self._runs():
            for module, n in prefix_counts(names, depth):
                summary = table.setdefault(module, ModuleSummary(module))
                summary.counts[status] = summary.counts.get(status, 0) + n
        return list(table.values())

    def folded(self, status: str) -> list[str]:
        """Names with one status, layer ranges folded."""
        return fold_names(self.names(status))

    def to_json(self) -> dict[str, Any]:
        return {
            "a": self.a,
            "b": self.b,
            "equal": self.equal,
            "values_compared": self.values,
            "counts": self.counts(),
            "modules": [{"module": m.module, "counts": m.counts} for m in self.modules()],
            "tensors": [r.to_json() for r in self._iter_rows()],
        }

    # -- columns -> rows --------------------------------------------------------------------------
    def _runs(self, status: str | None = None) -> Iterator[tuple[str, list[str]]]:
        """(status, names) for consecutive rows of one status, in row order; with `status`, only
        the runs of that status (the others' name lists are never built)."""
        j, na, nb = self.join, self.sig_a.names, self.sig_b.names
        columns = ((ONLY_A, na, j.only_a), (SHAPE, nb, j.shape_b), (DTYPE, nb, j.dtype_b))
        for s, names, rows in columns:
            if status in (None, s):
                yield s, [names[i] for i in rows]
        if j.pair_status is None:
            if status in (None, UNCHECKED):
                yield UNCHECKED, [nb[i] for i in j.pair_b]
        else:
            k = 0
            for s, run in groupby(j.pair_status):
                n = len(list(run))
                if status in (None, s):
                    yield s, [nb[i] for i in j.pair_b[k : k + n]]
                k += n
        if status in (None, ONLY_B):
            yield ONLY_B, [nb[i] for i in j.only_b]

    def _iter_rows(self, status: str | None = None) -> Iterator[TensorDiff]:
        """Rows in order; with `status`, only the columns that can hold that status are visited."""
        j = self.join

        def wanted(s: str) -> bool:
            return status is None or status == s

        if wanted(ONLY_A):
            yield from (self._row(ONLY_A, i, None) for i in j.only_a)
        if wanted(SHAPE):
            yield from (
                self._row(SHAPE, ia, ib) for ia, ib in zip(j.shape_a, j.shape_b, strict=True)
            )
        if wanted(DTYPE):
            yield from (
                self._row(DTYPE, ia, ib) for ia, ib in zip(j.dtype_a, j.dtype_b, strict=True)
            )
        if status is None or status in (UNCHECKED, IDENTICAL, CHANGED):
            for k, (ia, ib) in enumerate(zip(j.pair_a, j.pair_b, strict=True)):
                s = UNCHECKED if j.pair_status is None else j.pair_status[k]
                if wanted(s):
                    yield self._row(s, ia, ib, j.extras.get(k))
        if wanted(ONLY_B):
            yield from (self._row(ONLY_B, None, i) for i in j.only_b)

    def _row(
        self,
        status: str,
        ia: int | None,
        ib: int | None,
        extra: tuple[Digest, Digest, Comparison | None] | None = None,
    ) -> TensorDiff:
        sa, sb = self.sig_a, self.sig_b
        row = TensorDiff(
            status,
            sa.names[ia] if ia is not None else None,
            sb.names[ib] if ib is not None else None,
            sa.shapes[ia] if ia is not None else None,
            sb.shapes[ib] if ib is not None else None,
            sa.dtypes[ia] if ia is not None else None,
            sb.dtypes[ib] if ib is not None else None,
        )
        if extra is not None:
            row.digest_a, row.digest_b, row.comparison = extra
        return row


def prefix_counts(names: list[str], depth: int) -> list[tuple[str, int]]:
    """How many names share each `depth`-segment prefix, in order of first appearance."""
    if len(names) >= IN_CORE_FROM:
        counts: list[tuple[str, int]] | None = core.prefix_counts(names, depth)
        if counts is not None:
            return counts
    return list(Counter(".".join(n.split(".")[:depth]) for n in names).items())


def diff(
    a: Any,
    b: Any,
    *,
    values: bool = True,
    mapping: str | Mapping[str, str] | NameMap | Any = None,
    rtol: float = 1e-5,
    atol: float = 1e-8,
    threads: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> DiffResult:
    """Compare two checkpoints (paths, Checkpoints, state dicts or modules).

    `mapping` aligns names of A to names of B: a prefix to strip from either side ("module."),
    a dict, a function returning the B name (or None), or a Plan (target = B, its copy entries'
    single source = A). Values are compared only where shape and dtype agree, and the numeric
    comparison runs only where digests differ. Without `values` only the signatures (names,
    shapes, dtypes) are read: for safetensors straight from the header, in C++.
    """
    if values:
        ca, cb = open_checkpoint(a), open_checkpoint(b)
        result = join_opened(a, b, ca, cb, mapping)
        _compare_values(ca, cb, result, rtol=rtol, atol=atol, threads=threads, progress=progress)
        return result
    with ThreadPoolExecutor(2) as pool:  # the two headers at once: the C++ parser drops the GIL
        side_a, side_b = pool.submit(_side, a), pool.submit(_side, b)
        (label_a, sig_a), (label_b, sig_b) = side_a.result(), side_b.result()
    join = _join(label_a, sig_a, sig_b, _name_map(mapping, sig_b))
    return DiffResult(label_a, label_b, values, sig_a, sig_b, join)


def join_opened(a: Any, b: Any, ca: Checkpoint, cb: Checkpoint, mapping: Any = None) -> DiffResult:
    """The rows of the diff of two opened checkpoints, values not compared yet (`a` and `b`: what
    the caller named, for the labels). `diff()` then compares the values; so does the distributed
    diff (inspector/distributed), with the hashing spread over ranks."""
    (label_a, sig_a), (label_b, sig_b) = _side(ca), _side(cb)
    label_a, label_b = _given_label(a, label_a), _given_label(b, label_b)
    join = _join(label_a, sig_a, sig_b, _name_map(mapping, sig_b))
    return DiffResult(label_a, label_b, True, sig_a, sig_b, join)


def _given_label(source: Any, label: str) -> str:
    """A path as the user gave it (with its `::ROOT`), as the header-only diff shows it."""
    return path_label(source) if isinstance(source, (str, os.PathLike)) else label


def _side(source: Any) -> tuple[str, Signature]:
    """A label and the signature of one side."""
    if isinstance(source, (str, os.PathLike)):
        return path_label(source), signature(source)
    ckpt = open_checkpoint(source)
    return ckpt.label, Signature.of(ckpt)


def _name_map(mapping: Any, sig_b: Signature) -> NameMap | None:
    """None for the identity (the join then uses A's names as they are)."""
    if mapping is None:
        return None
    if isinstance(mapping, str):
        return _prefix_map(mapping, set(sig_b.names))
    if isinstance(mapping, Mapping):
        return lambda n: mapping.get(n, n)
    if callable(mapping):
        return mapping
    entries = getattr(mapping, "entries", None)
    if entries is not None:  # a Plan: target (B) names fed by one source (A) tensor
        inverse = {e.sources[0][1]: t for t, e in entries.items() if len(e.sources) == 1}
        return lambda n: inverse.get(n)
    raise TypeError(
        f"mapping must be a prefix, dict, function or Plan, not {type(mapping).__name__}"
    )


def _prefix_map(prefix: str, b_names: set[str]) -> NameMap:
    """Strip `prefix` from A's names, or add it, whichever makes the names of B."""

    def mapped(n: str) -> str:
        if n.startswith(prefix) and n[len(prefix) :] in b_names:
            return n[len(prefix) :]
        if prefix + n in b_names:
            return prefix + n
        return n

    return mapped


def _join(label_a: str, sa: Signature, sb: Signature, name_map: NameMap | None) -> Join:
    """Join the name sets (in the C++ core: it scales to millions of tensors)."""
    keys_a = sa.names if name_map is None else [_join_key(name_map, n) for n in sa.names]
    try:
        j = core.shape_diff(keys_a, sa.shapes, sa.dtypes, sb.names, sb.shapes, sb.dtypes)
    except core.CoreError as e:  # two A names mapped onto one B name
        raise core_error(e, label_a, context="the name mapping is not one-to-one",
                         default=CheckpointError) from None
    return Join(
        j["only_a"],
        j["only_b"],
        j["shape_a"],
        j["shape_b"],
        j["dtype_a"],
        j["dtype_b"],
        j["equal_a"],
        j["equal_b"],
    )


def _join_key(name_map: NameMap, name: str) -> str:
    mapped = name_map(name)
    return mapped if mapped is not None else "\0unmapped:" + name  # matches no B name


def _compare_values(
    ca: Checkpoint,
    cb: Checkpoint,
    result: DiffResult,
    *,
    rtol: float,
    atol: float,
    threads: int | None,
    progress: Callable[[int, int], None] | None,
) -> None:
    from .hashing import hash_tensors

    names_a, names_b = value_pairs(result)
    total_a = sum(ca[n].nbytes for n in names_a)
    total = total_a + sum(cb[n].nbytes for n in names_b)

    def part(offset: int) -> Callable[[int, int], None] | None:
        if progress is None:
            return None
        return lambda done, _total: progress(offset + done, total)

    da = hash_tensors(ca, names_a, threads=threads, progress=part(0))
    db = hash_tensors(cb, names_b, threads=threads, progress=part(total_a))
    changed = changed_pairs(names_a, names_b, da, db)
    comparisons = compare_pairs(ca, cb, names_a, names_b, changed, rtol=rtol, atol=atol,
                                threads=threads)
    settle_values(result, names_a, names_b, da, db, comparisons)


def value_pairs(result: DiffResult) -> tuple[list[str], list[str]]:
    """The names of the pairs whose values are compared (equal shape and dtype): A's, B's."""
    j = result.join
    return [result.sig_a.names[i] for i in j.pair_a], [result.sig_b.names[i] for i in j.pair_b]


def changed_pairs(
    names_a: list[str], names_b: list[str], da: Mapping[str, Digest], db: Mapping[str, Digest]
) -> list[int]:
    """The indices of the pairs whose digests differ."""
    return [k for k, (na, nb) in enumerate(zip(names_a, names_b, strict=True)) if da[na] != db[nb]]


def compare_pairs(
    ca: Checkpoint,
    cb: Checkpoint,
    names_a: list[str],
    names_b: list[str],
    pairs: list[int],
    *,
    rtol: float,
    atol: float,
    threads: int | None,
) -> dict[int, Comparison]:
    """The numeric comparison of the pairs `pairs` (indices into the name lists)."""
    from .compare import compare_tensors

    workers = threads or os.cpu_count() or 1

    def compare(k: int, core_threads: int) -> Comparison:
        c = compare_tensors(
            ca, names_a[k], cb, names_b[k], rtol=rtol, atol=atol, threads=core_threads
        )
        ca.release(ca[names_a[k]].storage)  # keep memory flat over the whole pass
        cb.release(cb[names_b[k]].storage)
        return c

    # The core splits a tensor in chunks of 1M elements over its threads; a tensor with fewer
    # chunks than threads is compared on one thread, side by side with others (the core releases
    # the GIL). Figures do not depend on the thread count.
    big = workers << 20
    split = [k for k in pairs if ca[names_a[k]].numel >= big]
    whole = [k for k in pairs if ca[names_a[k]].numel < big]
    comparisons = {k: compare(k, workers) for k in split}
    if len(whole) > 1 and workers > 1:
        with ThreadPoolExecutor(workers) as pool:
            comparisons.update(zip(whole, pool.map(lambda k: compare(k, 1), whole), strict=True))
    else:
        comparisons.update((k, compare(k, 1)) for k in whole)
    return comparisons


def settle_values(
    result: DiffResult,
    names_a: list[str],
    names_b: list[str],
    da: Mapping[str, Digest],
    db: Mapping[str, Digest],
    comparisons: Mapping[int, Comparison],
) -> None:
    """Mark each pair changed (it has a comparison) or identical, with its digests."""
    j = result.join
    statuses = []
    for k, (na, nb) in enumerate(zip(names_a, names_b, strict=True)):
        statuses.append(CHANGED if k in comparisons else IDENTICAL)
        j.extras[k] = (da[na], db[nb], comparisons.get(k))
    j.pair_status = statuses
