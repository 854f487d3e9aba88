"""Model-level modules: the units a proposal reasons about as a whole.

A vocabulary change keeps a whole unit at its init, and a unit copied in part is flagged
(`partial_modules`). The
unit of a tensor must not depend on the container: NeMo's RNNT decoder is one unit whether it
sits under `decoder.` in a whole model, is a per-module state dict of its own, or is the live
submodule `load_into` fills. Units come, strongest first, from

1. the known top-level modules: each config section with a `_target_` class (NeMo: `encoder`,
   `decoder`, `joint`, ...), or each child of a live `nn.Module`;
2. MODULE_SIGNATURES: a known module recognised by its own tensor names wherever it sits;
3. otherwise the component right after the names' common root (`names.module_of`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from itertools import filterfalse
from operator import methodcaller
from typing import Any, NamedTuple

from . import names as nm
from .entries import Entry, is_partial, is_proposed_copy


class ModuleSignature(NamedTuple):
    """A module recognised by names relative to its root: `anchor` and every one of `also`."""

    kind: str
    anchor: str
    also: tuple[str, ...] = ()


# Modules whose tensors move (or keep their init) together, by their own tensor names.
MODULE_SIGNATURES: tuple[ModuleSignature, ...] = (
    # NeMo RNNTDecoder: the prediction network's embedding feeds its LSTM
    ModuleSignature("RNNT prediction network", "prediction.embed.weight"),
    # NeMo RNNTJoint: encoder and prediction projections feed the output layer (joint_net)
    ModuleSignature("RNNT joint network", "pred.weight", ("enc.weight",)),
    # NeMo ConvASRDecoder (CTC): one 1x1 convolution onto the vocabulary
    ModuleSignature("CTC decoder", "decoder_layers.0.weight"),
)


_ANCHORS = tuple(sig.anchor for sig in MODULE_SIGNATURES)


class Unit(NamedTuple):
    """A model-level module: `root` is its name prefix ("" = the whole checkpoint, "joint.")."""

    root: str
    label: str  # how messages name it: "module decoder", "the whole RNNT joint network"
    cls: str | None = None  # the config's `_target_` class, when a config names one


def module_classes(metadata: Mapping[str, Any]) -> dict[str, str]:
    """Top-level modules and their classes: {"encoder": "...ConformerEncoder", ...}, from the
    config's sections that name a `_target_` (NeMo), or a live module's children."""
    live = metadata.get("module_classes")
    if isinstance(live, Mapping):
        return {str(k): str(v) for k, v in live.items()}
    config = metadata.get("config")
    if not isinstance(config, Mapping):
        return {}
    out = {}
    for key, value in config.items():
        if isinstance(value, Mapping) and isinstance(value.get("_target_"), str):
            out[str(key)] = value["_target_"]
    return out


def _signature_units(names: set[str]) -> list[Unit]:
    units = []
    anchored = list(filter(methodcaller("endswith", _ANCHORS), names))  # one pass, not three
    for sig in MODULE_SIGNATURES:
        for name in filter(methodcaller("endswith", sig.anchor), anchored):
            root = name[: -len(sig.anchor)]
            if root and not root.endswith("."):
                continue
            if all(root + other in names for other in sig.also):
                label = f"module {root.rstrip('.')}" if root else f"the whole {sig.kind}"
                units.append(Unit(root, label))
    return units


def find_units(names: Iterable[str], classes: Mapping[str, str]) -> list[Unit]:
    """The known modules' (`module_classes`) and the signatures' units among `names`, outermost
    first: a unit inside another (the joint's `pred` inside a whole RNNT joint network) is part
    of it. Classes count from two modules with tensors up: one child wrapping everything says
    nothing about where its modules are."""
    present = set(names)
    units = {u.root: u for u in _signature_units(present)}
    heads = {n.split(".", 1)[0] for n in present if "." in n} if classes else set()
    holding = {section: cls for section, cls in classes.items() if section in heads}
    if len(holding) >= 2:
        for section, cls in holding.items():
            units[section + "."] = Unit(section + ".", f"module {section}", cls)
    return sorted(units.values(), key=lambda u: len(u.root))


def assign_units(names: Iterable[str], metadata: Mapping[str, Any]) -> dict[str, Unit]:
    """Each name's unit (see the module docstring) in a checkpoint with this `metadata`."""
    ordered = list(names)
    known = find_units(ordered, module_classes(metadata))
    roots = tuple(u.root for u in known)
    root = nm.common_root(ordered)
    # Names no known unit holds (most, or all): their module's unit, made once per module
    # (a unit made and a generator run per name took 0.2 s at 100k names)
    loose = list(filterfalse(methodcaller("startswith", roots), ordered)) if roots else ordered
    modules = nm.modules_of(loose, root)
    fallback = {mod: Unit(mod + ".", f"module {mod}") for mod in dict.fromkeys(modules)}
    out = dict(zip(loose, map(fallback.__getitem__, modules), strict=True))
    if len(loose) == len(ordered):
        return out
    for name in ordered:
        if name not in out:
            out[name] = next(u for u in known if name.startswith(u.root))
    return {name: out[name] for name in ordered}


def short_class(cls: str | None) -> str:
    return (cls or "?").rsplit(".", 1)[-1]


# -- modules copied in part ---------------------------------------------------------------------
SourceClass = Callable[[str, str], "str | None"]  # (source label, name there) -> its module class


def partial_modules(
    entries: Mapping[str, Entry], units: Mapping[str, Unit], source_class: SourceClass
) -> dict[str, list[str]]:
    """{description: proposed copies} of every unit copied in part: some of its tensors copy
    while others keep their init with no declared reason (`is_partial`), or its class changed
    around same-named children (its `_target_` differs from the class `source_class` gives the
    module a copied row comes from). Judged on the rows as they are now: rows the user decided
    (approved copies, rejected rows) no longer make a unit partial."""
    if not any(map(is_proposed_copy, entries.values())):
        return {}  # a unit is listed for its proposed copies: after a bulk approve there are none
    members: dict[Unit, list[Entry]] = {}
    for name, e in entries.items():
        members.setdefault(units[name], []).append(e)
    out = {}
    for unit, rows in members.items():
        proposed = [e.target for e in rows if is_proposed_copy(e)]
        detail = _partial_detail(unit, rows, source_class) if proposed else None
        if detail is not None:
            out[detail] = proposed
    return out


def partial_modules_in(
    entries: Mapping[str, Entry],
    target_metadata: Mapping[str, Any],
    source_metadata: Mapping[str, Mapping[str, Any]],
) -> dict[str, list[str]]:
    """`partial_modules` for a target and sources (by label) known by their metadata."""
    units = assign_units(entries, target_metadata)
    return partial_modules(entries, units, source_classes(source_metadata))


def source_classes(source_metadata: Mapping[str, Mapping[str, Any]]) -> SourceClass:
    """The SourceClass of sources known by their metadata (by label): the class their config
    or live module gives the top-level module holding a name."""
    def source_class(label: str, name: str) -> str | None:
        meta = source_metadata.get(label)
        return module_classes(meta).get(name.split(".", 1)[0]) if meta is not None else None

    return source_class


def _partial_detail(unit: Unit, rows: list[Entry], source_class: SourceClass) -> str | None:
    copies = [e for e in rows if e.effective == "copy"]
    at_init = sum(1 for e in rows if is_partial(e))
    src_cls = source_class(*copies[0].sources[0]) if copies[0].sources else None
    changed = unit.cls is not None and src_cls is not None and short_class(src_cls) != short_class(
        unit.cls)
    if not at_init and not changed:
        return None
    text = f"{unit.label} is copied in part: {len(copies)} of {len(rows)} tensors copy"
    if at_init:
        text += f", {at_init} keep their init"
    if changed:
        text += f"; its class changed ({short_class(src_cls)} -> {short_class(unit.cls)})"
    return text
