"""Plan rows tallied as columns: the per-module transfer summary and the counts by row state.

Each row's state (`entries.row_state`) is numbered in one pass over the rows; what a state
means (copied, kept, a problem) is asked once per state, and the per-module sums are counts
over columns of numbers, made by C-level passes (`map`, `compress`, `Counter`), not a Python
step per row. What depends on the names and shapes alone (each row's module and layer, its
element count) is worked out once per set of names (`Layout`): edits change states, never names
or shapes (a row's shape is its target tensor's). A TUI redraws the summary and the counts after
every edit of 100k rows: a Python step per row took 40-70 ms there.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from itertools import compress, count, pairwise
from math import prod
from operator import not_

from .entries import Entry, ModuleSummary, RowState, in_state, is_problem, row_state


@dataclass(frozen=True)
class Layout:
    """What the tally reads of the rows' names and shapes (never changed by edits)."""

    modules: list[str]  # in the order of their first row
    module_of_row: list[int]  # index into `modules`
    tensors: list[int]  # rows of each module
    params: list[int]  # elements of each module's rows
    order: list[int] | None  # row indices grouped by module (None: they already are)
    bounds: list[tuple[int, int]]  # each module's run of `order`
    numel: list[int]  # each row's elements, in `order`
    layer_of_row: list[int]  # the row's layer among all stacks' layers, or -1
    module_of_layer: list[int]  # index into `modules` of each layer's module
    stacks: Mapping[str, Mapping[int, list[str]]]  # module -> its layer stack (index -> names)


def layout(entries: Mapping[str, Entry], modules: Sequence[str],
           stacks: Mapping[str, Mapping[int, list[str]]]) -> Layout:
    """The layout of `entries`, given each row's module (in row order) and each module's layer
    stack (index -> member names), as `Plan._tally_layout` works them out."""
    numbers: dict[str, int] = {}  # module -> its index, by first row
    module_of_row = [numbers.setdefault(m, len(numbers)) for m in modules]
    numel = [prod(e.shape) for e in entries.values()]
    grouped = all(a <= b for a, b in pairwise(module_of_row))
    order = None if grouped else sorted(range(len(module_of_row)), key=module_of_row.__getitem__)
    tensors = [0] * len(numbers)
    for m, n in Counter(module_of_row).items():
        tensors[m] = n
    bounds, start = [], 0
    for n in tensors:
        bounds.append((start, start + n))
        start += n
    if order is not None:
        numel = [numel[i] for i in order]
    row_of = {name: i for i, name in enumerate(entries)}
    layer_of_row = [-1] * len(entries)
    module_of_layer: list[int] = []
    for mod, layers in stacks.items():
        for members in layers.values():
            for name in members:
                layer_of_row[row_of[name]] = len(module_of_layer)
            module_of_layer.append(numbers[mod])
    return Layout(list(numbers), module_of_row, tensors, [sum(numel[a:b]) for a, b in bounds],
                  order, bounds, numel, layer_of_row, module_of_layer, stacks)


class Tally:
    """The rows of a plan as they are now, their states numbered once (`states`): the counts
    by state and the summary are then read from the same numbers."""

    def __init__(self, entries: Mapping[str, Entry], lay: Layout):
        self.entries = entries
        self.layout = lay

    @cached_property
    def states(self) -> tuple[list[RowState], list[int]]:
        """The distinct row states (in order of their first row) and each row's index into
        them: numbered in C as they are met, one pass over the rows."""
        ids: defaultdict[RowState, int] = defaultdict(count().__next__)
        found = list(map(ids.__getitem__, map(row_state, self.entries.values())))
        return list(ids), found

    def state_counts(self) -> dict[RowState, int]:
        """How many rows are in each state."""
        seen, ids = self.states
        counted = Counter(ids)
        return {state: counted[i] for i, state in enumerate(seen)}

    def summary(self) -> dict[str, ModuleSummary]:
        """Per-module counts (see `Plan.summary`)."""
        lay = self.layout
        rows = [in_state(s) for s in self.states[0]]  # a row per state: what predicates answer
        copy = [e.effective == "copy" for e in rows]
        copied = self._per_module(copy)
        kept = self._per_module([e.effective == "keep" for e in rows])
        problems = self._per_module([e.effective == "keep" and is_problem(e) for e in rows])
        if all(copy):  # every row (a bulk approve): no column to read
            params_copied, broken = lay.params, set()
        elif not any(copy):  # none (a bulk reject)
            params_copied, broken = [0] * len(lay.modules), set(lay.layer_of_row)
        else:
            column = self._column(copy)
            in_order = column if lay.order is None else [column[i] for i in lay.order]
            params_copied = [sum(compress(lay.numel[a:b], in_order[a:b])) for a, b in lay.bounds]
            broken = set(compress(lay.layer_of_row, map(not_, column)))  # a row not copied
        broken.discard(-1)  # the rows in no layer
        layers, layers_broken = Counter(lay.module_of_layer), Counter(
            map(lay.module_of_layer.__getitem__, broken))
        out = {}
        for i, name in enumerate(lay.modules):
            s = out[name] = ModuleSummary(
                name, tensors=lay.tensors[i], copied=copied[i], kept=kept[i],
                dropped=lay.tensors[i] - copied[i] - kept[i], problems=problems[i],
                params=lay.params[i], params_copied=params_copied[i])
            if name in lay.stacks:
                s.layers, s.layers_copied = layers[i], layers[i] - layers_broken[i]
        return out

    def _per_module(self, per_state: list[bool]) -> list[int]:
        """Rows of each module whose state answers True."""
        lay = self.layout
        if all(per_state):
            return lay.tensors
        if not any(per_state):
            return [0] * len(lay.modules)
        counted = Counter(compress(lay.module_of_row, self._column(per_state)))
        return [counted[i] for i in range(len(lay.modules))]

    def _column(self, per_state: list[bool]) -> list[bool]:
        """Each row's answer, from its state's."""
        return list(map(per_state.__getitem__, self.states[1]))
