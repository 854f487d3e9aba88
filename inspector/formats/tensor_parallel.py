"""Tensor-parallel ranks merged into the model's logical tensors, by split rules held as data.

A Megatron-style model-parallel checkpoint (NeMo's `mp_rank_XX/` or `tp_rank_XX_pp_rank_YYY/`)
holds on each tensor-parallel rank its slice of every weight: column-parallel layers split
their output dim (dim 0), row-parallel layers their input dim (dim 1), the vocabulary-parallel
embedding its rows; norms and row-parallel biases are replicated. `merge` turns the ranks'
state dicts into one state dict of logical tensors, each an `inspector.sharded.ShardedTensor`
over the ranks' records (read in place), so that `ls`, `hash`, `diff` and `map` show the model,
not the ranks. A name no rule covers is never guessed: the ranks are then listed one by one.

A gated MLP (SwiGLU and kin: the config's `gated_linear_unit`, or an activation named in
`GATED_ACTIVATIONS`) stores `linear_fc1` on each rank as [gate slice; up slice]: the logical
tensor is [gate; up], so each rank's record is two chunks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .. import dtypes
from ..model import ByteSource, Storage, TensorInfo, contiguous_strides
from ..sharded import Chunk, FilePool, ShardedTensor
from ..sources import Source

# (pattern on the dotted name, split) in order, the first match decides. Splits: "dim0" and
# "dim1" (concatenated along that dim in rank order), "gated" (dim 0, two halves per rank),
# "replicated" (the same on every rank: rank 0's is shown).
SPLIT_RULES: tuple[tuple[str, str], ...] = (
    (r"(^|\.)(word_embeddings|embed_tokens|output_layer|lm_head)\.weight$", "dim0"),
    (r"(^|\.)(linear_qkv|query_key_value|linear_q|linear_kv)\.(weight|bias)$", "dim0"),
    (r"(^|\.)(linear_fc1|dense_h_to_4h)\.(weight|bias)$", "column-mlp"),
    (r"(^|\.)(linear_proj|linear_fc2|dense|dense_4h_to_h)\.weight$", "dim1"),
    (r"(^|\.)(linear_proj|linear_fc2|dense|dense_4h_to_h)\.bias$", "replicated"),
    # norms, TE's fused ones too (`linear_qkv.layer_norm_weight`)
    (r"(^|\.)[^.]*norm[^.]*(\.(weight|bias))?$", "replicated"),
    (r"(^|\.)(position_embeddings|rotary_pos_emb)[^.]*(\.weight|\.inv_freq)?$", "replicated"),
)
GATED_ACTIVATIONS = ("swiglu", "geglu", "reglu", "fast-swiglu", "fast-geglu", "fast-reglu")

_COMPILED = tuple((re.compile(p), split) for p, split in SPLIT_RULES)


def split_of(name: str, gated: bool) -> str | None:
    """The split rule for a tensor name, or None when no rule covers it."""
    for pattern, split in _COMPILED:
        if pattern.search(name):
            return ("gated" if gated else "dim0") if split == "column-mlp" else split
    return None


def is_gated(config: Any) -> bool:
    """Whether the model config says its MLP is gated (fc1 holds gate and up halves)."""
    if not isinstance(config, dict):
        return False
    if config.get("gated_linear_unit") is True:
        return True
    activation = config.get("activation")
    return isinstance(activation, str) and activation.lower() in GATED_ACTIVATIONS


@dataclass
class Merged:
    tree: dict[str, Any]
    sources: dict[str, Source]
    notes: list[str]


def merge(label: str, ranks: dict[str, dict[str, Any]], gated: bool) -> Merged | str:
    """The ranks' flat state dicts (in rank order) merged into logical tensors, or the reason
    they cannot be (then they are listed per rank)."""
    names = list(next(iter(ranks.values())))
    if any(list(sd) != names for sd in ranks.values()):
        return "the ranks hold different tensor names"
    unknown = [n for n in names if _is_tensor(ranks, n) and split_of(n, gated) is None]
    if unknown:
        shown = ", ".join(unknown[:5]) + (f", ... ({len(unknown)} in all)" if len(unknown) > 5
                                          else "")
        return f"no tensor-parallel split rule covers {shown}"
    pool = FilePool()
    tree: dict[str, Any] = {}
    sources: dict[str, Source] = {}
    for name in names:
        parts = [sd[name] for sd in ranks.values()]
        if not _is_tensor(ranks, name):
            tree[name] = parts[0]
            continue
        split = split_of(name, gated)
        assert split is not None
        merged = _merge_one(label, name, list(ranks), parts, split, pool)
        if isinstance(merged, str):
            return merged
        tree[name], source = merged
        if source is not None:
            sources[source.name] = source
    return Merged(tree, sources, [])


# NeMo's `mp_rank_TT` / `tp_rank_TT_pp_rank_PPP`, Megatron-LM's `mp_rank_TT` / `mp_rank_TT_PPP`
_RANK = re.compile(r"(?:mp_rank_(\d+)(?:_(\d{3}))?|tp_rank_(\d+)(?:_pp_rank_(\d+))?)")
_LAYER = re.compile(r"(^|\.)layers\.(\d+)\.")


def merge_model_parallel(label: str, ranks: dict[str, dict[str, Any]], gated: bool,
                         what: str = "model-parallel .nemo") -> Merged | str:
    """Ranks named as `_RANK` says (tensor rank TT, pipeline stage PPP): each pipeline stage's
    tensor-parallel ranks merged (`merge`), then the stages joined, their layer numbers (counted
    from 0 in each stage) made global: stage s's `layers.i` is `layers.(i + layers before s)`."""
    stages: dict[int, dict[int, dict[str, Any]]] = {}
    for name, tree in ranks.items():
        m = _RANK.fullmatch(name)
        if m is None:
            return f"{name} is not a rank folder name"
        tp, pp = m.group(1) or m.group(3), m.group(2) or m.group(4) or 0
        stages.setdefault(int(pp), {})[int(tp)] = tree
    merged = []
    for pp in sorted(stages):
        tps = stages[pp]
        got = merge(f"{label}#pp{pp}" if len(stages) > 1 else label,
                    {str(tp): tps[tp] for tp in sorted(tps)}, gated)
        if isinstance(got, str):
            return f"pipeline stage {pp}: {got}" if len(stages) > 1 else got
        merged.append(got)
    joined = merged[0] if len(merged) == 1 else _join_stages(merged)
    if isinstance(joined, str):
        return joined
    tp = len(next(iter(stages.values())))
    joined.notes.insert(0, f"{what}: {tp} tensor-parallel x {len(stages)} "
                        f"pipeline-parallel ranks merged into {len(joined.tree)} entries by the "
                        "split rules (inspector/formats/tensor_parallel.py); `ckpt ls --ranks` "
                        "lists each rank's shard")
    return joined


def _global_layer(name: str, offset: int) -> str:
    """`name` with its (first) `layers.i.` renumbered `layers.(i + offset).`."""
    return _LAYER.sub(lambda m: f"{m.group(1)}layers.{int(m.group(2)) + offset}.", name, count=1)


def _join_stages(stages: list[Merged]) -> Merged | str:
    tree: dict[str, Any] = {}
    sources: dict[str, Source] = {}
    notes: list[str] = []
    offset = 0
    for index, stage in enumerate(stages):
        local = {int(m.group(2)) for n in stage.tree for m in [_LAYER.search(n)] if m}
        for local_name, value in stage.tree.items():
            name = _global_layer(local_name, offset)
            if name not in tree:
                tree[name] = value
                continue
            first = tree[name]
            if not (isinstance(first, TensorInfo) and isinstance(value, TensorInfo)
                    and (first.dtype, first.shape) == (value.dtype, value.shape)):
                return f"{name} is in two pipeline stages with different shapes or kinds"
            notes.append(f"{name} is held by pipeline stage {index} too (tied weights): "
                         "the first stage's is shown")
        sources.update(stage.sources)
        offset += max(local) + 1 if local else 0
    return Merged(tree, sources, notes)


def _is_tensor(ranks: dict[str, dict[str, Any]], name: str) -> bool:
    return all(isinstance(sd[name], TensorInfo) for sd in ranks.values())


def _merge_one(label: str, name: str, ranks: list[str], parts: list[TensorInfo], split: str,
               pool: FilePool) -> tuple[TensorInfo, ShardedTensor | None] | str:
    first = parts[0]
    if any(p.dtype != first.dtype or len(p.shape) != len(first.shape) for p in parts):
        return f"{name}: the ranks' shards differ in dtype or rank"
    if split == "replicated":
        if any(p.shape != first.shape for p in parts):
            return f"{name}: a replicated tensor has different shapes on the ranks"
        return first, None
    dim = 1 if split == "dim1" else 0
    if len(first.shape) <= dim or any(
        p.shape[:dim] + p.shape[dim + 1:] != first.shape[:dim] + first.shape[dim + 1:]
        for p in parts
    ):
        return f"{name}: shards of shapes {[p.shape for p in parts]} do not split along dim {dim}"
    if any(not _raw(p) for p in parts):
        return f"{name}: a shard is not stored as raw contiguous little-endian elements"
    chunks, places = _layout(ranks, parts, dim, split == "gated")
    if chunks is None:
        return f"{name}: a gated fc1 shard has an odd number of rows"
    shape = list(first.shape)
    shape[dim] = sum(p.shape[dim] for p in parts)
    itemsize = dtypes.get(first.dtype).itemsize
    source = ShardedTensor(f"{label}::{name}", name, tuple(shape), itemsize, chunks,
                           lambda i: (pool.source(places[i][0]), places[i][1]),
                           files=sorted({p.storage.source.path or "" for p in parts}),
                           close=pool.close)
    raw = ByteSource(source.name, 0, source.size, assembled=True)
    storage = Storage(key=f"{name} (tensor-parallel)", dtype=first.dtype, nbytes=source.size,
                      source=raw)
    info = TensorInfo(name="", dtype=first.dtype, shape=tuple(shape),
                      strides=contiguous_strides(tuple(shape)), storage_offset=0,
                      storage=storage, is_parameter=first.is_parameter)
    return info, source


def _raw(t: TensorInfo) -> bool:
    src = t.storage.source
    return (t.is_contiguous and src.path is not None and not src.compression
            and t.storage.byteorder == "little")


def _layout(ranks: list[str], parts: list[TensorInfo], dim: int, gated: bool
            ) -> tuple[list[Chunk] | None, list[tuple[str, int]]]:
    """Each rank's record as chunks of the logical tensor: one per rank, or (gated) its two
    halves placed in the gate half and the up half."""
    chunks: list[Chunk] = []
    places: list[tuple[str, int]] = []  # (file, byte offset of the chunk's first element)
    total = sum(p.shape[dim] for p in parts)
    at = 0
    for rank, p in zip(ranks, parts, strict=True):
        start = p.storage.source.offset + p.storage_offset * p.itemsize
        path = p.storage.source.path
        assert path is not None
        # (rows, row offset in the rank's record, global offset along `dim`)
        if gated:
            if p.shape[0] % 2:
                return None, []
            half = p.shape[0] // 2
            pieces = [(half, 0, at // 2), (half, half, total // 2 + at // 2)]
        else:
            pieces = [(p.shape[dim], 0, at)]
        for rows, local, global_at in pieces:
            offsets = [0] * len(p.shape)
            offsets[dim] = global_at
            sizes = list(p.shape)
            sizes[dim] = rows
            inner = p.nbytes // p.shape[0] if p.shape[0] else 0
            chunks.append(Chunk(tuple(offsets), tuple(sizes), rank, start + local * inner,
                                rows * inner if dim == 0 else p.nbytes))
            places.append((path, start + local * inner))
        at += p.shape[dim]
    return chunks, places
