"""The one way the tool reads YAML (.nemo configs, plans, rules, manifests): a safe loader whose
work is bounded.

A safe loader runs no code, but aliases let a few KB name billions of nodes (`&a [*b, *b, ...]`
nested a few levels): the loaded objects share them, and every consumer that walks, prints or
serialises the result expands them. So the composed node graph is measured before anything is
built: aliases may add at most MAX_ALIAS_EXPANSION nodes to the document, nesting is capped, and
recursive aliases are refused. Every failure is a `yaml.YAMLError`, which callers already report
with the file's name.
"""

from __future__ import annotations

from typing import Any

import yaml

MAX_ALIAS_EXPANSION = 1_000_000  # nodes that aliases may add beyond those written in the text
MAX_DEPTH = 512

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present


class YamlLimitError(yaml.YAMLError):
    """A YAML document over the loader's bounds (an alias bomb, runaway nesting)."""


def load(text: str | bytes) -> Any:
    """The document in `text` as plain Python data (None when empty), within the bounds."""
    loader = _Loader(text)
    try:
        try:
            node = loader.get_single_node()
        except RecursionError:
            raise YamlLimitError(f"nested deeper than the parser allows (> {MAX_DEPTH})") from None
        if node is None:
            return None
        _check(node)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _check(root: yaml.Node) -> None:
    """Refuse recursive aliases, nesting past MAX_DEPTH, and aliases expanding the document past
    its written size + MAX_ALIAS_EXPANSION nodes. Iterative; each node is visited once."""
    expanded: dict[int, int] = {}  # node id -> nodes under it, aliases expanded
    written = 0
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, int]] = [(root, 0)]
    while stack:
        node, state = stack.pop()
        nid = id(node)
        children = _children(node)
        if state == 0:
            if nid in expanded:
                continue
            if nid in on_path:
                raise YamlLimitError("a recursive alias (a node that contains itself)")
            if len(on_path) >= MAX_DEPTH:
                raise YamlLimitError(f"nested deeper than {MAX_DEPTH} levels")
            written += 1
            on_path.add(nid)
            stack.append((node, 1))
            stack.extend((child, 0) for child in children if id(child) not in expanded)
            continue
        on_path.discard(nid)
        expanded[nid] = 1 + sum(expanded[id(child)] for child in children)
        if expanded[nid] > written + MAX_ALIAS_EXPANSION:
            raise YamlLimitError(
                f"aliases expand the document past {written + MAX_ALIAS_EXPANSION:,} nodes "
                f"(written: {written:,}): refused as an alias bomb")


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []
