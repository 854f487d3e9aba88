"""Lazy module rows for the key trees: grouped by dotted prefix, layer ranges folded.

A `Row` stands for one module (or one tensor) of a checkpoint, or for several identical
numbered siblings folded into one (`layers.{0..15}`). Children are computed only when a row is
expanded, so a checkpoint of 20k tensors opens instantly. Numbered siblings fold when their
tensors agree in relative name, dtype, shape and *mark* (a string per tensor: the decision of a
target row, used/unused for a source row), so a layer whose decision differs splits out of its
range instead of being hidden inside it. Single-child chains are joined (`pre_encode.conv`).

Pure Python over names and `TensorInfo`s: no I/O and no Textual.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from ..model import TensorInfo
from ..tree import format_ranges

SELF = "<tensor>"  # label of a tensor whose name is also a module prefix (rare)


@dataclass(frozen=True, eq=False)
class Row:
    label: str  # "encoder", "layers.{0..15}", "weight"
    prefixes: tuple[str, ...]  # real dotted paths this row stands for (several when folded)
    names: tuple[str, ...] = field(repr=False)  # tensor names below, in checkpoint order
    depth: int  # dotted segments in each prefix
    leaf: bool = False

    @property
    def key(self) -> str:
        return self.prefixes[0]

    @property
    def folded(self) -> bool:
        return len(self.prefixes) > 1

    def covers(self, name: str) -> bool:
        return any(name == p or name.startswith(p + ".") or not p for p in self.prefixes)


@dataclass(frozen=True)
class Totals:
    tensors: int
    params: int
    nbytes: int
    dtypes: dict[str, int]
    marks: dict[str, int] = field(default_factory=dict)


class TreeModel:
    """Rows over `names` (a subset of `tensors`, e.g. after a filter), folded by `marks`."""

    def __init__(
        self,
        tensors: Mapping[str, TensorInfo],
        names: Iterable[str] | None = None,
        marks: Mapping[str, str] | None = None,
        titles: Mapping[str, str] | None = None,
    ):
        self.tensors = tensors
        self.marks = marks or {}
        # How a top-level segment is shown: the source tree's `a_nemo` key as its label `a.nemo`
        self.titles = titles or {}
        kept = list(tensors) if names is None else [n for n in names if n in tensors]
        self._parts = {n: n.split(".") for n in kept}
        self.root = Row("", ("",), tuple(kept), 0)
        self._children: dict[tuple[str, ...], list[Row]] = {}
        self._totals: dict[tuple[str, ...], Totals] = {}

    def __len__(self) -> int:
        return len(self.root.names)

    def roots(self) -> list[Row]:
        return self.children(self.root)

    def children(self, row: Row) -> list[Row]:
        cached = self._children.get(row.prefixes)
        if cached is None:
            cached = [self._collapse(c) for c in self._fold(self._group(row))]
            self._children[row.prefixes] = cached
        return cached

    def totals(self, row: Row) -> Totals:
        cached = self._totals.get(row.prefixes)
        if cached is None:
            params = nbytes = 0
            dtypes: Counter[str] = Counter()
            marks: Counter[str] = Counter()
            for n in row.names:
                t = self.tensors[n]
                params += t.numel
                nbytes += t.nbytes
                dtypes[t.dtype] += 1
                marks[self.marks.get(n, "")] += 1
            cached = Totals(len(row.names), params, nbytes, dict(dtypes), dict(marks))
            self._totals[row.prefixes] = cached
        return cached

    def path_to(self, name: str) -> list[Row] | None:
        """Rows from the top down to the leaf row holding tensor `name` (None if not shown)."""
        path: list[Row] = []
        row = self.root
        while not row.leaf:
            nxt = next((c for c in self.children(row) if c.covers(name) and name in c.names), None)
            if nxt is None:
                return None
            path.append(nxt)
            row = nxt
        return path

    # Building rows ----------------------------------------------------------------------------
    def _group(self, row: Row) -> list[Row]:
        groups: dict[str, list[str]] = {}
        for n in row.names:
            parts = self._parts[n]
            seg = parts[row.depth] if len(parts) > row.depth else ""
            groups.setdefault(seg, []).append(n)
        rows = []
        for seg, names in groups.items():
            if not seg:
                rows.append(Row(SELF, row.prefixes, tuple(names), row.depth, leaf=True))
                continue
            prefixes = dict.fromkeys(".".join(self._parts[n][: row.depth + 1]) for n in names)
            leaf = all(len(self._parts[n]) == row.depth + 1 for n in names)
            label = self.titles.get(seg, seg) if row.depth == 0 else seg
            rows.append(Row(label, tuple(prefixes), tuple(names), row.depth + 1, leaf))
        return rows

    def _signature(self, row: Row) -> tuple[object, ...]:
        out = []
        for n in row.names:
            t = self.tensors[n]
            rel = tuple(self._parts[n][row.depth :])
            out.append((rel, t.dtype, t.shape, self.marks.get(n, "")))
        return tuple(out)

    def _fold(self, rows: list[Row]) -> list[Row]:
        out: list[Row] = []
        run: list[Row] = []
        for r in rows:
            if r.label.isdigit():
                if run and self._signature(run[-1]) != self._signature(r):
                    out.append(_merge(run))
                    run = []
                run.append(r)
                continue
            if run:
                out.append(_merge(run))
                run = []
            out.append(r)
        if run:
            out.append(_merge(run))
        return out

    def _collapse(self, row: Row) -> Row:
        """Join a chain of single children into one row, stopping at a fold or a leaf."""
        while not row.leaf and not row.folded:
            kids = self._fold(self._group(row))
            if len(kids) != 1 or kids[0].leaf or kids[0].label == SELF:
                return row
            kid = kids[0]
            row = Row(f"{row.label}.{kid.label}", kid.prefixes, kid.names, kid.depth, kid.leaf)
        return row


def _merge(run: list[Row]) -> Row:
    if len(run) == 1:
        return run[0]
    label = "{" + format_ranges(int(r.label) for r in run) + "}"
    prefixes = tuple(p for r in run for p in r.prefixes)
    names = tuple(n for r in run for n in r.names)
    return Row(label, prefixes, names, run[0].depth, run[0].leaf)
