"""`ckpt ls PATH`: the tensors of a checkpoint as a module tree (or flat, or JSON)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .. import humanize, jsonout
from ..containers import count_tensors, dotted
from ..errors import CheckpointError
from ..model import Checkpoint, Record, TensorInfo
from ..plaintree import tensor_text, to_plain
from ..reader import open_checkpoint
from ..sharded import ShardedTensor
from ..tree import ModuleNode, build_tree, collapse_chains, walk


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("path", help="checkpoint file or folder (PATH::ROOT picks the weights)")
    p.add_argument(
        "--root", help="weights sub-tree inside the container ('' for the top); or PATH::ROOT"
    )
    p.add_argument("--depth", type=int, default=3, help="tree depth to show (default 3)")
    p.add_argument("--flat", action="store_true", help="one line per tensor")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--manifest", action="store_true", help="write a shape manifest (YAML)")
    p.add_argument("--no-fold", action="store_true", help="do not fold repeated layers")
    p.add_argument("--strict", action="store_true", help="fail on unsupported pickle globals")
    p.add_argument("--ranks", action="store_true",
                   help="a model-parallel .nemo: list each rank's shards, not the merged model")
    p.add_argument(
        "--config", action="store_true", help="print the model config (.nemo, HF) as YAML"
    )
    p.add_argument("-v", "--verbose", action="store_true",
                   help="say how many bytes and requests a remote input cost (on stderr)")


def run(args: argparse.Namespace) -> int:
    ckpt = open_checkpoint(args.path, root=args.root, strict=args.strict, ranks=args.ranks)
    out = sys.stdout
    if args.config:
        out.write(config_yaml(ckpt))
    elif args.manifest:
        from ..manifest import write_manifest

        out.write(write_manifest(ckpt))
    elif args.json:
        jsonout.dump(to_json(ckpt), out)
        out.write("\n")
    elif args.flat:
        write_flat(ckpt, out)
    else:
        write_tree(ckpt, out, depth=args.depth, fold=not args.no_fold)
    if args.verbose:
        for r in remote_stats(ckpt):
            if r.get("listing"):
                sys.stderr.write(f"{r['url']}: looked up and listed in {r['requests']} "
                                 "requests\n")
                continue
            sys.stderr.write(f"{r['url']}: fetched {humanize.nbytes(r['bytes_fetched'])} of "
                             f"{humanize.nbytes(r['size'])} in {r['requests']} requests\n")
    return 0


def remote_stats(ckpt: Checkpoint) -> list[dict[str, Any]]:
    """What reading each remote source of `ckpt` cost so far (empty for local files); for a
    folder at a URL, first what looking up and listing its paths cost (`listing: true`)."""
    listing = getattr(ckpt.path, "listing_requests", None)
    stats: list[dict[str, Any]] = [
        {"url": f"{ckpt.path}/", "listing": True, "size": 0, "bytes_fetched": 0,
         "requests": listing}
    ] if isinstance(listing, int) else []
    return stats + [
        {"url": src.name, "size": src.size, "bytes_fetched": getattr(src, "bytes_fetched", 0),
         "requests": getattr(src, "requests", 0)}
        for src in ckpt.sources.values() if hasattr(src, "bytes_fetched")
    ]


def header(ckpt: Checkpoint, totals: ModuleNode | None = None) -> str:
    """The first line of `ckpt ls`; `totals`: the root of the checkpoint's module tree, whose
    sums are the same (given, they are not worked out again)."""
    if totals is None:
        params = sum(t.numel for t in ckpt.values())
        size = sum(t.nbytes for t in ckpt.values())
    else:
        params, size = totals.params, totals.nbytes
    root = f", weights under '{dotted(ckpt.root)}'" if ckpt.root else ""
    return (
        f"{ckpt.label}  ({ckpt.format}{root}: {len(ckpt)} tensors, "
        f"{humanize.count(params)} params, {humanize.nbytes(size)})"
    )


def write_tree(ckpt: Checkpoint, out: Any, *, depth: int, fold: bool) -> None:
    tree = build_tree(ckpt.tensors, fold=fold)
    out.write(header(ckpt, tree) + "\n")
    rows: list[tuple[str, ModuleNode]] = []

    def visit(node: ModuleNode, level: int) -> ModuleNode | None:
        shown = collapse_chains(node)  # a collapsed chain continues below its last link
        rows.append(("  " * level + shown.name, shown))
        return shown if level + 1 < depth else None

    walk(tree, visit)
    width = max((len(label) for label, _ in rows), default=10) + 2
    for label, node in rows:
        out.write(_tree_row(label, node, width) + "\n")
    _write_extras(ckpt, out)


def _tree_row(label: str, node: ModuleNode, width: int) -> str:
    if node.is_leaf and node.tensor is not None:
        t = node.tensor
        times = f"{node.repeat} x " if node.repeat > 1 else ""
        return f"{label:<{width}}{times}{t.dtype} {humanize.shape(t.shape)}"
    per = f"  ({node.repeat} x {node.tensors // node.repeat})" if node.repeat > 1 else ""
    noun = "tensor " if node.tensors == 1 else "tensors"
    return (
        f"{label:<{width}}{node.tensors:>6} {noun} {humanize.count(node.params):>8} params "
        f"{humanize.nbytes(node.nbytes):>11}  {humanize.dtypes(node.dtypes)}{per}"
    )


def config_yaml(ckpt: Checkpoint) -> str:
    """The container's model config as YAML (a .nemo's model_config.yaml, an HF config.json)."""
    config = ckpt.metadata.get("config")
    if config is None:
        raise CheckpointError(ckpt.path, f"a {ckpt.format} checkpoint carries no model config")
    import yaml

    return str(yaml.safe_dump(to_plain(config), sort_keys=False))


def _write_container(ckpt: Checkpoint, out: Any) -> None:
    """What the container holds besides tensors: its config and artifacts (.nemo, HF)."""
    config = ckpt.metadata.get("config")
    if isinstance(config, dict):
        kind = config.get("target") or config.get("model_type") or config.get("architectures")
        about = f", {kind}" if kind else ""
        out.write(f"config: {len(config)} keys{about} (ckpt ls --config prints it)\n")
    for a in ckpt.metadata.get("artifacts", ()):
        unused = "" if a.get("referenced", True) else "  (not referenced by the config)"
        out.write(f"artifact: {a['name']}  {humanize.nbytes(a['size'])}{unused}\n")


MAX_CONTAINER_KEYS = 12  # top-level keys summarised on the `container:` line


def _write_container_keys(ckpt: Checkpoint, out: Any) -> None:
    """One line on what a training container holds besides the weights (epoch, optimizer, ...)."""
    if not ckpt.root or not isinstance(ckpt.tree, dict):
        return
    parts = [_summary(k, v, ckpt.root) for k, v in ckpt.tree.items()]
    more = len(parts) - MAX_CONTAINER_KEYS
    shown = parts[:MAX_CONTAINER_KEYS] + ([f"... {more} more"] if more > 0 else [])
    out.write(f"container: {', '.join(shown)}\n")


def _summary(key: Any, value: Any, root: tuple[Any, ...]) -> str:
    if key == root[0]:
        return f"{key} (listed)" if len(root) == 1 else f"{key} (listed: {dotted(root)})"
    if value is None or isinstance(value, (bool, int, float)):
        return f"{key}={value}"
    if isinstance(value, str):
        return f"{key}={value[:40]!r}"
    if isinstance(value, TensorInfo):
        return f"{key} {tensor_text(value)}"
    if isinstance(value, Record):
        return f"{key}=<global {value.cls}>" if value.kind == "global" else f"{key} ({value.cls})"
    if isinstance(value, (dict, list, tuple)):
        n = count_tensors(value)
        kind = f"{'dict' if isinstance(value, dict) else type(value).__name__} of {len(value)}"
        return f"{key} ({kind}{f', {n} tensors' if n else ''})"
    return f"{key} ({type(value).__name__})"


def _write_extras(ckpt: Checkpoint, out: Any) -> None:
    _write_container(ckpt, out)
    _write_container_keys(ckpt, out)
    for group in ckpt.tied_groups():
        out.write(f"tied (one storage): {' = '.join(group)}\n")
    for name, t in ckpt.items():
        if t.storage.source.compression:
            out.write(f"compressed record (not patchable in place): {name}\n")
    for note in ckpt.notes:
        out.write(f"note: {note}\n")


def write_flat(ckpt: Checkpoint, out: Any) -> None:
    tied = {n: g for g in ckpt.tied_groups() for n in g}
    width = max((len(n) for n in ckpt), default=10) + 2
    for name, t in ckpt.items():
        extra = ""
        if name in tied:
            extra += "  tied:" + ",".join(x for x in tied[name] if x != name)
        if not t.is_contiguous:
            extra += f"  strides={t.strides}"
        out.write(
            f"{name:<{width}}{t.dtype:<10} {humanize.shape(t.shape):<20} "
            f"{humanize.nbytes(t.nbytes):>11}{extra}\n"
        )


def tensor_json(ckpt: Checkpoint, t: TensorInfo) -> dict[str, Any]:
    src, span = t.storage.source, t.byte_range
    out = {
        "name": t.name,
        "dtype": t.dtype,
        "shape": list(t.shape),
        "strides": list(t.strides),
        "storage_offset": t.storage_offset,
        "storage": t.storage.key,
        "file": src.path,
        "byte_range": list(span) if span else None,
        "compression": src.compression or None,
        "is_parameter": t.is_parameter,
    }
    if src.assembled:  # a sharded tensor: where each of its chunks lies
        out["file"] = None
        out["chunks"] = chunks_json(ckpt.source(src.path))  # type: ignore[arg-type]
    return out


def chunks_json(source: Any) -> list[dict[str, Any]]:
    """A sharded tensor's chunk layout: global offsets and sizes, and the record holding each
    (file relative to the checkpoint, byte offset and length of its record there)."""
    if not isinstance(source, ShardedTensor):
        return []
    return [{"offsets": list(c.offsets), "sizes": list(c.sizes), "file": c.file,
             "offset": c.offset, "length": c.length} for c in source.chunks]


def to_json(ckpt: Checkpoint) -> dict[str, Any]:
    return {
        "path": str(ckpt.path) if ckpt.path else None,
        "format": ckpt.format,
        "root": [str(p) for p in ckpt.root],
        "tensors": [tensor_json(ckpt, t) for t in ckpt.values()],
        "tied": ckpt.tied_groups(),
        "notes": ckpt.notes,
        "remote": remote_stats(ckpt),
        "metadata": to_plain(ckpt.metadata),
        "container": to_plain(
            ckpt.tree, replace={ckpt.root: f"<weights: {len(ckpt)} tensors, listed in 'tensors'>"}
        ),
    }
