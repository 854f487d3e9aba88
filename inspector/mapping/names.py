"""Dotted tensor names: tokens, layer-index templates, suffixes, module of a name."""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache
from itertools import chain, repeat
from typing import NamedTuple

_WORD = re.compile(r"[a-z]+|\d+")


def is_index(component: str) -> bool:
    """A layer index: ASCII digits only (`'²'.isdigit()` is True but int() refuses it)."""
    return component.isascii() and component.isdigit()


class Parsed(NamedTuple):
    """A name split once for repeated comparisons (the proposer scores many pairs)."""

    name: str
    parts: tuple[str, ...]
    indices: tuple[int, ...]
    tokens: frozenset[str]


def parse(name: str) -> Parsed:
    """Split `name` once: its components, layer indices (as in `template`) and `tokens`."""
    parts = tuple(name.split("."))
    indices = tuple(map(int, _INDEX_COMPONENT.findall(name)))  # the components _component_words
    # finds None for; the loops in C: the proposer parses every source and target name
    # (through a set: a frozenset grown from an iterator keeps a larger table, +290 B a name)
    words = frozenset(set(chain.from_iterable(filter(None, map(_component_words, parts)))))
    return Parsed(name, parts, indices, words)


def parse_many(names: list[str]) -> list[Parsed]:
    """`[parse(n) for n in names]`, each template's tokens worked out once: names that differ
    only in their indices have the same words, and share one frozenset of them."""
    shared: dict[str, frozenset[str]] = {}
    out = []
    for name, blank in zip(names, blanked_many(names), strict=True):
        words = shared.get(blank)
        if words is None:
            words = shared[blank] = parse(name).tokens
        indices = tuple(map(int, _INDEX_COMPONENT.findall(name))) if "{}" in blank else ()
        out.append(Parsed(name, tuple(name.split(".")), indices, words))
    return out


@lru_cache(maxsize=1 << 14)
def _component_words(component: str) -> tuple[str, ...] | None:
    """Word tokens of one component; None for a layer index. Components repeat: cached."""
    return None if is_index(component) else tuple(_WORD.findall(component.lower()))


def parts(name: str) -> tuple[str, ...]:
    return tuple(name.split("."))


# A whole dotted component of ASCII digits (`is_index`): one regex pass instead of a split, a
# test and a join per component (the map report and the proposer template 100k's of names).
_INDEX_COMPONENT = re.compile(r"(?<![^.])[0-9]+(?![^.])")
# The first layer index after at least one component that is not the leaf (`split_index`).
_SPLIT_INDEX = re.compile(r"((?:[^.]*\.)*?[^.]*)\.([0-9]+)\.")


def template(name: str) -> tuple[str, tuple[int, ...]]:
    """`encoder.layers.3.ffn.w` -> (`encoder.layers.{}.ffn.w`, (3,)): indices become `{}`."""
    return blanked(name), tuple(map(int, _INDEX_COMPONENT.findall(name)))


def blanked(name: str) -> str:
    """`template(name)[0]`: `encoder.layers.{}.ffn.w`."""
    return _INDEX_COMPONENT.sub("{}", name)


# _INDEX_COMPONENT over texts joined by newlines, in two passes that each start at a literal
# (3x faster than one pass with a lookbehind): a component after a dot, then one at a line's
# start (a name that begins with an index), looked for only when a line starts with a digit.
_DOTTED_INDEX = re.compile(r"\.[0-9]+(?![^.\n])")
_LEADING_INDEX = re.compile(r"^[0-9]+(?![^.\n])", re.MULTILINE)
_LINE_STARTS_WITH_DIGIT = re.compile(r"\n[0-9]")


def blanked_many(texts: list[str]) -> list[str]:
    """`[blanked(t) for t in texts]` in one pass over them joined (the map report blanks every
    row's name, sources and reason: 100k's of calls otherwise)."""
    if not texts:
        return []
    joined = "\n".join(texts)
    if joined.count("\n") != len(texts) - 1:  # a text holds a newline itself
        return [blanked(t) for t in texts]
    out = _DOTTED_INDEX.sub(".{}", joined)
    if out[:1].isdigit() or _LINE_STARTS_WITH_DIGIT.search(out):
        out = _LEADING_INDEX.sub("{}", out)
    return out.split("\n")


def tokens(name: str) -> frozenset[str]:
    """Word tokens of a name, without layer indices: `ffn1.w_1` -> {ffn, 1, w} minus digits
    that are whole components. Digits inside a component (`ffn1`, `w_1`) stay: they name things.
    Cached per template: the names of every layer share theirs (`{}` has no words)."""
    return _template_tokens(blanked(name))


@lru_cache(maxsize=1 << 16)
def _template_tokens(name: str) -> frozenset[str]:
    out: set[str] = set()
    for p in name.split("."):
        words = _component_words(p)  # cached per component: names repeat theirs
        if words:
            out.update(words)
    return frozenset(out)


def token_similarity(a: str, b: str) -> float:
    """Jaccard similarity of the word tokens of two names, 0..1."""
    return jaccard(tokens(a), tokens(b))


def jaccard(ta: frozenset[str], tb: frozenset[str]) -> float:
    if not ta and not tb:
        return 1.0
    common = len(ta & tb)
    return common / (len(ta) + len(tb) - common)


def common_suffix_parts(pa: tuple[str, ...] | list[str], pb: tuple[str, ...] | list[str]) -> int:
    n, most = 0, min(len(pa), len(pb))
    while n < most and pa[-1 - n] == pb[-1 - n]:
        n += 1
    return n


def suffix(name: str, n: int) -> str:
    """The last `n` dotted components."""
    return ".".join(name.split(".")[-n:]) if n > 0 else ""


def common_root(names: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Leading components that every name shares (and that are not the whole of any name)."""
    if not names:
        return ()
    # The names' common text is that of the first and last in sorted order; its components
    # before its last dot are whole in every name, and none is the last of a name.
    lo, hi = min(names), max(names)
    n = 0
    while n < len(lo) and lo[n] == hi[n]:
        n += 1
    end = lo.rfind(".", 0, n)
    return tuple(lo[:end].split(".")) if end >= 0 else ()


def module_of(name: str, root: tuple[str, ...] = ()) -> str:
    """The component of `name` right after `root`: the module a name belongs to."""
    comps = name.split(".")
    if len(comps) > len(root) + 1:
        return ".".join(comps[: len(root) + 1])
    return name


def modules_of(names: list[str] | tuple[str, ...], root: tuple[str, ...] = ()) -> list[str]:
    """`[module_of(n, root) for n in names]`, one string per module (not one per name), in one
    regex pass over the names joined by newlines (100k names: a split and a join each took
    ~0.1 s)."""
    joined = "\n".join(names)
    if joined.count("\n") != len(names) - 1:  # a name holds a newline itself
        found = list(map(module_of, names, repeat(root)))
    else:  # the first len(root) + 1 components of each line: all of a shorter name
        depth = len(root)
        found = re.findall(rf"^((?:[^.\n]*\.){{0,{depth}}}[^.\n]*)[^\n]*$", joined,
                           re.MULTILINE) if names else []
    same: dict[str, str] = {}
    return [same.setdefault(m, m) for m in found]


# Last components that name a list of layers (torch.nn.ModuleList attributes): `encoder.layers`
# (NeMo Conformer, fairseq, HF BERT/wav2vec2 `encoder.layer`), `blocks` (timm, Whisper), `h`
# (GPT-2 `transformer.h`), `encoders`/`decoders` (WeNet, ESPnet). `conv_layers`, `res_blocks`
# style names match by their last word.
LAYER_LISTS = frozenset({"layers", "layer", "blocks", "block", "h", "encoders", "decoders"})
LAYER_LIST_WORDS = frozenset({"layers", "layer", "blocks", "block"})
MIN_UNNAMED_STACK = 3  # a numbered list with another name is a stack from this many members


def split_index(name: str) -> tuple[str, int, str] | None:
    """`encoder.layers.3.ffn.w` -> ('encoder.layers', 3, 'ffn.w'): the first layer index that
    follows at least one component and is not the leaf. None when there is none."""
    m = _SPLIT_INDEX.match(name)
    return None if m is None else (m.group(1), int(m.group(2)), name[m.end():])


def layer_stacks(names: Iterable[str]) -> dict[str, dict[int, list[str]]]:
    """Numbered module lists that are layer stacks: path -> layer index -> member names.

    A stack's members share the same sub-structure (the same names after the index) and the list
    is named like one (`LAYER_LISTS`, `..._layers`) or has at least `MIN_UNNAMED_STACK` members
    numbered without a gap (0, 1, 2, ...): the slots of an `nn.Sequential` with activations between
    them (`pre_encode.conv.{0,2,3}` of a NeMo Conformer) are not layers.
    """
    found: dict[str, dict[int, list[str]]] = {}
    rests: dict[str, dict[int, set[str]]] = {}
    for name in names:
        hit = split_index(name)
        if hit is not None:
            path, index, rest = hit
            found.setdefault(path, {}).setdefault(index, []).append(name)
            rests.setdefault(path, {}).setdefault(index, set()).add(rest)
    return {p: per for p, per in found.items() if _is_stack(p, rests[p])}


def is_layer_list_name(path: str) -> bool:
    """The list's name says it holds layers: `layers`, `blocks`, `h`, `..._layers`."""
    last = path.rsplit(".", 1)[-1]
    return last in LAYER_LISTS or last.rsplit("_", 1)[-1] in LAYER_LIST_WORDS


def _is_stack(path: str, structures: dict[int, set[str]]) -> bool:
    shapes = list(structures.values())
    if len(shapes) < 2 or any(s != shapes[0] for s in shapes[1:]):
        return False
    if is_layer_list_name(path):
        return True
    first = min(structures)
    return len(shapes) >= MIN_UNNAMED_STACK and sorted(structures) == list(
        range(first, first + len(shapes))
    )


def analogous(name: str, first: str, other: str) -> str | None:
    """Source `name` chosen for target `first`, carried over to target `other`: the same source
    moved to `other`'s layer indices (first `layers.0.w`, other `layers.2.w`: `blocks.0.fc.w` ->
    `blocks.2.fc.w`), else, for rows of one module, `other`'s path under the source module that
    `name` is in (first `enc.a.w`, other `enc.b.w`: `src.enc.a.w` -> `src.enc.b.w`). None when
    neither applies."""
    return _moved_indices(name, first, other) or _same_module(name, first, other)


def _moved_indices(name: str, first: str, other: str) -> str | None:
    a, b = first.split("."), other.split(".")
    if len(a) != len(b):
        return None
    moves = {x: y for x, y in zip(a, b, strict=True) if x != y}
    if not moves or not all(is_index(x) and is_index(y) for x, y in moves.items()):
        return None
    comps = name.split(".")
    if any(comps.count(x) != 1 for x in moves):
        return None
    return ".".join(moves.get(c, c) for c in comps)


def _same_module(name: str, first: str, other: str) -> str | None:
    a, b = first.split("."), other.split(".")
    shared = 0
    while shared < min(len(a), len(b)) - 1 and a[shared] == b[shared]:
        shared += 1
    rel = ".".join(a[shared:])
    if name != rel and not name.endswith("." + rel):
        return None
    return name[: len(name) - len(rel)] + ".".join(b[shared:])
