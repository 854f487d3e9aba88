"""The compact plan form: rows that differ only in the indices of their target's name, said once.

A mixture-of-experts plan has a row per expert of every layer, and those rows differ only in the
numbers of their names: 100k rows took 82 MB written one full row per line. In the compact form
such rows share a *template*: the row with each index of the target's name written `{0}`, `{1}`,
... in its strings (reason, source names, evidence details, candidates), a literal brace doubled
(`{{`), as Python's `str.format` reads it. An entry that follows a template says its number:

    templates:
    - {"decision": "copy", ..., "sources": [["src", "layers.{0}.experts.{1}.w1", [2, 2], "f32"]]}
    entries:
      "model.layers.7.experts.3.w1": 0

The indices of a name are its segments made only of digits between two dots (`INDEX`), in order:
`model.layers.7.experts.3.w1` has `7` and `3`. A row is written through a template only when
that template gives back that row (equal values: a score written `1` may read back `1.0`); rows
with a transform, and templates only one row would use, stay full rows. Reading checks each
template once as a row, then each entry's name against the indices the template uses.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import fields
from itertools import repeat
from typing import Any

from .._native import core
from ..errors import PlanError
from .entries import ENTRY_FIELDS, Candidate, Entry, Evidence

# Plans of at least this many rows are written compact unless asked otherwise: below it a plan is
# small enough to read in full, row by row, in a review.
COMPACT_FROM = 2000
INDEX = re.compile(r"(?<=\.)[0-9]+(?=\.)")
_TEMPLATE_TEXT = re.compile(r"(?:[^{}]|\{\{|\}\}|\{(?:0|[1-9][0-9]{0,5})\})*", re.DOTALL)
_DOUBLED = re.compile(r"\{\{|\}\}")
_FIELDS = re.compile(r"\{([0-9]+)\}")
# A template's strings are filled in for every row that follows it, so a small file could name
# gigabytes of text (one long string, many rows). The rows' filled strings may take at most this
# many times the characters the file spends on the templates and their rows' names, or
# FILL_FLOOR characters whatever the file (a version 1 plan's strings are only as long as
# written).
FILL_RATIO = 64
FILL_FLOOR = 64 << 20

Key = tuple[Any, ...]
# every field of each, in declaration order (what frozen_rows sets)
_EVIDENCE_FIELDS = tuple(f.name for f in fields(Evidence))
_CANDIDATE_FIELDS = tuple(f.name for f in fields(Candidate))


def templated(text: str, values: list[str]) -> str:
    """`text` as a template string for a row whose name has indices `values`: braces doubled,
    each dotted segment equal to values[k] written `{k}` (the first k when two are equal).
    `templated(text, values).format(*values) == text`."""
    if "{" in text or "}" in text:
        text = text.replace("{", "{{").replace("}", "}}")
    for k, value in enumerate(values):
        dotted = f".{value}."
        if dotted in text:
            field = f".{{{k}}}."
            # twice: `a.0.0.b` shares the dot between its two matches
            text = text.replace(dotted, field).replace(dotted, field)
    return text


def template_key(e: Entry) -> Key | None:
    """What `e` shares with the rows of its template: its strings `templated` (joined by NUL),
    then its other fields; None for a row written in full (a transform, or a NUL in a string)."""
    if e.transform:
        return None
    ev, cands = e.evidence, e.candidates
    texts = [e.reason, *[n for _, n in e.sources], *[x.detail for x in ev],
             *[c.name for c in cands], *[c.why for c in cands]]
    joined = templated("\0".join(texts), INDEX.findall(e.target))  # a NUL never meets ".7."
    if joined.count("\0") != len(texts) - 1:
        return None
    key = (joined, e.decision, e.status, e.confidence, e.shape, e.dtype, e.flags,
           tuple([label for label, _ in e.sources]), e.source_shapes, e.source_dtypes,
           tuple([(x.kind, x.score) for x in ev]), tuple([(c.label, c.score) for c in cands]))
    try:
        hash(key)
    except TypeError:  # an Entry built by hand with a list for its shape or a set of flags
        return None
    return key


def compact(entries: dict[str, Entry]) -> tuple[list[Key], dict[str, int | None]]:
    """The templates that two or more rows share (first-seen order), and per target name the
    index of its template or None (written in full)."""
    keys: list[Key | None] = []
    counts: Counter[Key | None] = Counter()
    first: dict[Key, Key] = {}
    for e in entries.values():
        key = template_key(e)
        if key is not None:  # the first equal key kept, this one dropped: 100k rows of a few
            key = first.setdefault(key, key)  # templates held 100k keys (~70 MB) at once
        keys.append(key)
        counts[key] += 1
    shared = {key: 0 for key, n in counts.items() if n > 1 and key is not None}
    for i, key in enumerate(shared):
        shared[key] = i
    return list(shared), {name: None if key is None else shared.get(key)
                          for name, key in zip(entries, keys, strict=True)}


def template_entry(key: Key) -> Entry:
    """A template as a row (its strings templates), for planfile to write as it writes rows."""
    (joined, decision, status, confidence, shape, dtype, flags, labels, source_shapes,
     source_dtypes, evidence, candidates) = key
    texts = iter(joined.split("\0"))
    reason = next(texts)
    sources = tuple((label, next(texts)) for label in labels)
    evidence_rows = tuple(Evidence(kind, next(texts), score) for kind, score in evidence)
    names = [next(texts) for _ in candidates]
    return Entry("", decision, sources, status=status, reason=reason, evidence=evidence_rows,
                 confidence=confidence, flags=flags,
                 candidates=tuple(Candidate(label, name, score, next(texts)) for (label, score),
                                  name in zip(candidates, names, strict=True)),
                 shape=shape, dtype=dtype, source_shapes=source_shapes,
                 source_dtypes=source_dtypes)


class Template:
    """A template read from a plan file: `make_many(names, where)` are the rows it gives for
    those targets. `proto` is the template read as a row (and checked as one), its strings still
    templates. The strings that hold a field or a brace are filled in per row (each distinct one
    once: a row's reason often repeats in its evidence), the others are shared."""

    def __init__(self, proto: Entry, where: str) -> None:
        if proto.transform:
            raise PlanError(f"{where}.transform: a template holds no transform (that row is "
                            "written in full)")
        self.proto, self.where, self.arity = proto, where, 0
        self._size = self._fields = 0  # characters and fields of its distinct template strings
        self._texts: dict[str, int] = {}  # template string -> its slot in a row's filled list
        self._reason = self._slot(proto.reason, ".reason")
        self._sources = [self._slot(n, f".sources[{i}]") for i, (_, n) in enumerate(proto.sources)]
        self._evidence = [self._slot(x.detail, f".evidence[{i}]")
                          for i, x in enumerate(proto.evidence)]
        self._candidates = [(self._slot(c.name, f".candidates[{i}].name"),
                             self._slot(c.why, f".candidates[{i}].why"))
                            for i, c in enumerate(proto.candidates)]
        self._formats = [text.format for text in self._texts]
        self._any_source = any(i is not None for i in self._sources)
        self._any_evidence = any(i is not None for i in self._evidence)
        self._any_candidate = any(i != (None, None) for i in self._candidates)

    @property
    def written(self) -> int:
        """Characters the file spends on this template's strings that rows fill in."""
        return self._size

    def make_many(self, names: list[str], where: str, budget: FillBudget) -> list[Entry]:
        """The rows of target `names`, made in the core by columns (the strings that differ
        filled in per row, every other field shared), their filled strings drawn from
        `budget`."""
        values = [INDEX.findall(name) for name in names]
        if self.arity:
            for name, v in zip(names, values, strict=True):
                if len(v) < self.arity:
                    raise PlanError(f"{where}: entries[{name!r}]: its template ({self.where}) "
                                    f"says {{{self.arity - 1}}}; the name has {len(v)} index(es) "
                                    "(numbers between dots)")
        if self._texts:  # at most: each string, each field filled with the row's longest index
            widest = sum(max(map(len, v), default=0) for v in values)
            budget.spend(len(names) * self._size + widest * self._fields, self.where)
        filled = [[fmt(*v) for v in values] for fmt in self._formats]
        p, n = self.proto, len(names)
        columns = {
            "target": names, "decision": (p.decision,),
            "sources": self._sources_column(filled, n) if self._any_source else (p.sources,),
            "transform": ((),), "status": (p.status,),
            "reason": (p.reason,) if self._reason is None else filled[self._reason],
            "evidence": self._evidence_column(filled, n) if self._any_evidence else (p.evidence,),
            "confidence": (p.confidence,), "flags": (p.flags,),
            "candidates": (self._candidates_column(filled, n) if self._any_candidate
                           else (p.candidates,)),
            "shape": (p.shape,), "dtype": (p.dtype,), "source_shapes": (p.source_shapes,),
            "source_dtypes": (p.source_dtypes,),
        }
        return core.frozen_rows(Entry, ENTRY_FIELDS, [columns[f] for f in ENTRY_FIELDS], n)

    # Each column is one tuple per row, zipped from one column per item (a shared item repeated)
    def _sources_column(self, filled: list[list[str]], n: int
                        ) -> list[tuple[tuple[str, str], ...]]:
        items = [repeat(src, n) if i is None else zip(repeat(src[0], n), filled[i], strict=True)
                 for src, i in zip(self.proto.sources, self._sources, strict=True)]
        return list(zip(*items, strict=True))

    def _evidence_column(self, filled: list[list[str]], n: int) -> list[tuple[Evidence, ...]]:
        items = [repeat(x, n) if i is None else core.frozen_rows(
                     Evidence, _EVIDENCE_FIELDS, [(x.kind,), filled[i], (x.score,)], n)
                 for x, i in zip(self.proto.evidence, self._evidence, strict=True)]
        return list(zip(*items, strict=True))

    def _candidates_column(self, filled: list[list[str]], n: int) -> list[tuple[Candidate, ...]]:
        items = [repeat(c, n) if name is None and why is None else core.frozen_rows(
                     Candidate, _CANDIDATE_FIELDS,
                     [(c.label,), (c.name,) if name is None else filled[name], (c.score,),
                      (c.why,) if why is None else filled[why]], n)
                 for c, (name, why) in zip(self.proto.candidates, self._candidates, strict=True)]
        return list(zip(*items, strict=True))

    def _slot(self, text: str, field: str) -> int | None:
        """None for a string every row shares, else its slot in a row's filled strings."""
        if "{" not in text and "}" not in text:
            return None
        if text not in self._texts:
            self._check(text, field)
            self._texts[text] = len(self._texts)
        return self._texts[text]

    def _check(self, text: str, field: str) -> None:
        """Only `{N}` fields (N without leading zeros) and doubled braces: what str.format reads
        the same way, and nothing it would look up (`{0.x}`, `{0[1]}`, `{0!r}`, `{0:>9}`)."""
        if not _TEMPLATE_TEXT.fullmatch(text):
            raise PlanError(f"{self.where}{field}: a template says {{0}}, {{1}}, ... for the "
                            f"indices of the name and doubles a literal brace, got {text!r}")
        fields = [int(f) for f in _FIELDS.findall(_DOUBLED.sub("", text))]
        self.arity = max(self.arity, *(f + 1 for f in fields), 0)
        self._size += len(text)
        self._fields += len(fields)

    def __repr__(self) -> str:
        return f"Template({self.where})"


class FillBudget:
    """The characters a plan's templates may fill in for their rows (FILL_RATIO, FILL_FLOOR)."""

    def __init__(self, written: int, where: str) -> None:
        self.left = self.limit = max(FILL_FLOOR, FILL_RATIO * written)
        self.where = where

    def spend(self, chars: int, template: str) -> None:
        if chars > self.left:
            raise PlanError(f"{self.where}: the rows of its templates would fill in more than "
                            f"{self.limit:,} characters ({template} among them): a compact plan "
                            f"may expand to {FILL_RATIO}x what it writes")
        self.left -= chars
