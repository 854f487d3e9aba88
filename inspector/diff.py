"""`diff()`: what two checkpoints share and what differs, tensor by tensor.

Names are joined (optionally through a mapping), signatures (shape, dtype) compared, and for
tensors whose signatures agree the content digests decide identical vs changed; only changed
tensors get the numeric comparison.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ._native import core
from .compare import Comparison, compare_tensors
from .errors import CheckpointError
from .hashing import Digest, hash_tensors
from .model import Checkpoint
from .reader import open_checkpoint
from .tree import fold_names

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
class DiffResult:
    a: str
    b: str
    rows: list[TensorDiff]
    values: bool

    @property
    def equal(self) -> bool:
        return not any(r.status in DIFFERENT for r in self.rows)

    def by_status(self, status: str) -> list[TensorDiff]:
        return [r for r in self.rows if r.status == status]

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(STATUSES, 0)
        for r in self.rows:
            out[r.status] += 1
        return {k: v for k, v in out.items() if v}

    def modules(self, depth: int = 1) -> list[ModuleSummary]:
        """Per-module counts, modules being the first `depth` dotted parts of the name."""
        table: dict[str, ModuleSummary] = {}
        for r in self.rows:
            module = ".".join(r.name.split(".")[:depth])
            summary = table.setdefault(module, ModuleSummary(module))
            summary.counts[r.status] = summary.counts.get(r.status, 0) + 1
        return list(table.values())

    def folded(self, status: str) -> list[str]:
        """Names with one status, layer ranges folded."""
        return fold_names(r.name for r in self.by_status(status))

    def to_json(self) -> dict[str, Any]:
        return {
            "a": self.a,
            "b": self.b,
            "equal": self.equal,
            "values_compared": self.values,
            "counts": self.counts(),
            "modules": [{"module": m.module, "counts": m.counts} for m in self.modules()],
            "tensors": [r.to_json() for r in self.rows],
        }


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
    comparison runs only where digests differ.
    """
    ca, cb = open_checkpoint(a), open_checkpoint(b)
    name_map = _name_map(mapping, ca, cb)
    rows = _join(ca, cb, name_map)
    if values:
        _compare_values(ca, cb, rows, rtol=rtol, atol=atol, threads=threads, progress=progress)
    return DiffResult(ca.label, cb.label, rows, values)


def _name_map(mapping: Any, ca: Checkpoint, cb: Checkpoint) -> NameMap:
    if mapping is None:
        return lambda n: n
    if isinstance(mapping, str):
        return _prefix_map(mapping, ca, cb)
    if isinstance(mapping, Mapping):
        return lambda n: mapping.get(n, n)
    if callable(mapping):
        return mapping  # type: ignore[no-any-return]
    entries = getattr(mapping, "entries", None)
    if entries is not None:  # a Plan: target (B) names fed by one source (A) tensor
        inverse = {e.sources[0][1]: t for t, e in entries.items() if len(e.sources) == 1}
        return lambda n: inverse.get(n)
    raise TypeError(
        f"mapping must be a prefix, dict, function or Plan, not {type(mapping).__name__}"
    )


def _prefix_map(prefix: str, ca: Checkpoint, cb: Checkpoint) -> NameMap:
    """Strip `prefix` from A's names, or add it, whichever makes the names of B."""
    b_names = cb.tensors

    def mapped(n: str) -> str:
        if n.startswith(prefix) and n[len(prefix) :] in b_names:
            return n[len(prefix) :]
        if prefix + n in b_names:
            return prefix + n
        return n

    return mapped


def _join(ca: Checkpoint, cb: Checkpoint, name_map: NameMap) -> list[TensorDiff]:
    """Join the name sets (in the C++ core: it scales to millions of tensors)."""
    ta, tb = list(ca.values()), list(cb.values())
    keys_a = [_join_key(name_map, t.name) for t in ta]
    try:
        j = core.shape_diff(
            keys_a,
            [t.shape for t in ta],
            [t.dtype for t in ta],
            [t.name for t in tb],
            [t.shape for t in tb],
            [t.dtype for t in tb],
        )
    except ValueError as e:  # two A names mapped onto one B name
        raise CheckpointError(ca.path, f"the name mapping is not one-to-one: {e}") from None

    def pair(status: str, ia: int, ib: int) -> TensorDiff:
        a, b = ta[ia], tb[ib]
        return TensorDiff(status, a.name, b.name, a.shape, b.shape, a.dtype, b.dtype)

    rows = [
        TensorDiff(ONLY_A, ta[i].name, None, ta[i].shape, None, ta[i].dtype) for i in j["only_a"]
    ]
    rows += [pair(SHAPE, ia, ib) for ia, ib in zip(j["shape_a"], j["shape_b"], strict=False)]
    rows += [pair(DTYPE, ia, ib) for ia, ib in zip(j["dtype_a"], j["dtype_b"], strict=False)]
    rows += [pair(UNCHECKED, ia, ib) for ia, ib in zip(j["equal_a"], j["equal_b"], strict=False)]
    rows += [
        TensorDiff(ONLY_B, None, tb[i].name, None, tb[i].shape, None, tb[i].dtype)
        for i in j["only_b"]
    ]
    return rows


def _join_key(name_map: NameMap, name: str) -> str:
    mapped = name_map(name)
    return mapped if mapped is not None else "\0unmapped:" + name  # matches no B name


def _compare_values(
    ca: Checkpoint,
    cb: Checkpoint,
    rows: Iterable[TensorDiff],
    *,
    rtol: float,
    atol: float,
    threads: int | None,
    progress: Callable[[int, int], None] | None,
) -> None:
    pairs = [r for r in rows if r.status == UNCHECKED]
    names_a = [r.name_a for r in pairs if r.name_a is not None]
    names_b = [r.name_b for r in pairs if r.name_b is not None]
    total_a = sum(ca[n].nbytes for n in names_a)
    total = total_a + sum(cb[n].nbytes for n in names_b)

    def part(offset: int) -> Callable[[int, int], None] | None:
        if progress is None:
            return None
        return lambda done, _total: progress(offset + done, total)

    da = hash_tensors(ca, names_a, threads=threads, progress=part(0))
    db = hash_tensors(cb, names_b, threads=threads, progress=part(total_a))
    for r in pairs:
        assert r.name_a is not None
        assert r.name_b is not None
        r.digest_a, r.digest_b = da[r.name_a], db[r.name_b]
        if r.digest_a == r.digest_b:
            r.status = IDENTICAL
        else:
            r.comparison = compare_tensors(ca, r.name_a, cb, r.name_b, rtol=rtol, atol=atol)
            r.status = CHANGED
