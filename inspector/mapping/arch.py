"""Architecture from names and shapes alone: stacks, widths, heads, vocabularies, kernels.

`infer` summarises each module of a checkpoint; `explain` puts a plan's source and target side by
side and says which config change would let a subtree transfer.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from math import prod

from ..model import Checkpoint
from . import names as nm
from .plan import Entry, Plan

FFN_TOKENS = frozenset({"ffn", "feed", "forward", "mlp", "fc", "intermediate", "fc1", "fc2", "w"})
# (name token, axis of the shape that holds the number of heads)
HEAD_SOURCES = (("pos_bias_u", 0), ("pos_bias_v", 0), ("relative_attention_bias", 1))
EMBED_TOKENS = frozenset({"embed", "embedding", "emb", "embeddings", "wte"})

Shapes = Mapping[str, tuple[int, ...]]


@dataclass(frozen=True)
class Stack:
    """A run of numbered layers: `encoder.layers.{0..15}`."""

    path: str
    n_layers: int
    d_model: int | None
    ffn: int | None
    heads: int | None
    conv_kernels: tuple[tuple[int, ...], ...]
    params: int

    def describe(self) -> str:
        parts = [f"{self.n_layers} layers"]
        for label, value in (("d_model", self.d_model), ("ffn", self.ffn), ("heads", self.heads)):
            if value is not None:
                parts.append(f"{label} {value}")
        if self.conv_kernels:
            parts.append("kernel " + ",".join("x".join(map(str, k)) for k in self.conv_kernels))
        return ", ".join(parts)


@dataclass(frozen=True)
class ModuleArch:
    name: str
    tensors: int
    params: int
    stacks: tuple[Stack, ...]
    vocab: int | None  # rows of the module's output layer or embedding
    conv_kernels: tuple[tuple[int, ...], ...]

    def describe(self) -> str:
        parts = [f"{self.tensors} tensors, {self.params:,} params"]
        parts += [f"{s.path}: {s.describe()}" for s in self.stacks]
        if self.vocab is not None:
            parts.append(f"output rows {self.vocab}")
        return f"{self.name}: " + "; ".join(parts)


def shapes_of(ckpt: Checkpoint | Shapes) -> dict[str, tuple[int, ...]]:
    if isinstance(ckpt, Checkpoint):
        return {n: t.shape for n, t in ckpt.tensors.items()}
    return dict(ckpt)


def infer(ckpt: Checkpoint | Shapes) -> dict[str, ModuleArch]:
    """Per-module architecture summary of a checkpoint (or a name -> shape mapping)."""
    shapes = shapes_of(ckpt)
    root = nm.common_root(list(shapes))
    modules: dict[str, list[str]] = {}
    for name in shapes:
        modules.setdefault(nm.module_of(name, root), []).append(name)
    return {mod: _module(mod, members, shapes) for mod, members in modules.items()}


def stacks(shapes: Shapes) -> dict[str, list[str]]:
    """Layer stack path -> member names (see `names.layer_stacks` for what is a stack)."""
    return {
        path: [n for members in layers.values() for n in members]
        for path, layers in nm.layer_stacks(shapes).items()
    }


def _module(mod: str, members: list[str], shapes: Shapes) -> ModuleArch:
    sub = {n: shapes[n] for n in members}
    found = tuple(_stack(path, names, shapes) for path, names in stacks(sub).items())
    two_d = [n for n in members if len(shapes[n]) == 2]
    facing = [n for n in two_d if nm.tokens(n) & EMBED_TOKENS] or two_d[-1:]
    vocab = shapes[facing[-1]][0] if facing else None
    return ModuleArch(
        mod,
        len(members),
        sum(prod(shapes[n]) for n in members),
        found,
        vocab,
        _kernels(members, shapes),
    )


def _stack(path: str, names: list[str], shapes: Shapes) -> Stack:
    layers = {n[len(path) + 1 :].split(".", 1)[0] for n in names}
    one_d = Counter(shapes[n][0] for n in names if len(shapes[n]) == 1)
    d_model = one_d.most_common(1)[0][0] if one_d else None
    ffn_dims = [
        d
        for n in names
        if len(shapes[n]) == 2 and nm.tokens(n) & FFN_TOKENS
        for d in shapes[n]
        if d != d_model
    ]
    heads = None
    for token, axis in HEAD_SOURCES:
        hit = next((n for n in names if token in n.split(".")[-2:] or n.endswith(token)), None)
        if hit is not None and len(shapes[hit]) > axis:
            heads = shapes[hit][axis]
            break
    return Stack(
        path,
        len(layers),
        d_model,
        max(ffn_dims) if ffn_dims else None,
        heads,
        _kernels(names, shapes),
        sum(prod(shapes[n]) for n in names),
    )


def _kernels(names: list[str], shapes: Shapes) -> tuple[tuple[int, ...], ...]:
    out = set()
    for n in names:
        s = shapes[n]
        if len(s) >= 3 and n.endswith("weight") and prod(s[2:]) > 1:
            out.add(tuple(s[2:]))
    return tuple(sorted(out))


# -- side by side ----------------------------------------------------------------------------------
CONFIG_KEYS = (
    ("n_layers", "n_layers"),
    ("d_model", "d_model"),
    ("ffn", "ffn"),
    ("heads", "n_heads"),
)


def explain(
    plan: Plan, sources: Mapping[str, Checkpoint | Shapes], target: Checkpoint | Shapes
) -> list[str]:
    """Why subtrees do not transfer, with the config change that would make them, per module.

    `sources` maps each plan source label to its checkpoint (or name -> shape mapping).
    """
    tgt_shapes = shapes_of(target)
    src_shapes = {label: shapes_of(c) for label, c in sources.items()}
    src_stacks = {label: stacks(shapes) for label, shapes in src_shapes.items()}
    src_prefix = {s.label: s.prefix for s in plan.sources}
    lines = []
    for path, members in stacks(tgt_shapes).items():
        rows = [plan.entries[n] for n in members if n in plan.entries]
        if all(e.effective == "copy" for e in rows) or any("vocab-change" in e.flags for e in rows):
            continue
        tgt = _stack(path, members, tgt_shapes)
        found = _source_stack(rows, path, src_prefix, src_stacks)
        if found is None:
            lines.append(f"target {path} has {tgt.describe()}; no source stack matches it")
            continue
        label, src_path = found
        src = _stack(src_path, src_stacks[label][src_path], src_shapes[label])
        lines.append(_compare(path, tgt, src))
    return lines + _vocabulary_lines(plan)


def _vocabulary_lines(plan: Plan) -> list[str]:
    root = nm.common_root(list(plan.entries))
    modules: dict[str, set[str]] = {}  # reason -> modules, in the order the reasons appear
    for name, e in plan.entries.items():
        if "vocab-change" in e.flags:
            modules.setdefault(e.reason, set()).add(nm.module_of(name, root))
    return [f"{', '.join(sorted(m))}: {r} (kept at target init)" for r, m in modules.items()]


def _source_stack(
    rows: list[Entry],
    path: str,
    src_prefix: Mapping[str, str],
    src_stacks: Mapping[str, dict[str, list[str]]],
) -> tuple[str, str] | None:
    """The source stack the rows of a target stack come from (their sources or candidates),
    else a source stack at the same path: (label, stack path)."""
    for e in rows:
        for label, name in [*e.sources, *((c.label, c.name) for c in e.candidates)]:
            for spath in src_stacks.get(label, {}):
                if name.startswith(spath + "."):
                    return label, spath
    for label, found in src_stacks.items():
        prefix = src_prefix.get(label, "")
        for spath in found:
            if prefix + spath == path:
                return label, spath
    return None


def _compare(path: str, tgt: Stack, src: Stack) -> str:
    changes = []
    for attr, key in CONFIG_KEYS:
        a, b = getattr(src, attr), getattr(tgt, attr)
        if a is not None and b is not None and a != b:
            changes.append(f"{key}={a}")
    head = (
        f"target {path} has {tgt.n_layers} layers of d_model {tgt.d_model}, "
        f"source {src.n_layers} of {src.d_model}"
    )
    if not changes:
        return f"{head}: the layers have the same sizes; see the rows flagged shape-mismatch"
    return f"{head}: set {', '.join(changes)} in the target config to transfer it"


def transfer_summary(plan: Plan) -> list[str]:
    """`encoder 100% (16/16 layers)` per module, in target order."""
    return [s.line() for s in plan.summary().values()]
