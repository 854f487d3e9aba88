"""Plan rows tallied as columns: the per-module transfer summary and the counts by row state.

Each row's state (`entries.row_state`) is numbered in one pass over the rows; what a state
means (copied, kept, dropped, a problem) is asked once per state, and the per-module sums are
numpy sums over the numbers. What depends on the names alone (each row's module, its layer,
its element count) is worked out once per set of names (`Layout`): edits change states, never
names or shapes. A TUI redraws the summary and the counts after every edit of 100k rows: a
Python step per row took 40-70 ms there.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from itertools import count
from math import prod
from typing import TYPE_CHECKING

from .entries import Entry, ModuleSummary, RowState, in_state, is_problem, row_state

if TYPE_CHECKING:
    import numpy as np


@dataclass(frozen=True)
class Layout:
    """What the tally reads of the rows' names and shapes (never changed by edits)."""

    modules: list[str]  # in the order of their first row
    module_of_row: np.ndarray  # int64: index into `modules`
    numel: np.ndarray  # int64: elements of each row's (target) tensor
    layer_of_row: np.ndarray  # int64: index of the row's layer among all stacks' layers, or -1
    module_of_layer: np.ndarray  # int64: index into `modules` of each layer's module
    stacked: frozenset[str]  # modules with a layer stack


def layout(entries: Mapping[str, Entry], modules: Sequence[str],
           stacks: Mapping[str, Mapping[int, list[str]]]) -> Layout:
    """The layout of `entries`, given each row's module (in row order) and each module's layer
    stack (index -> member names), as `Plan._modules_and_stacks` works them out."""
    import numpy as np

    numbers: dict[str, int] = {}  # module -> its index, by first row
    module_of_row = np.array([numbers.setdefault(m, len(numbers)) for m in modules], np.int64)
    numel = np.fromiter((prod(e.shape) for e in entries.values()), np.int64, len(entries))
    row_of = {name: i for i, name in enumerate(entries)}
    layer_of_row = np.full(len(entries), -1, np.int64)
    module_of_layer: list[int] = []
    for mod, layers in stacks.items():
        for members in layers.values():
            layer_of_row[[row_of[n] for n in members]] = len(module_of_layer)
            module_of_layer.append(numbers[mod])
    return Layout(list(numbers), module_of_row, numel, layer_of_row,
                  np.array(module_of_layer, np.int64), frozenset(stacks))


class Tally:
    """The rows of a plan as they are now, their states numbered once (`states`): the counts
    by state and the summary are then read from the same numbers."""

    def __init__(self, entries: Mapping[str, Entry], lay: Layout):
        self.entries = entries
        self.layout = lay

    @cached_property
    def states(self) -> tuple[list[RowState], np.ndarray]:
        """The distinct row states (in order of their first row) and each row's index into
        them: numbered in C as they are met, one pass over the rows."""
        import numpy as np

        ids: defaultdict[RowState, int] = defaultdict(count().__next__)
        found = np.fromiter(map(ids.__getitem__, map(row_state, self.entries.values())),
                            np.int64, len(self.entries))
        return list(ids), found

    def state_counts(self) -> dict[RowState, int]:
        """How many rows are in each state."""
        import numpy as np

        seen, ids = self.states
        return dict(zip(seen, map(int, np.bincount(ids, minlength=len(seen))), strict=True))

    def summary(self) -> dict[str, ModuleSummary]:
        """Per-module counts (see `Plan.summary`)."""
        import numpy as np

        seen, ids = self.states
        lay = self.layout
        rows = [in_state(s) for s in seen]  # a row per state: what the predicates answer for all
        copy = np.array([e.effective == "copy" for e in rows], bool)[ids]
        keep = np.array([e.effective == "keep" for e in rows], bool)[ids]
        problem = np.array([e.effective == "keep" and is_problem(e) for e in rows], bool)[ids]
        n = len(lay.modules)
        mod = lay.module_of_row

        def per_module(mask: np.ndarray | None = None,
                       weights: np.ndarray | None = None) -> list[int]:
            rows = mod if mask is None else mod[mask]
            if weights is None:
                return np.bincount(rows, minlength=n).tolist()
            sums = np.zeros(n, np.int64)  # exact int64 sums (bincount's weights are floats)
            np.add.at(sums, rows, weights if mask is None else weights[mask])
            return sums.tolist()

        tensors, params = per_module(), per_module(weights=lay.numel)
        copied, params_copied = per_module(copy), per_module(copy, lay.numel)
        kept, problems = per_module(keep), per_module(problem)
        layers = np.bincount(lay.module_of_layer, minlength=n)
        broken = np.unique(lay.layer_of_row[~copy & (lay.layer_of_row >= 0)])  # a row not copied
        layers_copied = layers - np.bincount(lay.module_of_layer[broken], minlength=n)
        out = {}
        for i, name in enumerate(lay.modules):
            s = out[name] = ModuleSummary(
                name, tensors=tensors[i], copied=copied[i], kept=kept[i],
                dropped=tensors[i] - copied[i] - kept[i], problems=problems[i],
                params=params[i], params_copied=params_copied[i])
            if name in lay.stacked:
                s.layers, s.layers_copied = int(layers[i]), int(layers_copied[i])
        return out
