"""Architecture from names and shapes alone: stacks, widths, heads, vocabularies, kernels.

`infer` summarises each module of a checkpoint; `explain` puts a plan's source and target side by
side and says which config change would let a subtree transfer.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from math import prod
from typing import Any

from ..model import Checkpoint
from ..tree import fold_names
from . import names as nm
from .modules import Unit, assign_units
from .plan import Entry, Plan, is_problem

FFN_TOKENS = frozenset({"ffn", "feed", "forward", "mlp", "fc", "intermediate", "fc1", "fc2", "w"})
# (name token, axis of the shape that holds the number of heads)
HEAD_SOURCES = (("pos_bias_u", 0), ("pos_bias_v", 0), ("relative_attention_bias", 1))
EMBED_TOKENS = frozenset({"embed", "embedding", "emb", "embeddings", "wte"})

Shapes = Mapping[str, tuple[int, ...]]
Kernel = tuple[int, ...]


@dataclass(frozen=True)
class Stack:
    """A run of numbered layers: `encoder.layers.{0..15}`."""

    path: str
    n_layers: int
    d_model: int | None
    ffn: int | None
    heads: int | None
    # (module path inside a layer, kernel): (("conv.depthwise_conv", (31,)),)
    kernels: tuple[tuple[str, Kernel], ...]
    params: int
    layer_indices: tuple[int, ...] = ()

    @property
    def conv_kernels(self) -> tuple[Kernel, ...]:
        """The distinct conv kernel sizes of the layers, sorted."""
        return tuple(sorted({k for _, k in self.kernels}))

    def describe(self) -> str:
        parts = [f"{self.n_layers} layers"]
        for label, value in (("d_model", self.d_model), ("ffn", self.ffn), ("heads", self.heads)):
            if value is not None:
                parts.append(f"{label} {value}")
        if self.kernels:
            parts.append("kernel " + ",".join(kernel_text(k) for k in self.conv_kernels))
        return ", ".join(parts)


def kernel_text(kernel: Kernel) -> str:
    return "x".join(map(str, kernel))


@dataclass(frozen=True)
class ModuleArch:
    name: str
    tensors: int
    params: int
    stacks: tuple[Stack, ...]
    vocab: int | None  # rows of the module's output layer or embedding
    conv_kernels: tuple[Kernel, ...]

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
    return ModuleArch(
        mod,
        len(members),
        sum(prod(shapes[n]) for n in members),
        found,
        _vocab(members, shapes),
        tuple(sorted({k for _, k in _kernels(members, shapes)})),
    )


def _vocab(members: list[str], shapes: Shapes) -> int | None:
    two_d = [n for n in members if len(shapes[n]) == 2]
    facing = [n for n in two_d if nm.tokens(n) & EMBED_TOKENS] or two_d[-1:]
    return shapes[facing[-1]][0] if facing else None


def _stack(path: str, names: list[str], shapes: Shapes) -> Stack:
    layers = sorted({int(n[len(path) + 1 :].split(".", 1)[0]) for n in names})
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
    in_layer = {_in_layer(path, module): k for module, k in _kernels(names, shapes)}
    return Stack(
        path,
        len(layers),
        d_model,
        max(ffn_dims) if ffn_dims else None,
        heads,
        tuple(sorted(in_layer.items())),
        sum(prod(shapes[n]) for n in names),
        tuple(layers),
    )


def _in_layer(path: str, module: str) -> str:
    """`encoder.layers.3.conv.depthwise_conv` -> `conv.depthwise_conv`."""
    return module[len(path) + 1 :].split(".", 1)[-1]


def _kernels(names: list[str], shapes: Shapes) -> list[tuple[str, Kernel]]:
    """(module path, kernel) of every conv weight: a weight of rank >= 3 with a kernel > 1."""
    out = []
    for n in names:
        s = shapes[n]
        if len(s) >= 3 and n.endswith("weight") and prod(s[2:]) > 1:
            out.append((n.rsplit(".", 1)[0], tuple(s[2:])))
    return out


# -- config names ----------------------------------------------------------------------------------
# What the config of a model family calls each stack value. `per`: the config value is the value
# divided by that attribute (NeMo's ff_expansion_factor = ffn width / d_model). `scope`: the name
# holds for stacks under that component only (`encoder_layers` vs `decoder_layers`). An empty
# `key`: the family has no config value for it (OpenAI Whisper's ffn is always 4 x d_model).
@dataclass(frozen=True)
class ConfigName:
    attr: str  # Stack attribute, or "vocab" (ModuleArch.vocab)
    family: str
    key: str
    per: str | None = None
    scope: str | None = None

    def applies(self, where: str) -> bool:
        return self.scope is None or self.scope in where.split(".")


SIDES = ("encoder", "decoder")
WHISPER = (("encoder", "audio"), ("decoder", "text"))
CONFIG_NAMES = (
    ConfigName("n_layers", "nemo", "n_layers"),
    ConfigName("d_model", "nemo", "d_model"),
    ConfigName("heads", "nemo", "n_heads"),
    ConfigName("ffn", "nemo", "ff_expansion_factor", per="d_model"),
    ConfigName("conv_kernel", "nemo", "conv_kernel_size"),
    ConfigName("n_layers", "hf", "num_hidden_layers"),
    ConfigName("d_model", "hf", "hidden_size"),
    ConfigName("heads", "hf", "num_attention_heads"),
    ConfigName("ffn", "hf", "intermediate_size"),
    ConfigName("conv_kernel", "hf", "conv_depthwise_kernel_size"),
    ConfigName("vocab", "hf", "vocab_size"),
    # HF encoder-decoder models (Whisper, BART, Marian...): one flat config, a name per side
    *(ConfigName("n_layers", "hf-seq2seq", f"{side}_layers", scope=side) for side in SIDES),
    ConfigName("d_model", "hf-seq2seq", "d_model"),
    *(ConfigName("heads", "hf-seq2seq", f"{s}_attention_heads", scope=s) for s in SIDES),
    *(ConfigName("ffn", "hf-seq2seq", f"{side}_ffn_dim", scope=side) for side in SIDES),
    ConfigName("vocab", "hf-seq2seq", "vocab_size"),
    # OpenAI Whisper: ModelDimensions, saved as the checkpoint's `dims`
    *(ConfigName("n_layers", "openai-whisper", f"n_{a}_layer", scope=s) for s, a in WHISPER),
    *(ConfigName("d_model", "openai-whisper", f"n_{a}_state", scope=s) for s, a in WHISPER),
    *(ConfigName("heads", "openai-whisper", f"n_{a}_head", scope=s) for s, a in WHISPER),
    ConfigName("ffn", "openai-whisper", ""),  # 4 x n_*_state, not configurable
    ConfigName("vocab", "openai-whisper", "n_vocab"),
    # WeNet / ESPnet train.yaml (not in the checkpoint: the path is named as in the file)
    *(ConfigName("n_layers", "wenet", f"{side}_conf.num_blocks", scope=side) for side in SIDES),
    ConfigName("d_model", "wenet", "encoder_conf.output_size"),
    *(ConfigName("heads", "wenet", f"{side}_conf.attention_heads", scope=side) for side in SIDES),
    *(ConfigName("ffn", "wenet", f"{side}_conf.linear_units", scope=side) for side in SIDES),
    ConfigName("vocab", "wenet", "output_dim"),
)
# Words for a value no config name is known for (the hint stays generic).
ATTR_WORDS = {
    "n_layers": "layers",
    "d_model": "d_model",
    "ffn": "ffn",
    "heads": "heads",
    "conv_kernel": "conv kernel",
    "vocab": "vocabulary",
}
# A family is known from a component its names use that says more than the format (an HF
# encoder-decoder is configured unlike other HF models), else from the target's format, else from
# a component its names use.
SPECIFIC_MARKERS = (
    ("encoder_attn", "hf-seq2seq"),
    ("cross_attn_ln", "openai-whisper"),
    ("src_attn", "wenet"),
)
FAMILY_FORMATS = {"nemo": "nemo", "nemo-folder": "nemo", "hf": "hf"}
FAMILY_MARKERS = (
    ("pre_encode", "nemo"),
    ("feed_forward1", "nemo"),
    ("norm_self_att", "nemo"),
    ("intermediate_dense", "hf"),
    ("q_proj", "hf"),
    ("gate_proj", "hf"),
    ("query", "hf"),
)
# Config dicts a container keeps next to its weights root (OpenAI Whisper:
# {'dims': ..., 'model_state_dict': ...})
CONTAINER_CONFIG_KEYS = ("dims",)
MAX_CONFIG_DEPTH = 4


def family_of(target: Checkpoint | Shapes) -> str | None:
    components = {c for n in shapes_of(target) for c in n.split(".")}
    specific = next((fam for marker, fam in SPECIFIC_MARKERS if marker in components), None)
    if specific is not None:
        return specific
    if isinstance(target, Checkpoint) and target.format in FAMILY_FORMATS:
        return FAMILY_FORMATS[target.format]
    return next((fam for marker, fam in FAMILY_MARKERS if marker in components), None)


def _config_of(target: Checkpoint | Shapes) -> Mapping[str, Any] | None:
    """The target's config: its format's (`metadata["config"]`), else a config dict its
    container keeps next to the weights (`{"dims": {...}}`, named by its key)."""
    if not isinstance(target, Checkpoint):
        return None
    config = target.metadata.get("config")
    if isinstance(config, Mapping):
        return config
    if target.root and isinstance(target.tree, Mapping):
        found = {k: target.tree[k] for k in CONTAINER_CONFIG_KEYS if k in target.tree}
        if found and all(isinstance(v, Mapping) for v in found.values()):
            return found
    return None


def _find_key(config: Mapping[str, Any], key: str, depth: int = 0) -> str | None:
    """Dotted path of the first `key` in a config, breadth first."""
    if key in config:
        return key
    if depth >= MAX_CONFIG_DEPTH:
        return None
    for k, v in config.items():
        if isinstance(v, Mapping):
            found = _find_key(v, key, depth + 1)
            if found is not None:
                return f"{k}.{found}"
    return None


@dataclass(frozen=True)
class Hints:
    """Where the target's config names a value: its family and its parsed config."""

    family: str | None
    config: Mapping[str, Any] | None

    def setting(self, attr: str, module: str, values: Mapping[str, Any], where: str = "") -> str:
        """`encoder.conv_kernel_size=31` (or the generic `conv kernel 31`) for a source value;
        `where` is the stack's path (a name scoped to `decoder` holds under it); "" when the
        target's family has no config value for it (it follows from another)."""
        names = [c for c in CONFIG_NAMES if c.attr == attr and c.applies(where or module)]
        family = [c for c in names if c.family == self.family]
        if any(not c.key for c in family):
            return ""
        for c in family or names:
            path = self._path(c.key, module)
            if path is not None or (c in family and self.config is None):
                value = _config_value(c, values)
                if value is not None:
                    return f"{path or c.key}={value}"
        return f"{ATTR_WORDS[attr]} {_value_text(values[attr])}"

    def _path(self, key: str, module: str) -> str | None:
        if self.config is None:
            return None
        sub = self.config.get(module)
        if isinstance(sub, Mapping):
            found = _find_key(sub, key)
            if found is not None:
                return f"{module}.{found}"
        return _find_key(self.config, key)


def _config_value(c: ConfigName, values: Mapping[str, Any]) -> Any:
    value = values.get(c.attr)
    if c.per is None or value is None:
        return _value_text(value) if value is not None else None
    base = values.get(c.per)
    if not base:
        return None
    ratio = value / base
    return int(ratio) if ratio.is_integer() else round(ratio, 3)


def _value_text(value: Any) -> str:
    return kernel_text(value) if isinstance(value, tuple) else str(value)


# -- side by side ----------------------------------------------------------------------------------
STACK_ATTRS = (("n_layers", "layers"), ("d_model", "d_model"), ("ffn", "ffn"), ("heads", "heads"))


def explain(
    plan: Plan, sources: Mapping[str, Checkpoint | Shapes], target: Checkpoint | Shapes
) -> list[str]:
    """Why subtrees do not transfer, with the config change that would make them, per stack.

    `sources` maps each plan source label to its checkpoint (or name -> shape mapping).
    """
    if all(e.effective == "copy" for e in plan.entries.values()):
        return []  # every stack transfers (and no row keeps its init for a vocabulary change)
    hints = Hints(family_of(target), _config_of(target))
    tgt_shapes = shapes_of(target)
    src_shapes = {label: shapes_of(c) for label, c in sources.items()}
    src_stacks = {label: stacks(shapes) for label, shapes in src_shapes.items()}
    src_prefix = {s.label: s.prefix for s in plan.sources}
    root = nm.common_root(list(tgt_shapes))
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
        line = _compare(tgt, src, rows, hints, nm.module_of(path, root), src_shapes)
        lines += [line] if line else []
    return lines + _vocabulary_lines(plan, sources, target, hints)


def _vocabulary_lines(
    plan: Plan,
    sources: Mapping[str, Checkpoint | Shapes],
    target: Checkpoint | Shapes,
    hints: Hints,
) -> list[str]:
    changed = [(name, e) for name, e in plan.entries.items() if "vocab-change" in e.flags]
    if not changed:
        return []
    units = assign_units(plan.entries, target.metadata if isinstance(target, Checkpoint) else {})
    modules: dict[str, set[Unit]] = {}  # reason -> units, in the order the reasons appear
    rows: dict[str, list[Entry]] = {}
    for name, e in changed:
        modules.setdefault(e.reason, set()).add(units[name])
        rows.setdefault(e.reason, []).append(e)
    out = []
    for reason, found in modules.items():
        mods = sorted(u.root.rstrip(".") for u in found)
        label = ", ".join(sorted(u.label.removeprefix("module ") for u in found))
        line = f"{label}: {reason} (kept at target init"
        hint = _vocabulary_hint(mods, rows[reason], plan, sources, hints)
        out.append(line + (f"; {hint} to transfer it instead)" if hint else ")"))
    return out


def _vocabulary_hint(
    mods: list[str],
    rows: list[Entry],
    plan: Plan,
    sources: Mapping[str, Checkpoint | Shapes],
    hints: Hints,
) -> str:
    """`set vocab_size=29` where the target's family names its vocabulary size, else ''. The
    source module is the one of the same name, else the one the rows' sources sit in (rules
    that rename modules: OpenAI's `decoder` -> HF's `model.decoder`)."""
    if not any(c.attr == "vocab" and c.family == hints.family for c in CONFIG_NAMES):
        return ""
    for label, ckpt in sources.items():
        prefix = next((s.prefix for s in plan.sources if s.label == label), "")
        archs = {prefix + m: a for m, a in infer(ckpt).items()}
        named = [(lb, prefix + n) for e in rows for lb, n in _row_sources(e) if lb == label]
        found = [*mods, *(m for _, n in named for m in archs if n.startswith(m + "."))]
        vocab = next((archs[m].vocab for m in found if m in archs and archs[m].vocab), None)
        if vocab is not None:
            return "set " + hints.setting("vocab", mods[0], {"vocab": vocab})
    return ""


def _row_sources(e: Entry) -> list[tuple[str, str]]:
    """(label, name) of a row's sources and candidates."""
    return [*e.sources, *((c.label, c.name) for c in e.candidates)]


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


def _values(s: Stack) -> dict[str, Any]:
    return {attr: getattr(s, attr) for attr, _ in STACK_ATTRS}


def _kernel_changes(tgt: Stack, src: Stack) -> list[tuple[str, Kernel, Kernel]]:
    """(module inside a layer, source kernel, target kernel) where the kernels differ. Modules
    pair by path, else in order when the two stacks name them differently."""
    t, s = dict(tgt.kernels), dict(src.kernels)
    pairs = [(m, s[m], t[m]) for m in t if m in s]
    if not pairs and len(s) == len(t):
        pairs = [(m, sk, tk) for (m, tk), (_, sk) in zip(tgt.kernels, src.kernels, strict=True)]
    return [(m, sk, tk) for m, sk, tk in pairs if sk != tk]


def _compare(
    tgt: Stack, src: Stack, rows: list[Entry], hints: Hints, module: str, src_shapes: Any
) -> str:
    """`encoder.layers: layers 16 -> 17, d_model 256 -> 512: set n_layers=16, d_model=256 in
    the target config to transfer it` (source value -> target value)."""
    old, new = _values(src), _values(tgt)
    diffs, settings = [], []
    for attr, words in STACK_ATTRS:
        if old[attr] is not None and new[attr] is not None and old[attr] != new[attr]:
            diffs.append(f"{words} {old[attr]} -> {new[attr]}")
    for attr, _ in STACK_ATTRS:
        a, b = (hints.setting(attr, module, v, tgt.path) for v in (old, new))
        if old[attr] is not None and new[attr] is not None and a != b:
            settings.append(a)
    for inner, sk, tk in _kernel_changes(tgt, src):
        where = fold_names(f"{tgt.path}.{i}.{inner}" for i in tgt.layer_indices)
        diffs.append(f"conv kernel {kernel_text(sk)} -> {kernel_text(tk)} in {', '.join(where)}")
        setting = hints.setting("conv_kernel", module, {"conv_kernel": sk})
        if setting not in settings:
            settings.append(setting)
    if not diffs:
        text = _mismatch_text(rows, src_shapes)
        return f"{tgt.path}: {text}" if text else ""
    head = f"{tgt.path}: {', '.join(diffs)}"
    if not settings:
        return f"{head}: the target's layout fixes it (no config value changes it)"
    if all("=" in s for s in settings):
        return f"{head}: set {', '.join(settings)} in the target config to transfer it"
    return f"{head}: configure the target with {', '.join(settings)} to transfer it"


# The note for a stack whose rows do not copy while no stack value differs: it points at the rows
# flagged shape-mismatch, so it stands only while one of them is still to review (is_problem).
SEE_FLAGGED = "the layers have the same sizes; see the rows flagged shape-mismatch"


def has_flagged_problem(rows: Iterable[Entry]) -> bool:
    """A row flagged shape-mismatch is still to review (mapping.entries.is_problem)."""
    return any("shape-mismatch" in e.flags and is_problem(e) for e in rows)


def _mismatch_text(rows: list[Entry], src_shapes: Mapping[str, Shapes]) -> str:
    """No stack value differs: name the mismatched tensors with both shapes."""
    groups: dict[tuple[Any, ...], list[str]] = {}
    for e in rows:
        best = e.candidates[0] if "shape-mismatch" in e.flags and e.candidates else None
        if best is not None and best.name in src_shapes.get(best.label, {}):
            shape = src_shapes[best.label][best.name]
            groups.setdefault((shape, e.shape), []).append(e.target)
    if not groups:  # only a true note: "" when no row to review is flagged shape-mismatch
        return SEE_FLAGGED if has_flagged_problem(rows) else ""
    parts = [
        f"{', '.join(fold_names(names))} {list(old)} -> {list(new)}"
        for (old, new), names in groups.items()
    ]
    return "shapes differ: " + "; ".join(parts) + " (no layer count, width or kernel explains it)"


def transfer_summary(plan: Plan) -> list[str]:
    """`encoder 100% (16/16 layers complete)` per module, in target order."""
    return [s.line() for s in plan.summary().values()]
