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
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from itertools import chain, repeat
from operator import itemgetter

from ..model import TensorInfo
from ..tree import format_ranges

SELF = "<tensor>"  # label of a tensor whose name is also a module prefix (rare)
# Folded runs a layout keeps (each edit that splits the runs otherwise adds its own for good)
MAX_MERGED = 4096
# A row shown with its children is totalled from them when it has this many names per child
SUM_FROM = 16


@dataclass(frozen=True, eq=False)
class Row:
    label: str  # "encoder", "layers.{0..15}", "weight"
    prefixes: tuple[str, ...]  # real dotted paths this row stands for (several when folded)
    names: tuple[str, ...] = field(repr=False)  # tensor names below, in checkpoint order
    depth: int  # dotted segments in each prefix
    leaf: bool = False
    # A folded row: its first member; every member has the same relative names, dtypes, shapes
    # and marks (that is why they fold), so the row's totals are the member's times `repeats`
    member: Row | None = field(default=None, repr=False)
    repeats: int = 1

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
        *,
        reuse: TreeModel | None = None,
    ):
        """`reuse`: the model shown before an edit. When it has the same rows (the same names
        and titles: only marks changed), its grouping by name is shared instead of worked out
        again (100k names: most of a bulk edit's redraw)."""
        self.tensors = tensors
        self.marks = marks or {}
        # How a top-level segment is shown: the source tree's `a_nemo` key as its label `a.nemo`
        self.titles = titles or {}
        self.names_given = names is not None  # False: every tensor is shown
        kept = tuple(tensors) if names is None else tuple(n for n in names if n in tensors)
        self.root = Row("", ("",), kept, 0)
        self._children: dict[tuple[str, ...], list[Row]] = {}
        self._folds: dict[tuple[str, ...], list[Row]] = {}  # see _folded
        self._totals: dict[tuple[tuple[str, ...], bool], Totals] = {}  # by _row_key
        self._names: _NameLayout
        if reuse is not None and reuse.tensors is tensors and reuse.titles == self.titles \
                and reuse.root.names == kept:
            self._names = reuse._names
        else:
            self._names = _NameLayout({n: n.split(".") for n in kept})
        self._parts = self._names.parts

    def __len__(self) -> int:
        return len(self.root.names)

    def roots(self) -> list[Row]:
        return self.children(self.root)

    def children(self, row: Row) -> list[Row]:
        cached = self._children.get(row.prefixes)
        if cached is None:
            cached = [self._collapse(c) for c in self._folded(row)]
            self._children[row.prefixes] = cached
        return cached

    def totals(self, row: Row) -> Totals:
        key = _row_key(row)
        cached = self._totals.get(key)
        if cached is None and row.member is not None:  # the member's, `repeats` times
            one, k = self.totals(row.member), row.repeats
            cached = Totals(one.tensors * k, one.params * k, one.nbytes * k,
                            {d: n * k for d, n in one.dtypes.items()},
                            {m: n * k for m, n in one.marks.items()})
            self._totals[key] = cached
        kids = self._folds.get(row.prefixes) if cached is None else None
        if kids and len(kids) * SUM_FROM <= len(row.names) and all(
                k.prefixes != row.prefixes for k in kids):
            # worked out already (to show the row), and far fewer than its names (a layer
            # stack): their names are its names. (A tensor named like its module, `SELF`, has
            # the module's key: such a row is counted from its names.)
            cached = self._totals[key] = _sum(map(self.totals, kids))
        if cached is None:
            sizes = self._names.sizes.get(key)
            if sizes is None:  # from the names alone: kept for the next model
                params = nbytes = 0
                dtypes: Counter[str] = Counter()
                for n in row.names:
                    t = self.tensors[n]
                    params += t.numel
                    nbytes += t.nbytes
                    dtypes[t.dtype] += 1
                sizes = self._names.sizes[key] = (params, nbytes, _ordered(dtypes))
            marks = Counter(map(self.marks.get, row.names, repeat("")))
            cached = Totals(len(row.names), sizes[0], sizes[1], sizes[2], dict(marks))
            self._totals[key] = cached
        return cached

    def path_to(self, name: str, stop_at: str | None = None) -> list[Row] | None:
        """Rows from the top down to the leaf row holding tensor `name` (None if not shown); with
        `stop_at`, down to the row of that key on the way (None if there is none): the rows
        below it are not built (a folded layer list of 100k tensors is worked out only when
        shown)."""
        path: list[Row] = []
        row = self.root
        # `Row.covers` as a set test: a row covers `name` when one of its prefixes is one of
        # name's dotted prefixes (or empty). A folded row has thousands of prefixes.
        parts = name.split(".")
        dotted = {"", *(".".join(parts[:k]) for k in range(1, len(parts) + 1))}
        while not row.leaf:
            nxt = next((c for c in self.children(row)
                        if not dotted.isdisjoint(c.prefixes) and name in c.names), None)
            if nxt is None:
                return None
            path.append(nxt)
            if nxt.key == stop_at:
                return path
            row = nxt
        return None if stop_at is not None else path

    # Building rows ----------------------------------------------------------------------------
    def _group(self, row: Row) -> list[Row]:
        """`row`'s children before folding: they depend on the names alone (kept, and shared
        with the next model over the same names)."""
        key = (row.prefixes, row.depth)
        found = self._names.groups.get(key)
        if found is None:
            found = self._names.groups[key] = self._group_names(row)
        return found

    def _group_names(self, row: Row) -> list[Row]:
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
            if len(row.prefixes) == 1:  # one parent module: one child path
                parent = row.prefixes[0]
                prefixes = {f"{parent}.{seg}" if parent else seg: None}
            else:
                prefixes = dict.fromkeys(".".join(self._parts[n][: row.depth + 1])
                                         for n in names)
            leaf = all(len(self._parts[n]) == row.depth + 1 for n in names)
            label = self.titles.get(seg, seg) if row.depth == 0 else seg
            rows.append(Row(label, tuple(prefixes), tuple(names), row.depth + 1, leaf))
        return rows

    def _signature(self, row: Row) -> tuple[object, ...]:
        """What must agree for numbered siblings to fold: each tensor's relative name, dtype
        and shape (kept with the names) and its mark."""
        key = (row.prefixes, row.depth)
        shape = self._names.shapes.get(key)
        if shape is None:
            made = tuple(
                (tuple(self._parts[n][row.depth :]), self.tensors[n].dtype, self.tensors[n].shape)
                for n in row.names)
            # one object for equal ones: neighbours' signatures then compare by identity (a
            # redraw compares thousands of layers' signatures of dozens of tensors each)
            shape = self._names.shapes[key] = self._names.canonical.setdefault(made, made)
        return shape, self._marks_of(row)

    def _marks_of(self, row: Row) -> tuple[str | None, ...]:
        """The marks of `row`'s tensors, in order (None for a name without one): read in C
        through a getter kept with the names when every name has a mark (a redraw reads the
        marks of thousands of layers)."""
        key = _row_key(row)
        getter = self._names.getters.get(key)
        if getter is None:
            getter = self._names.getters[key] = _getter(row.names)
        try:
            return getter(self.marks)
        except KeyError:
            return tuple(map(self.marks.get, row.names))

    def _folded(self, row: Row) -> list[Row]:
        """`row`'s children folded, before chains are joined: worked out once per model (to
        join a chain, to show the row's children, to sum its totals)."""
        found = self._folds.get(row.prefixes)
        if found is None:
            found = self._folds[row.prefixes] = self._fold(self._group(row))
        return found

    def _fold(self, rows: list[Row]) -> list[Row]:
        """Numbered siblings with equal signatures folded into one row: the folded rows are
        kept with the names by the run they cover (the same runs fold again after most edits:
        their 100k names need not be joined again)."""
        out: list[Row] = []
        start = 0
        last: tuple[object, ...] = ()
        for i, r in enumerate(rows):
            if r.label.isdigit():
                sig = self._signature(r)
                if i > start and last != sig:
                    out.append(self._merged(rows, start, i))
                    start = i
                last = sig
                continue
            if i > start:
                out.append(self._merged(rows, start, i))
            out.append(r)
            start = i + 1
        if len(rows) > start:
            out.append(self._merged(rows, start, len(rows)))
        return out

    def _merged(self, rows: list[Row], start: int, stop: int) -> Row:
        if stop - start == 1:
            return rows[start]
        key = (id(rows), start, stop)  # `rows` is a list the layout keeps: its id is stable
        merged = self._names.merged
        made = merged.get(key)
        if made is None:
            if len(merged) >= MAX_MERGED:  # runs of folds long gone: made again when shown
                merged.clear()
            made = merged[key] = _merge(rows[start:stop])
        return made

    def _collapse(self, row: Row) -> Row:
        """Join a chain of single children into one row, stopping at a fold or a leaf."""
        while not row.leaf and not row.folded:
            kids = self._folded(row)
            if len(kids) != 1 or kids[0].leaf or kids[0].label == SELF:
                return row
            kid = kids[0]
            row = Row(f"{row.label}.{kid.label}", kid.prefixes, kid.names, kid.depth, kid.leaf,
                      member=kid.member, repeats=kid.repeats)
        return row


@dataclass
class _NameLayout:
    """What a tree's rows are, from the names alone: each name's parts, each row's children
    before folding, each row's relative names, dtypes and shapes. Edits change marks, never
    names: the models shown one after another over the same names share one layout."""

    parts: dict[str, list[str]]
    groups: dict[tuple[tuple[str, ...], int], list[Row]] = field(default_factory=dict)
    shapes: dict[tuple[tuple[str, ...], int], tuple[object, ...]] = field(default_factory=dict)
    canonical: dict[tuple[object, ...], tuple[object, ...]] = field(default_factory=dict)
    sizes: dict[tuple[tuple[str, ...], bool], tuple[int, int, dict[str, int]]] = field(
        default_factory=dict)
    getters: dict[tuple[tuple[str, ...], bool], Callable[[Mapping[str, str]], tuple[str, ...]]] = (
        field(default_factory=dict))
    merged: dict[tuple[int, int, int], Row] = field(default_factory=dict)  # see TreeModel._fold


def _getter(names: tuple[str, ...]) -> Callable[[Mapping[str, str]], tuple[str, ...]]:
    """`lambda marks: tuple(marks[n] for n in names)`, run in C."""
    if len(names) == 1:  # itemgetter of one key gives the value, not a tuple
        (name,) = names
        return lambda marks: (marks[name],)
    return itemgetter(*names)


def _row_key(row: Row) -> tuple[tuple[str, ...], bool]:
    """A row's key for what is kept of its names (totals, sizes, getters): its prefixes, and
    whether it is a leaf (a tensor named like its module, `SELF`, is a leaf with the module's
    prefixes)."""
    return row.prefixes, row.leaf


def _sum(parts: Iterable[Totals]) -> Totals:
    tensors = params = nbytes = 0
    dtypes: Counter[str] = Counter()
    marks: Counter[str] = Counter()
    for t in parts:
        tensors, params, nbytes = tensors + t.tensors, params + t.params, nbytes + t.nbytes
        dtypes.update(t.dtypes)
        marks.update(t.marks)
    return Totals(tensors, params, nbytes, _ordered(dtypes), dict(marks))


def _ordered(dtypes: Counter[str]) -> dict[str, int]:
    """Dtypes by count, then name: the same order however the totals were summed."""
    return dict(sorted(dtypes.items(), key=lambda kv: (-kv[1], kv[0])))


def _merge(run: list[Row]) -> Row:
    if len(run) == 1:
        return run[0]
    label = "{" + format_ranges(int(r.label) for r in run) + "}"
    prefixes = tuple(chain.from_iterable(r.prefixes for r in run))
    names = tuple(chain.from_iterable(r.names for r in run))
    return Row(label, prefixes, names, run[0].depth, run[0].leaf, member=run[0],
               repeats=len(run))
