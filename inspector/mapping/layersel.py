"""`--layers`: a layer selection (`every:2`, `first:6`, `0,2,4`) written as ordinary rules.

A 6-layer student from a 12-layer teacher, or a teacher kept up to a middle layer: the selection
becomes one template rule per layer container (`encoder.layers.{2*n}` -> `encoder.layers.{n}`,
`n: 0..5`), so the plan stores it like any other rule and `ckpt plan show` prints it.
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ..errors import PlanError
from . import names as nm
from .indexexpr import Affine
from .rules import Rule, Template, apply_rules, load_rules, rules_from_list

_EVERY = re.compile(r"^every:(\d+)$")
_FIRST = re.compile(r"^first(?::(\d+))?$")
_LIST = re.compile(r"^\d+(,\d+)*$")


@dataclass(frozen=True)
class LayerSpec:
    """What `--layers` says: every K-th source layer, the first N (None: as many as the target
    has), or these source layers in this order."""

    text: str
    every: int | None = None
    first: int | None = None
    indices: tuple[int, ...] = ()

    def pick(self, source: list[int], wanted: int) -> list[int]:
        """The selected source layer indices, given the source's (sorted) and the target's count."""
        if self.every is not None:
            return source[:: self.every]
        if self.indices:
            missing = [i for i in self.indices if i not in source]
            if missing:
                raise PlanError(f"--layers {self.text}: the source has no layer(s) {missing}")
            return list(self.indices)
        return source[: wanted if self.first is None else self.first]


def parse_layers(text: str) -> LayerSpec:
    """`every:2`, `first`, `first:6`, or `0,2,4,6,8,10` (distinct, increasing by a fixed step)."""
    spec = text.replace(" ", "")
    if m := _EVERY.match(spec):
        if int(m.group(1)) < 1:
            raise PlanError(f"--layers {text}: every:K needs K >= 1")
        return LayerSpec(text, every=int(m.group(1)))
    if m := _FIRST.match(spec):
        if m.group(1) is not None and int(m.group(1)) < 1:
            raise PlanError(f"--layers {text}: first:N needs N >= 1")
        return LayerSpec(text, first=None if m.group(1) is None else int(m.group(1)))
    if _LIST.match(spec):
        indices = tuple(int(i) for i in spec.split(","))
        _step(indices, text)
        return LayerSpec(text, indices=indices)
    raise PlanError(f"--layers {text}: expected every:K, first, first:N or a list like 0,2,4")


def _step(indices: tuple[int, ...] | list[int], text: str) -> Affine:
    """The `a*n+b` that gives `indices` for n = 0, 1, ...; PlanError when there is none."""
    if len(indices) == 1:
        return Affine("n", 1, indices[0])
    step = indices[1] - indices[0]
    if step < 1 or any(b - a != step for a, b in itertools.pairwise(indices)):
        raise PlanError(
            f"--layers {text}: the layers must increase by a fixed step (0,2,4); for another "
            "choice write a table of templates ending in a drop (docs/mapping.md, Layer "
            "selection)"
        )
    return Affine("n", step, indices[0])


def containers(names: Iterable[str]) -> dict[str, list[int]]:
    """Layer lists named like one (`layers`, `blocks`, `h`, `..._layers`) -> sorted indices."""
    return {
        path: sorted(per)
        for path, per in nm.layer_stacks(names).items()
        if nm.is_layer_list_name(path)
    }


def layer_rules(
    spec: LayerSpec,
    source_names: Iterable[str],
    target_names: Iterable[str],
    prefixes: list[str] | None = None,
) -> list[Rule]:
    """One selection template per container. `source_names` are the source's names as the
    rules see them at the end (prefix and earlier rules applied). The containers are `prefixes`,
    else the one layer list both sides have; several is an error naming them."""
    src, tgt = containers(source_names), containers(target_names)
    both = sorted(set(src) & set(tgt))
    if prefixes:
        chosen = [p.rstrip(".") for p in prefixes]
        for p in chosen:
            if p not in both:
                raise PlanError(
                    f"--layers-prefix {p}: not a layer list of both source and target "
                    f"(both have: {_listed(both, src, tgt)})"
                )
    elif len(both) == 1:
        chosen = both
    elif not both:
        raise PlanError(
            f"--layers {spec.text}: no layer list in both source and target (source: "
            f"{', '.join(src) or 'none'}; target: {', '.join(tgt) or 'none'}); map the "
            "names first with --rules"
        )
    else:
        raise PlanError(
            f"--layers {spec.text}: several layer lists ({_listed(both, src, tgt)}); "
            "choose with --layers-prefix (repeatable)"
        )
    return [_rule(spec, p, src[p], len(tgt[p])) for p in chosen]


def _listed(paths: list[str], src: dict[str, list[int]], tgt: dict[str, list[int]]) -> str:
    return ", ".join(f"{p} ({len(src[p])} -> {len(tgt[p])} layers)" for p in paths) or "none"


def _rule(spec: LayerSpec, path: str, source: list[int], wanted: int) -> Rule:
    picked = spec.pick(source, wanted)
    if len(picked) != wanted:
        shown = ",".join(map(str, picked))
        raise PlanError(
            f"--layers {spec.text}: selects {len(picked)} of {path}'s {len(source)} source "
            f"layers ({shown}); the target has {wanted}"
        )
    step = _step(picked, spec.text)
    return Template(
        f"{path}.{{{step.text()}}}",
        f"{path}.{{n}}",
        span=(0, wanted - 1),
        var="n",
        note=f"--layers {spec.text}",
    )


def source_names(sources: list[tuple[Any, Any]], rules: list[Rule]) -> list[str]:
    """Every source name as `rules` leave it (`sources`: (SourceRef, Checkpoint) pairs)."""
    out = []
    for ref, ckpt in sources:
        for name in ckpt.tensors:
            res = apply_rules(rules, ref.prefix + name, ref.label)
            if not res.dropped:
                out.append(res.names[0])
    return out


def selection_rules(
    text: str,
    sources: Any,
    target: Any,
    rules: list[Rule] | None = None,
    prefixes: list[str] | None = None,
) -> list[Rule]:
    """The rules `--layers TEXT` adds after `rules`, for propose's `sources` and `target`:
    `selection_rules("every:2", "teacher.pt", "student.pt")`."""
    rules = rules or []
    from .propose import open_inputs

    srcs, tgt = open_inputs(sources, target)
    return layer_rules(parse_layers(text), source_names(srcs, rules), tgt.tensors, prefixes)


def with_layers(
    rules: Any, layers: str | None, sources: Any, target: Any, prefixes: list[str] | None = None
) -> Any:
    """`rules` as propose takes them (None, a name, a path, YAML text, a list) with the rules
    of `--layers LAYERS` after them; `rules` unchanged without `layers`."""
    if layers is None:
        if prefixes:
            raise PlanError("--layers-prefix needs --layers")
        return rules
    if rules is None:
        base: list[Rule] = []
    elif isinstance(rules, (str, os.PathLike)):
        base = load_rules(os.fspath(rules))
    else:
        base = rules_from_list(list(rules))
    return base + selection_rules(layers, sources, target, base, prefixes)
