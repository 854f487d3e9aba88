"""Inversion of a plan: the entries that map the target back onto the (single) source.

`Plan.invert` assembles the inverse plan from `invert_parts`; a copy becomes a copy the other way
with the inverse transform chain, a concat splits into its parts and split parts concatenate.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from ..errors import PlanError
from ..tree import fold_names
from .entries import Entry, PlanData, PlanParts, Unused
from .rules import invert_rules, selection_paths
from .transforms import Concat, Split, chain_inverse


def invert_parts(fwd: PlanData) -> PlanParts:
    """The parts of the plan that maps `fwd`'s target back onto its source (see `Plan.invert`)."""
    if len(fwd.sources) != 1:
        raise PlanError(f"a plan with {len(fwd.sources)} sources cannot be inverted")
    _refuse_selection(fwd)
    src = fwd.sources[0]
    new_target = dataclasses.replace(src, prefix="")
    new_source = dataclasses.replace(fwd.target, prefix="")
    try:
        rules = invert_rules(fwd.rules)
    except PlanError:
        rules = []
    entries: dict[str, Entry] = {}
    for e in fwd.entries.values():
        if e.effective == "copy":
            for inv in _invert_entry(e, new_source.label):
                _add_inverse(entries, inv)
    for group in _split_groups(fwd.entries.values()):
        _add_inverse(entries, _invert_split_group(group, new_source.label))
    unused_names = {(u.label, u.name): u for u in fwd.unused}
    for (_, name), u in sorted(unused_names.items()):
        if name not in entries:
            entries[name] = Entry(
                name,
                "keep",
                reason=f"not used by the forward plan ({u.reason})",
                flags=frozenset({"no-source"}),
            )
    unused = [
        Unused(new_source.label, e.target, f"kept its own init in the forward plan: {e.reason}")
        for e in fwd.entries.values()
        if e.effective != "copy"
    ]
    return [new_source], new_target, rules, dict(sorted(entries.items())), unused


def _refuse_selection(fwd: PlanData) -> None:
    """A layer selection (every other layer, the first six) leaves the source's other layers out:
    inverted, those layers would silently keep their init. Refused, naming them."""
    for path in selection_paths(fwd.rules):
        left = [u.name for u in fwd.unused if u.reason.startswith(f"dropped by {path}:")]
        if left:
            folded = ", ".join(fold_names(left)[:3])
            raise PlanError(
                f"{path} selects layers and leaves {len(left)} source tensor(s) out ({folded}"
                f"{', ...' if len(fold_names(left)) > 3 else ''}): the inverse plan would keep "
                "them at their init; propose the other direction with its own rules instead "
                "(ckpt map STUDENT TEACHER --rules ...)"
            )


def _invert_entry(e: Entry, label: str) -> list[Entry]:
    if e.transform and isinstance(e.transform[0], Split):
        return []  # handled per group
    if len(e.sources) == 1:
        ((_, name),) = e.sources
        steps = chain_inverse(e.transform, list(e.source_shapes), list(e.source_dtypes))
        return [
            Entry(
                name,
                "copy",
                ((label, e.target),),
                transform=tuple(steps),
                status=e.status,
                reason=f"inverse of: {e.reason}",
                confidence=e.confidence,
                flags=e.flags - {"user"},
                shape=e.source_shapes[0],
                dtype=e.source_dtypes[0],
                source_shapes=(e.shape,),
                source_dtypes=(e.dtype,),
            )
        ]
    if not e.transform or not isinstance(e.transform[0], Concat):
        raise PlanError(
            f"entries[{e.target!r}]: {len(e.sources)} sources without a concat cannot be inverted"
        )
    rest = chain_inverse(
        e.transform[1:], [e.transform[0].out_shape(list(e.source_shapes))], [e.source_dtypes[0]]
    )
    split = e.transform[0].inverse(list(e.source_shapes), list(e.source_dtypes))
    assert isinstance(split, Split)
    out = []
    for i, ((_, name), shape, dtype) in enumerate(
        zip(e.sources, e.source_shapes, e.source_dtypes, strict=True)
    ):
        part_steps = (*rest, dataclasses.replace(split, index=i))
        out.append(
            Entry(
                name,
                "copy",
                ((label, e.target),),
                transform=part_steps,
                status=e.status,
                reason=f"inverse of: {e.reason}",
                confidence=e.confidence,
                flags=e.flags - {"user"},
                shape=shape,
                dtype=dtype,
                source_shapes=(e.shape,),
                source_dtypes=(e.dtype,),
            )
        )
    return out


def _split_groups(entries: Iterable[Entry]) -> list[list[Entry]]:
    groups: dict[tuple[str, str], list[Entry]] = {}
    for e in entries:
        if e.effective == "copy" and e.transform and isinstance(e.transform[0], Split):
            groups.setdefault(e.sources[0], []).append(e)
    return list(groups.values())


def _invert_split_group(group: list[Entry], label: str) -> Entry:
    first = group[0]
    split = first.transform[0]
    assert isinstance(split, Split)
    by_index = {e.transform[0].index: e for e in group if isinstance(e.transform[0], Split)}
    if sorted(by_index) != list(range(len(split.sizes))) or any(
        len(e.transform) != 1 for e in group
    ):
        raise PlanError(
            f"entries[{first.target!r}]: the parts of split source {first.sources[0][1]!r} "
            "do not cover it exactly once: not invertible"
        )
    parts = [by_index[i] for i in range(len(split.sizes))]
    return Entry(
        first.sources[0][1],
        "copy",
        tuple((label, p.target) for p in parts),
        transform=(Concat(split.axis, split.sizes),),
        status=first.status,
        reason=f"inverse of: {first.reason}",
        confidence=min(p.confidence for p in parts),
        shape=first.source_shapes[0],
        dtype=first.source_dtypes[0],
        source_shapes=tuple(p.shape for p in parts),
        source_dtypes=tuple(p.dtype for p in parts),
    )


def _add_inverse(entries: dict[str, Entry], e: Entry) -> None:
    if e.target in entries:
        raise PlanError(
            f"source tensor {e.target!r} feeds several targets: the plan cannot be inverted"
        )
    entries[e.target] = e

