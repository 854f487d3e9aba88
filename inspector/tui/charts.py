"""What the plots under the details draw, from the review state and the facts at hand: the
mapped pairs below a module row and their per-layer change rows. Pure functions on the UI
thread (the comparisons themselves run in a worker, `jobs.pair_facts`); no widgets, no I/O."""

from __future__ import annotations

from ..plotting import ChangeRow, change_rows
from .messages import PairFacts
from .state import ReviewState
from .treemodel import Row

CHART_BYTES = 256 << 20  # a module's chart reads at most this much of both sides' values
CHART_TENSORS = 20_000  # a module row with more tensors below it is not charted

Pair = tuple[str, str]  # (source, target), as the screen keys its pair facts


def module_pairs(state: ReviewState, side: str, row: Row) -> list[Pair]:
    """The rows below a module row copied from one source tensor of the same shape: the pairs
    whose values compare."""
    targets = list(row.names) if side == "target" else [
        t for s in row.names for t in state.readers_of(s)]
    entries, sources, tensors = state.plan.entries, state.source_tensors, state.target_tensors
    out = []
    for t in dict.fromkeys(targets):
        e = entries.get(t)
        if e is None or e.effective != "copy" or len(e.sources) != 1:
            continue  # a copy's partners are its sources (`ReviewState.partners`): one here
        shown = state.shown_source(*e.sources[0])
        if sources[shown].shape == tensors[t].shape:
            out.append((shown, t))
    return out


def pairs_nbytes(state: ReviewState, pairs: list[Pair]) -> int:
    src, tgt = state.source_tensors, state.target_tensors
    return sum(src[s].nbytes + tgt[t].nbytes for s, t in pairs)


def chart_rows(pairs: list[Pair], facts: dict[Pair, PairFacts]) -> list[ChangeRow]:
    """Per-layer rows of the pairs compared so far (by target name)."""
    figures = []
    for s, t in pairs:
        f = facts.get((s, t))
        if f is not None and f.rel_l2 is not None and f.cosine is not None:
            figures.append((t, f.rel_l2, f.cosine))
    return change_rows(figures)
