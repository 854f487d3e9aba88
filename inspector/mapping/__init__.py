"""Mapping engine: rules as data, ranked proposals with evidence, plan files, architecture view.

from inspector.mapping import propose, load_rules, Plan
plan = propose("char_rnnt.nemo", "bpe_rnnt.nemo")
plan.save("plan.yaml")
"""

from __future__ import annotations

from .layersel import selection_rules
from .plan import (
    DECISIONS,
    FLAGS,
    STATEFUL_GROUPS,
    STATUSES,
    Candidate,
    Edit,
    Entry,
    Evidence,
    ModuleSummary,
    Plan,
    SourceRef,
    Unused,
    fingerprint,
    is_partial,
    is_problem,
)
from .propose import bind, propose
from .rules import (
    Resolution,
    Rule,
    apply_rules,
    builtin_rule_sets,
    invert_rules,
    load_rules,
    rule_from_dict,
    rules_from_list,
    substring_table,
)
from .transforms import TRANSFORMS, Transform, transform_from_dict

__all__ = [
    "DECISIONS",
    "FLAGS",
    "STATEFUL_GROUPS",
    "STATUSES",
    "TRANSFORMS",
    "Candidate",
    "Edit",
    "Entry",
    "Evidence",
    "ModuleSummary",
    "Plan",
    "Resolution",
    "Rule",
    "SourceRef",
    "Transform",
    "Unused",
    "apply_rules",
    "bind",
    "builtin_rule_sets",
    "fingerprint",
    "invert_rules",
    "is_partial",
    "is_problem",
    "load_rules",
    "propose",
    "rule_from_dict",
    "rules_from_list",
    "selection_rules",
    "substring_table",
    "transform_from_dict",
]
