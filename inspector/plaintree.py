"""A container tree as JSON-safe values, for `ckpt ls --json` and YAML output.

Pickles may share a container between places and may point back into themselves (an OmegaConf
node's `_parent`). Each container is therefore written once, at its first path; every later
occurrence becomes the string `<ref to PATH>`, so the output is linear in the pickle's size and
never recurses. The walk is iterative: no depth limit applies to it.
"""

from __future__ import annotations

from typing import Any

from .humanize import shape as shape_text
from .model import Record, TensorInfo, TreePath


def ref_text(path: TreePath) -> str:
    return f"<ref to {'.'.join(str(p) for p in path) or 'top'}>"


def tensor_text(t: TensorInfo) -> str:
    return f"<tensor {t.dtype} {shape_text(t.shape)}>"


def to_plain(tree: Any, *, replace: dict[TreePath, Any] | None = None) -> Any:
    """`tree` as dicts (string keys), lists, strings, numbers, booleans and None.

    A `Record` becomes `{"__class__": cls, "args": [...], "state": ...}` (args and state only
    when present; `"__kind__"` unless it is a plain object), a bare global `<global name>`, a
    tensor `<tensor dtype [shape]>`;
    a container met before `<ref to PATH>`. `replace` maps tree paths to values written instead
    of what is there (the weights sub-tree, listed elsewhere).
    """
    replace = replace or {}
    first: dict[int, TreePath] = {}
    out_root: list[Any] = [None]
    # (node, its path, the output container to put it in, the key there)
    stack: list[tuple[Any, TreePath, Any, Any]] = [(tree, (), out_root, 0)]
    while stack:
        node, path, parent, key = stack.pop()
        if path in replace:
            parent[key] = replace[path]
            continue
        value, children = _convert(node, path, first)
        parent[key] = value
        stack.extend(reversed(children))
    return out_root[0]


def _convert(
    node: Any, path: TreePath, first: dict[int, TreePath]
) -> tuple[Any, list[tuple[Any, TreePath, Any, Any]]]:
    """The output value for `node` and its children still to convert (filled in later)."""
    if node is None or isinstance(node, (bool, int, float, str)):
        return node, []
    if isinstance(node, TensorInfo):
        return tensor_text(node), []
    if isinstance(node, (bytes, bytearray)):
        return f"<{len(node)} bytes>", []
    if isinstance(node, Record) and node.kind == "global":  # a name, not a container
        return f"<global {node.cls}>", []
    if not isinstance(node, (dict, list, tuple, set, frozenset, Record)):
        return repr(node), []
    if not isinstance(node, Record) and not node:  # `()` is one shared object: never a ref
        return ({} if isinstance(node, dict) else []), []
    seen = first.get(id(node))
    if seen is not None:
        return ref_text(seen), []
    first[id(node)] = path
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        kids = [(v, (*path, k), out, _key_text(k)) for k, v in node.items()]
        return out, kids
    if isinstance(node, Record):
        rec: dict[str, Any] = {"__class__": node.cls}
        if node.kind != "object":
            rec["__kind__"] = node.kind
        kids = []
        if node.args:
            kids.append((node.args, (*path, "args"), rec, "args"))
        if node.state is not None:
            kids.append((node.state, (*path, "state"), rec, "state"))
        return rec, kids
    items = list(node)
    lst: list[Any] = [None] * len(items)
    return lst, [(v, (*path, i), lst, i) for i, v in enumerate(items)]


def _key_text(k: Any) -> str:
    if isinstance(k, str):
        return k
    if isinstance(k, (bool, int, float)) or k is None:
        return str(k)
    return str(k) if isinstance(k, Record) else repr(k)
