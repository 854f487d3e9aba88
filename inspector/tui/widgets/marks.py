"""The legend: one symbol, style and meaning per row mark, shared by trees, help and footer.

Symbols carry the meaning on their own (NO_COLOR, screen readers, copy-paste); colours repeat it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Mark:
    symbol: str
    style: str
    meaning: str


# Target rows: the decision for the tensor. Order is the legend's order and the order of counts.
TARGET_MARKS: dict[str, Mark] = {
    "approved": Mark("✓", "bold green", "approved: will be copied"),
    "proposed": Mark("•", "cyan", "proposed: pending review"),
    "ambiguous": Mark("?", "bold magenta", "ambiguous: several equally good sources"),
    "mismatch": Mark("≠", "bold red", "shape mismatch: best source has another shape"),
    "keep": Mark("○", "dim", "keeps the target's own init"),
    "rejected": Mark("✗", "red", "rejected: keeps the target's own init"),
}

# Source rows: whether any target takes its value from the tensor.
SOURCE_MARKS: dict[str, Mark] = {
    "used": Mark("→", "green", "used by a target row"),
    "unused": Mark("·", "dim", "not used by any target row"),
}

UNKNOWN = Mark(" ", "", "")


def mark(table: dict[str, Mark], key: str) -> Mark:
    return table.get(key, UNKNOWN)
