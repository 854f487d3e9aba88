"""Row labels for the key trees: name, counts, size, dtypes, and the decision with its evidence."""

from __future__ import annotations

from collections.abc import Callable

from rich.text import Text

from ... import humanize
from ..treemodel import Row, TreeModel
from .marks import SOURCE_MARKS, TARGET_MARKS, Mark, mark

# Short dtype names so a row fits half of an 80-column terminal.
SHORT_DTYPES = {
    "float64": "f64",
    "float32": "f32",
    "float16": "f16",
    "bfloat16": "bf16",
    "float8_e4m3fn": "f8e4",
    "float8_e5m2": "f8e5",
    "int64": "i64",
    "int32": "i32",
    "int16": "i16",
    "int8": "i8",
    "uint8": "u8",
    "bool": "bool",
}


def short_dtype(name: str) -> str:
    return SHORT_DTYPES.get(name, name)


def _marks_text(counts: dict[str, int], table: dict[str, Mark]) -> Text:
    out = Text()
    for key, m in table.items():
        n = counts.get(key, 0)
        if n:
            out.append(f" {m.symbol}{n}", style=m.style)
    return out


def module_label(model: TreeModel, row: Row, table: dict[str, Mark]) -> Text:
    t = model.totals(row)
    out = Text(row.label, style="bold")
    out.append_text(_marks_text(t.marks, table))  # before the totals: visible in 80 columns
    dts = ",".join(short_dtype(d) for d in t.dtypes)
    out.append(
        f"  {t.tensors}t {humanize.count(t.params)} {humanize.nbytes(t.nbytes)} {dts}", style="dim"
    )
    return out


def leaf_label(model: TreeModel, row: Row, m: Mark, evidence: str) -> Text:
    info = model.tensors[row.names[0]]
    out = Text()
    out.append(f"{m.symbol} ", style=m.style)
    out.append(row.label)
    if len(row.names) > 1:
        out.append(f" x{len(row.names)}", style="dim")
    shape = humanize.shape(info.shape).replace(" ", "")
    out.append(f" {shape} {short_dtype(info.dtype)}", style="dim")
    if evidence:
        out.append(f"  {evidence}", style=m.style)
    return out


def target_labeler(evidence: Callable[[str], str]) -> Callable[[TreeModel, Row], Text]:
    """Labels for the target tree; `evidence(name)` is the short reason of a row's decision."""

    def label(model: TreeModel, row: Row) -> Text:
        if not row.leaf:
            return module_label(model, row, TARGET_MARKS)
        first = row.names[0]
        m = mark(TARGET_MARKS, model.marks.get(first, ""))
        return leaf_label(model, row, m, evidence(first))

    return label


def source_labeler(model: TreeModel, row: Row) -> Text:
    if not row.leaf:
        return module_label(model, row, SOURCE_MARKS)
    return leaf_label(model, row, mark(SOURCE_MARKS, model.marks.get(row.names[0], "")), "")
