"""Stateful groups: tensors of one module that move as a unit (a norm's weight with its running
statistics, weight-norm pairs), and tensors that follow a lead (a bias its weight), by name
suffix; see docs/mapping.md."""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Iterable, Mapping
from operator import methodcaller
from typing import Any

from .entries import DECLARED_KEEP_FLAGS, Candidate, Entry, Evidence

# Tensors of one module that move as a unit, by name suffix after the module path. Within one
# group, when any anchor keeps its init, every member (anchors and followers) keeps it: a
# BatchNorm whose weight keeps the target's values keeps its running statistics too. When no
# anchor is in the target (a BatchNorm without affine), the followers are the anchors.
# (anchors, followers)
STATEFUL_GROUPS: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = (
    # torch BatchNorm*/InstanceNorm*(track_running_stats) and SyncBatchNorm buffers
    (("weight", "bias"), ("running_mean", "running_var", "num_batches_tracked")),
    # torch.nn.utils.weight_norm: magnitude and direction are one weight (fairseq, wav2vec2)
    (("weight_g", "weight_v"), ()),
    # torch.nn.utils.parametrizations.weight_norm (transformers >= 4.40)
    (("parametrizations.weight.original0", "parametrizations.weight.original1"), ()),
)

# One-way: a tensor that follows another of its module when that one keeps its init, but is not
# carried along by approve/reject (a Linear's weight and bias are not a group). (follower, lead)
# A conv whose kernel changed keeps its bias too, even though the bias alone would still fit.
FOLLOWS_LEAD: tuple[tuple[str, str], ...] = (("bias", "weight"),)


def _by_last_part() -> dict[str, list[tuple[str, int, bool]]]:
    """STATEFUL_GROUPS as (suffix, group index, is anchor) by the suffix's last dotted part, in
    table order: a name is looked up by its own last part (100k names in bulk edits)."""
    out: dict[str, list[tuple[str, int, bool]]] = {}
    for gi, (anchors, followers) in enumerate(STATEFUL_GROUPS):
        for suffixes, anchor in ((anchors, True), (followers, False)):
            for suffix in suffixes:
                out.setdefault(suffix.rpartition(".")[2], []).append((suffix, gi, anchor))
    return out


_GROUP_SUFFIXES = _by_last_part()


def _deciding_tails() -> tuple[str, ...]:
    """The name endings that make a group: a follower of a group that has followers (a Linear's
    weight and bias alone are none), an anchor of one that has none; as `.suffix`."""
    return tuple(f".{s}" for anchors, followers in STATEFUL_GROUPS for s in followers or anchors)


_DECIDING_TAILS = _deciding_tails()


def _groups_in(names: Iterable[str]) -> dict[tuple[str, int], None]:
    """The (module path, group index) of every stateful group with members among `names`, in
    the order of their first deciding name. Names are looked at one by one only when they end
    as a group's deciding member: most of 100k names end in `.weight` and make no group."""
    out: dict[tuple[str, int], None] = {}
    for name in filter(methodcaller("endswith", _DECIDING_TAILS), names):
        found = _split_group_name(name)
        if found is not None:
            out[found[:2]] = None
    return out


def _split_group_name(name: str) -> tuple[str, int, bool] | None:
    """(module path, group index, is anchor) for a name that ends in a STATEFUL_GROUPS suffix."""
    for suffix, gi, anchor in _GROUP_SUFFIXES.get(name.rpartition(".")[2], ()):
        if name.endswith("." + suffix):
            return name[: -len(suffix) - 1], gi, anchor
    return None


def group_members(name: str, entries: Mapping[str, Any]) -> list[str]:
    """The other members in `entries` of `name`'s stateful group ([] when it has none)."""
    found = _split_group_name(name)
    if found is None:
        return []
    return [m for m in _members(found[0], found[1], entries) if m != name]


def _members(module: str, gi: int, entries: Collection[str]) -> list[str]:
    """Group `gi`'s tensors of `module` in `entries`; [] when the group has followers and the
    module holds none of them (a Linear's weight and bias are not a group, a BatchNorm's are)."""
    anchors, followers = STATEFUL_GROUPS[gi]
    if followers and not any(f"{module}.{s}" in entries for s in followers):
        return []
    return [m for s in (*anchors, *followers) if (m := f"{module}.{s}") in entries]


def group_index(names: Iterable[str]) -> dict[str, list[str]]:
    """Each name that has stateful-group members among `names` -> those members (without
    itself): `group_members` for every name at once, in one pass (bulk edits of 100k rows)."""
    present = names if isinstance(names, (set, dict)) else set(names)
    out: dict[str, list[str]] = {}
    for module, gi in _groups_in(present):
        members = _members(module, gi, present)
        for m in members:
            others = [x for x in members if x != m]
            if others:
                out[m] = others
    return out


def follow_groups(entries: dict[str, Entry]) -> dict[str, Entry]:
    """Make every stateful group move as a unit: when an anchor of a group keeps its init, the
    members that would be copied keep theirs too, reason `follows <anchor>`, with the anchor's
    declaring flags (so a follower of a partial is a partial). Rows the user decided are left."""
    out = dict(entries)
    for module, gi in _groups_in(entries):
        members = _members(module, gi, entries)
        leads = [m for m in members if _split_group_name(m)[2]] or members  # type: ignore[index]
        lead = next((m for m in leads if entries[m].effective == "keep"), None)
        if lead is None:
            continue
        for m in members:
            if entries[m].effective == "copy" and entries[m].status == "proposed":
                out[m] = _follower(entries[m], entries[lead])
    return _follow_leads(out)


def _follow_leads(entries: dict[str, Entry]) -> dict[str, Entry]:
    """FOLLOWS_LEAD: a proposed copy whose lead keeps its init keeps its init too."""
    out = dict(entries)
    for follower, lead in FOLLOWS_LEAD:
        for name in filter(methodcaller("endswith", "." + follower), entries):
            e = entries[name]
            if e.effective != "copy" or e.status != "proposed":
                continue
            lead_row = entries.get(name[: -len(follower)] + lead)
            if lead_row is not None and lead_row.effective == "keep":
                out[name] = _follower(e, lead_row, f"follows its {lead}, which keeps its init")
    return out


def _follower(e: Entry, lead: Entry, reason: str = "") -> Entry:
    reason = reason or f"follows {lead.target}" + (f" ({lead.reason})" if lead.reason else "")
    return dataclasses.replace(
        e,
        decision="keep",
        sources=(),
        transform=(),
        source_shapes=(),
        source_dtypes=(),
        reason=reason,
        evidence=(*e.evidence, Evidence("group", f"moves with {lead.target}")),
        flags=lead.flags & (DECLARED_KEEP_FLAGS | {"shape-mismatch"}),
        candidates=tuple(Candidate(lb, n, e.confidence, "would copy alone") for lb, n in e.sources),
    )

