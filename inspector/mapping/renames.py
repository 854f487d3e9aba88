"""Names renamed by one prefix: a source whose tensor names are the target's with a prefix put
before them, taken off, or replaced (Lightning's `model.`, DDP's `module.`, a `bert.` submodule
inside a task model, GPT-2's `transformer.h.` that another port calls `model.layers.`).

`find(sources, targets)` looks at the prefixes that end at one of a name's first `DEPTH` dots,
on both sides: `model.` put before `layers.0.w` names the target `model.layers.0.w`; `module.`
taken off `module.layers.0.w` names `layers.0.w`; `layers.` replaced by `model.blocks.` names
`model.blocks.0.w`. A replacement is looked for only when no prefix put before or taken off
explains the names, and never one whose two prefixes end in the same component (`layers.` ->
`model.layers.` is `model.` put before). The change that sends the most source names onto
target names wins, and only when it explains at least `MIN_SHARE` of the smaller side (a prefix
that fits a handful of names among thousands is a coincidence, left to the similarity ranking),
and only when no other change explains as many (a target holding the model twice, `model.` and
`ema.`, is left to the ranking, which flags what it cannot tell apart). The proposer then
treats each name it sends onto a target like a rule's match.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

DEPTH = 6  # prefixes of up to six dotted components
MIN_SHARE = 0.5  # of the smaller side's names
SAMPLE = 2000  # names per side whose prefixes are counted to choose the change
MAX_PREFIXES = 16  # target prefixes one rest may follow and still name a replacement


@dataclass(frozen=True)
class PrefixChange:
    strip: str  # taken off a source name ("" for none)
    add: str  # put before it ("" for none)
    matched: int  # source names it sends onto a target name
    of: int  # the source names considered

    def apply(self, name: str) -> str | None:
        """The target name for source `name`, or None when `name` lacks the stripped prefix."""
        if not name.startswith(self.strip):
            return None
        return self.add + name[len(self.strip) :]

    def apply_all(self, names: Iterable[str]) -> list[str | None]:
        """`[self.apply(n) for n in names]`, without a call per name (100k names)."""
        strip, add, k = self.strip, self.add, len(self.strip)
        return [add + n[k:] if n.startswith(strip) else None for n in names]

    def describe(self) -> str:
        if self.strip and self.add:
            return f"prefix {self.strip!r} replaced by {self.add!r}"
        if self.strip:
            return f"prefix {self.strip!r} taken off"
        return f"prefix {self.add!r} put before"


def heads(name: str) -> Iterator[str]:
    """The prefixes of `name` that end at one of its first DEPTH dots and leave a non-empty rest."""
    at = -1
    for _ in range(DEPTH):
        at = name.find(".", at + 1)
        if at < 0 or at == len(name) - 1:
            return
        yield name[: at + 1]


def find(sources: Sequence[str], targets: Sequence[str]) -> PrefixChange | None:
    """The prefix change that sends the most of `sources` onto `targets`, when it sends at least
    two and MIN_SHARE of the smaller side and no other change sends as many; else None.
    Candidates come from evenly spaced samples of the names in their given order; a prefix
    replaced is looked for only when no prefix put before or taken off is found."""
    source_set, target_set = set(sources), set(targets)
    if not source_set or not target_set:
        return None
    candidates: Counter[tuple[str, str]] = Counter()
    for name in _sample(sources):
        for p in heads(name):
            if name[len(p) :] in target_set:
                candidates[(p, "")] += 1
    for name in _sample(targets):
        for p in heads(name):
            if name[len(p) :] in source_set:
                candidates[("", p)] += 1
    found = _best(candidates, source_set, target_set)
    if found is None:
        found = _best(_replacements(sources, targets), source_set, target_set)
    return found


def _replacements(sources: Sequence[str], targets: Sequence[str]) -> Counter[tuple[str, str]]:
    """(source prefix, target prefix) pairs counted over a sample of the sources: both prefixes
    end at one of the first DEPTH dots, in a module's name (not a layer's index: `layers.5.`
    names one layer) and in different components, and leave the same rest. Only the sample's
    rests are kept: indexing every target's rests held three strings and a list per target
    name (~700 B each, the peak of `ckpt map` at 100k)."""
    sampled = [(p, name[len(p) :]) for name in _sample(sources) for p in _module_heads(name)]
    found: dict[str, list[str]] = {rest: [] for _, rest in sampled}  # rest -> target prefixes
    for name in targets:  # heads(name) written out: this loop sees every target name
        at = -1
        for _ in range(DEPTH):
            at = name.find(".", at + 1)
            if at < 0 or at == len(name) - 1:
                break
            prefixes = found.get(name[at + 1 :])
            if prefixes is not None and len(prefixes) <= MAX_PREFIXES:
                q = name[: at + 1]
                if not _last(q)[:-1].isdigit():
                    prefixes.append(q)
    out: Counter[tuple[str, str]] = Counter()
    for p, rest in sampled:
        prefixes = found[rest]
        if len(prefixes) > MAX_PREFIXES:
            continue  # a rest that many modules end in (`weight`) tells no prefix
        last = _last(p)
        for q in prefixes:
            if _last(q) != last:
                out[(p, q)] += 1
    return out


def _module_heads(name: str) -> Iterator[str]:
    return (p for p in heads(name) if not _last(p)[:-1].isdigit())


def _last(prefix: str) -> str:
    """The last component of a prefix, with its dot: `blocks.` of `model.blocks.`."""
    return prefix[prefix.rfind(".", 0, -1) + 1 :]


def _best(
    candidates: Counter[tuple[str, str]], source_set: set[str], target_set: set[str]
) -> PrefixChange | None:
    if not candidates:
        return None
    ranked = sorted(candidates, key=lambda c: (-candidates[c], len(c[0] + c[1]), c))
    best = _counted(*ranked[0], source_set, target_set)
    if best.matched < 2 or best.matched < MIN_SHARE * min(len(source_set), len(target_set)):
        return None
    if len(ranked) > 1 and candidates[ranked[1]] == candidates[ranked[0]] and (
        _counted(*ranked[1], source_set, target_set).matched == best.matched
    ):
        return None  # two prefixes explain as much (`model.` and `ema.`): not decided here
    return best


def _counted(strip: str, add: str, sources: set[str], targets: set[str]) -> PrefixChange:
    renamed = PrefixChange(strip, add, 0, len(sources)).apply_all(sources)
    matched = sum(map(targets.__contains__, renamed))
    return PrefixChange(strip, add, matched, len(sources))


def _sample(names: Sequence[str]) -> Sequence[str]:
    return names[:: max(1, len(names) // SAMPLE)]
