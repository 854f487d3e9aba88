"""`--layers SPEC` and `--layers-prefix P`: a layer selection as rules (ckpt map, ckpt apply)."""

from __future__ import annotations

import argparse
from typing import Any

from ..errors import PlanError
from ..mapping.layersel import selection_rules
from ..mapping.rules import Rule


def add_layer_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--layers",
        metavar="SPEC",
        help="take these source layers for the target's layers, in order: every:K, first, "
        "first:N or a list with a fixed step (0,2,4,6,8,10); written as template rules after "
        "--rules; the source layers not taken are dropped (listed as unused)",
    )
    p.add_argument(
        "--layers-prefix",
        action="append",
        default=[],
        metavar="P",
        help="the layer list(s) --layers applies to (encoder.layers); needed when source and "
        "target share several; repeatable",
    )


def layer_rules(
    args: argparse.Namespace, sources: Any, target: Any, rules: list[Rule]
) -> list[Rule]:
    """The rules `--layers` adds (none without it)."""
    if args.layers is None:
        if args.layers_prefix:
            raise PlanError("--layers-prefix needs --layers")
        return []
    return selection_rules(args.layers, sources, target, rules, args.layers_prefix or None)
