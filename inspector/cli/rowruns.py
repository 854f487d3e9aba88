"""Plan rows folded for people: the modules that differ only in indices shown as one section,
and one reason for a run of rows that differ only in layer indices. Shared by `ckpt map`'s
report and `ckpt plan show`, so a plan of 100k rows reads the same way in both."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ..mapping import names as nm
from ..tree import fold_names

DIGITS = re.compile(r"\d+")
# A quoted name in a reason that begins with an index (`suffix '0.experts.3.w1.weight'`): its
# first component is one too, though no dot comes before it.
_QUOTED_INDEX = re.compile(r"(?<=')[0-9]+(?=\.)")


def reason_keys(reasons: list[str]) -> list[str]:
    """The reasons with their index components blanked, as runs of rows compare them: each
    name's (`names.blanked_many`) and a quoted name's first. Without the second, rows ranked by
    similarity (their reason quotes the shared suffix, from the layer index on) never folded
    across layers: 12,500 lines for 100k rows."""
    out = nm.blanked_many(reasons)
    if any("\n" in r for r in out):
        return [_QUOTED_INDEX.sub("{}", r) for r in out]
    joined = "\n".join(out)
    if "'" not in joined:
        return out
    return _QUOTED_INDEX.sub("{}", joined).split("\n")


def alike(groups: Mapping[str, Any]) -> list[list[str]]:
    """Modules whose names differ only in indices, together (in first-seen order): a model
    whose top level is its layer stack (`model.layers.N`, one module per layer) prints one
    section for its layers, folded, not one per layer."""
    out: dict[str, list[str]] = {}
    for mod in groups:
        out.setdefault(nm.blanked(mod), []).append(mod)
    return list(out.values())


def folded_reason(reasons: list[str]) -> str:
    """One reason for a folded run (whose reasons are equal once their index components are
    blanked): the reasons folded like names when that gives one, else the first layer's said
    once when the others differ from it only in numbers, else each."""
    distinct = list(dict.fromkeys(reasons))
    same_words, varying = numbers_apart(distinct)
    if same_words and len(distinct) > 1 and varying > 1:
        # fold_names folds one index at a time: it cannot make these one line (and at 100k
        # rows trying costs seconds)
        return f"{distinct[0]}; the same in each layer"
    folded = fold_names(distinct)
    if len(folded) == 1:  # `a.pt:layers.{0..3}.w has shape ...`
        return folded[0]
    if same_words:
        return f"{distinct[0]}; the same in each layer"
    return ", ".join(folded)


def numbers_apart(texts: list[str]) -> tuple[bool, int]:
    """Whether `texts` (the distinct reasons of one run) differ only in their numbers, and if so
    how many of their numbers take more than one value, counted up to 2. A run's reasons are
    equal once their index components are blanked, so unless one says `{}` itself they differ
    only there: then comparing them with the first stops at the second number seen to vary (a
    run can hold 100k reasons)."""
    if any("{}" in t for t in texts):
        words = {DIGITS.sub("#", t) for t in texts}
        if len(words) != 1:
            return False, 0
    first = DIGITS.findall(texts[0])
    varying: set[int] = set()
    for t in texts[1:]:
        varying.update(k for k, (a, b) in enumerate(zip(first, DIGITS.findall(t), strict=True))
                       if a != b)
        if len(varying) > 1:
            break
    return True, len(varying)
