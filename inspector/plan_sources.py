"""Which checkpoint stands for each of a plan's sources, by its label.

    bind_sources(plan, ["enc.nemo", "dec.nemo"])          # one per source, in the plan's order
    bind_sources(plan, ["dec.nemo=/new/dec.nemo"])        # LABEL=PATH: that label only
    bind_sources(plan, None)                              # the paths the plan records

`given` is one item or a list of them: a path (`PATH::ROOT` allowed), a Checkpoint, a state
dict or a module, or `LABEL=PATH` / `(LABEL, item)` for one label. Items without a label fill
the labels not named, in the plan's order; their count must be exactly that. Labels left without
an item (none given at all) open the path the plan records. Errors (PlanError) name the label.
`mismatches` names each label whose checkpoint's header fingerprint is not the plan's.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from .errors import PlanError
from .mapping.entries import SourceRef, fingerprint
from .mapping.prefixed import parse_source
from .model import Checkpoint
from .reader import is_remote, open_checkpoint, split_root


def bind_sources(plan: Any, given: Any) -> dict[str, Checkpoint]:
    """{label: opened checkpoint} for every source of `plan` (see the module's doc)."""
    refs = {ref.label: ref for ref in plan.sources}
    named, plain = _split(given, refs)
    rest = [label for label in refs if label not in named]
    if plain and len(plain) != len(rest):
        left = f" for the {len(rest)} not named ({', '.join(rest)})" if named else ""
        raise PlanError(
            f"the plan has {len(refs)} source(s) ({', '.join(refs)}); {len(plain)} given{left}: "
            "give one per source in the plan's order, or LABEL=PATH"
        )
    items = {**named, **dict(zip(rest, plain, strict=False))}
    return {label: open_ref(ref, items.get(label)) for label, ref in refs.items()}


def mismatches(plan: Any, sources: dict[str, Checkpoint]) -> list[tuple[SourceRef, str, str]]:
    """(ref, file, problem) for each source whose header fingerprint differs from the plan's
    (a plan without a recorded fingerprint matches anything)."""
    out = []
    for ref in plan.sources:
        ckpt = sources[ref.label]
        got = fingerprint(ckpt)
        if ref.fingerprint and got != ref.fingerprint:
            problem = f"header fingerprint {got} differs from the plan's {ref.fingerprint}"
            out.append((ref, ckpt.label, problem))
    return out


def _split(given: Any, refs: dict[str, SourceRef]) -> tuple[dict[str, Any], list[Any]]:
    if given is None:
        return {}, []
    items = list(given) if isinstance(given, (list, tuple)) else [given]
    named: dict[str, Any] = {}
    plain: list[Any] = []
    for item in items:
        label, obj = _label_of(item)
        if not label:
            plain.append(obj)
            continue
        if label not in refs:
            raise PlanError(f"{label!r}: no source of the plan has this label ({', '.join(refs)})")
        if label in named:
            raise PlanError(f"source {label!r} given twice")
        named[label] = obj
    return named, plain


def _label_of(item: Any) -> tuple[str, Any]:
    if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str):
        return item
    if isinstance(item, str):
        return parse_source(item)
    return "", item


def open_ref(ref: SourceRef, item: Any) -> Checkpoint:
    """`item` (a path, PATH::ROOT, a Checkpoint, ...) opened for `ref`, or `ref`'s own path when
    `item` is None; PlanError naming the label when there is no such file."""
    if item is None:
        if not ref.path:
            raise PlanError(f"{ref.label!r}: not given, and the plan records no path")
        item = ref.path
    source, own_root = split_root(item)
    if isinstance(source, (str, os.PathLike)) and not (
        os.path.exists(source) or is_remote(os.fspath(source))
    ):
        raise PlanError(f"{ref.label!r}: {os.fspath(source)}: no such file or folder")
    return open_checkpoint(source, root=own_root if own_root is not None else (ref.root or None))


__all__: Sequence[str] = ["bind_sources", "mismatches", "open_ref"]
