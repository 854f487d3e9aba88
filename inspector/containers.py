"""Finding the weights inside a container (training dicts, Lightning, fairseq) and naming them.

The candidate keys are data: extend the tables, not the code.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, TypeVar

from .model import TensorInfo, TreePath

L = TypeVar("L")

# Keys that hold the model's weights, most specific first, with who writes them.
WEIGHT_KEYS = (
    "state_dict",  # PyTorch Lightning, NeMo .ckpt, many trainers
    "model_state_dict",  # common training scripts
    "model",  # fairseq, {'epoch','model','optimizer','loss'} training dicts, icefall
    "module",  # DeepSpeed
    "net",
    "network",
    "ema",  # EMA copies (chosen only when nothing better is there)
    "weights",
    "params",
)

# Keys that hold tensors that are not the model's weights.
NON_WEIGHT_KEYS = frozenset(
    {
        "optimizer",  # training dicts
        "optimizer_states",  # Lightning
        "optimizer_state_dict",
        "last_optimizer_state",  # fairseq
        "optimizer_history",
        "lr_schedulers",
        "lr_scheduler",
        "scheduler",
        "scaler",
        "grad_scaler",
        "callbacks",
        "loops",
        "extra_state",
    }
)


# The keys of `torch.optim.Optimizer.state_dict()`: a dict holding both is optimizer state
# wherever it sits (a file saved from `opt.state_dict()` alone has no telling key above it).
OPTIMIZER_STATE_KEYS = frozenset({"state", "param_groups"})


def iter_leaves(
    tree: Any, leaf_type: type[L], prefix: TreePath = ()
) -> Iterator[tuple[TreePath, L]]:
    """Every `leaf_type` leaf under `tree`, with its path, in container order.

    A pickle can share one container between several places (memo references), so a hostile
    file can make a tree of 2**60 paths out of 60 lists. Each container is therefore walked once,
    at its first path; leaves (tied tensors) still appear under every name.
    """
    seen: set[int] = set()
    stack: list[tuple[TreePath, Any]] = [(prefix, tree)]
    while stack:
        path, node = stack.pop()
        if isinstance(node, leaf_type):
            yield path, node
        elif isinstance(node, (dict, list, tuple)):
            if id(node) in seen:
                continue
            seen.add(id(node))
            items = node.items() if isinstance(node, dict) else enumerate(node)
            stack.extend(((*path, k), v) for k, v in reversed(list(items)))


def iter_tensors(tree: Any, prefix: TreePath = ()) -> Iterator[tuple[TreePath, TensorInfo]]:
    """Every TensorInfo leaf under `tree`, with its path, in container order."""
    return iter_leaves(tree, TensorInfo, prefix)


def count_tensors(tree: Any) -> int:
    return sum(1 for _ in iter_tensors(tree))


def subtree(tree: Any, path: TreePath) -> Any:
    node = tree
    for k in path:
        node = node[k]
    return node


def detect_root(tree: Any) -> TreePath:
    """Path of the weights sub-tree: descend into known weight keys until tensors appear.

    Scalar tensors beside sub-trees (a training dict's `loss`, `step`) are bookkeeping, not
    weights: they do not stop the descent into a key named in WEIGHT_KEYS.
    """
    path: TreePath = ()
    node = tree
    while isinstance(node, dict) and not _is_optimizer_state(node):
        direct = [v for v in node.values() if isinstance(v, TensorInfo)]
        if any(not is_scalar(t) for t in direct):
            break
        child = _weights_child(node, named_only=bool(direct))
        if child is None:
            break
        path = (*path, child)
        node = node[child]
    return path


def is_scalar(t: TensorInfo) -> bool:
    """A tensor of at most one element (`torch.tensor(0.5)`, a step counter)."""
    return t.numel <= 1


def _weights_child(node: dict[Any, Any], *, named_only: bool = False) -> Any:
    counts = {
        k: count_tensors(v)
        for k, v in node.items()
        if k not in NON_WEIGHT_KEYS and not isinstance(v, TensorInfo)
    }
    counts = {k: n for k, n in counts.items() if n > 0}
    if not counts:
        return None
    for key in WEIGHT_KEYS:
        if key in counts:
            return key
    if named_only:
        return None
    if len(counts) == 1 or sum(counts.values()) == 0:
        return next(iter(counts))
    best = max(counts, key=lambda k: counts[k])
    # Several unnamed tensor-holding children (e.g. a nested module tree): keep the node itself.
    return best if counts[best] > 0.9 * sum(counts.values()) else None


def training_state(tree: Any, root: TreePath) -> list[tuple[TreePath, int]]:
    """Sub-trees under `root` (itself and its ancestors included) holding optimizer or other
    training state rather than weights (a key of NON_WEIGHT_KEYS, or an optimizer state dict),
    with their tensor counts, in container order. Each container is visited once."""
    node = tree
    for i, key in enumerate(root):  # the root itself inside training state: all of it is
        if _is_optimizer_state(node) or _is_non_weight_key(key):
            return [(root[: i + 1], count_tensors(subtree(node, (key,))))]
        node = node[key]
    found: list[tuple[TreePath, int]] = []
    seen: set[int] = set()
    stack: list[tuple[TreePath, Any]] = [(root, node)]
    while stack:
        path, node = stack.pop()
        if not isinstance(node, (dict, list, tuple)) or id(node) in seen:
            continue
        seen.add(id(node))
        if (path and _is_non_weight_key(path[-1])) or _is_optimizer_state(node):
            n = count_tensors(node)
            if n:
                found.append((path, n))
            continue
        items = node.items() if isinstance(node, dict) else enumerate(node)
        kids = [((*path, k), v) for k, v in items if isinstance(v, (dict, list, tuple))]
        stack.extend(reversed(kids))
    return found


def _is_non_weight_key(key: Any) -> bool:
    return isinstance(key, str) and key in NON_WEIGHT_KEYS


def _is_optimizer_state(node: Any) -> bool:
    return isinstance(node, dict) and node.keys() >= OPTIMIZER_STATE_KEYS


def parse_root(spec: str) -> TreePath:
    """`--root model` / `--root state_dict.model` / `--root ''` -> a tree path."""
    if spec in ("", "."):
        return ()
    return tuple(int(p) if p.isdigit() else p for p in spec.split("/" if "/" in spec else "."))


def dotted(path: TreePath) -> str:
    return ".".join(str(p) for p in path)
