"""A prefix put before, taken off or replaced in a source's names (inspector.mapping.renames)."""

from __future__ import annotations

import random
from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from inspector.mapping import renames
from inspector.mapping.renames import PrefixChange, find, heads

NAMES = [f"layers.{i}.{leaf}" for i in range(4) for leaf in ("w", "b", "norm.w")] + ["head.w"]


def test_a_prefix_put_before_every_name() -> None:
    change = find(NAMES, ["model." + n for n in NAMES])
    assert change == PrefixChange("", "model.", len(NAMES), len(NAMES))
    assert change.apply("layers.0.w") == "model.layers.0.w"
    assert change.describe() == "prefix 'model.' put before"


def test_a_prefix_taken_off_every_name() -> None:
    change = find(["module.net." + n for n in NAMES], NAMES)
    assert change == PrefixChange("module.net.", "", len(NAMES), len(NAMES))
    assert change.apply("other.w") is None
    assert change.describe() == "prefix 'module.net.' taken off"


def test_the_change_is_taken_when_it_explains_half_of_the_smaller_side() -> None:
    targets = ["bert." + n for n in NAMES] + ["cls.w", "cls.b"]  # a task model: a new head
    found = find([*NAMES, "pooler.w"], targets)
    assert found is not None
    assert (found.add, found.matched, found.of) == ("bert.", len(NAMES), len(NAMES) + 1)

    def targets_with(k: int) -> list[str]:  # k of the 13 names renamed, the rest unrelated
        return ["model." + n for n in NAMES[:k]] + [f"y.{i}" for i in range(len(NAMES) - k)]

    assert find(NAMES, targets_with(7)) == PrefixChange("", "model.", 7, len(NAMES))
    assert find(NAMES, targets_with(6)) is None  # under half: a coincidence


def test_a_prefix_replaced_in_every_name() -> None:
    """GPT-2's `transformer.h.` that another port calls `model.layers.`: found only when no
    prefix put before or taken off explains the names."""
    blocks = [n.replace("layers.", "model.blocks.") for n in NAMES]
    change = find(NAMES, blocks)
    assert change == PrefixChange("layers.", "model.blocks.", len(NAMES) - 1, len(NAMES))
    assert change.apply("layers.3.norm.w") == "model.blocks.3.norm.w"
    assert change.apply("head.w") is None
    assert change.describe() == "prefix 'layers.' replaced by 'model.blocks.'"
    gpt2 = [f"transformer.h.{i}.{leaf}" for i in range(3) for leaf in ("attn.w", "mlp.w")]
    found = find(gpt2, [n.replace("transformer.h.", "model.layers.") for n in gpt2])
    assert found == PrefixChange("transformer.h.", "model.layers.", len(gpt2), len(gpt2))


def test_a_replacement_is_never_a_prefix_put_before_in_disguise() -> None:
    """`layers.` -> `model.layers.` is `model.` put before (the simpler change, which also
    renames `head.w`); prefixes that end in a layer's index (`layers.0.`) name one layer."""
    assert find(NAMES, ["model." + n for n in NAMES]) == PrefixChange(
        "", "model.", len(NAMES), len(NAMES))
    only_layers = [n.replace("layers.", "model.layers.") for n in NAMES if n != "head.w"]
    assert find(NAMES, only_layers) == PrefixChange("", "model.", len(only_layers), len(NAMES))
    assert list(renames._module_heads("layers.0.norm.w")) == ["layers.", "layers.0.norm."]


def test_a_rest_that_many_modules_end_in_names_no_prefix() -> None:
    """`w` follows every module's prefix: it says nothing of which one a source name had."""
    sources = [f"m{i}.w" for i in range(40)]
    targets = [f"x.n{i}.w" for i in range(40)]
    assert find(sources, targets) is None


def test_nothing_without_a_common_prefix() -> None:
    assert find(NAMES, [n.replace("norm", "ln") for n in NAMES]) is None
    assert find([], NAMES) is None
    assert find(NAMES, []) is None
    assert find(["a.w"], ["m.a.w"]) is None  # one name is no evidence


def test_two_prefixes_that_explain_as_much_decide_nothing() -> None:
    """A target holding the model twice (`model.` and `ema.`): which copy a source feeds is not
    a prefix's to decide."""
    assert find(NAMES, ["model." + n for n in NAMES] + ["ema." + n for n in NAMES]) is None
    more = find(NAMES, ["model." + n for n in NAMES] + ["ema." + n for n in NAMES[:3]])
    assert more == PrefixChange("", "model.", len(NAMES), len(NAMES))


def test_a_prefix_four_components_deep_replaced_is_found() -> None:
    """An encoder moved under another wrapper (`enc.net.body.layers.` -> `model.enc.trunk.
    blocks.`): 100k MoE rows were ranked one by one (7 s, 526 MB, every row to review)."""
    sources = [f"enc.net.body.layers.{i}.experts.{j}.w" for i in range(40) for j in range(4)]
    targets = [n.replace("enc.net.body.layers.", "model.enc.trunk.blocks.") for n in sources]
    assert find(sources, targets) == PrefixChange("enc.net.body.layers.",
                                                  "model.enc.trunk.blocks.", 160, 160)


def test_heads_stop_at_six_components_and_leave_a_rest() -> None:
    assert list(heads("a.b.c.d.e.f.g.h")) == ["a.", "a.b.", "a.b.c.", "a.b.c.d.", "a.b.c.d.e.",
                                              "a.b.c.d.e.f."]
    assert list(heads("a.b.c.d.e")) == ["a.", "a.b.", "a.b.c.", "a.b.c.d."]
    assert list(heads("a.b")) == ["a."]
    assert list(heads("a.")) == []
    assert list(heads("w")) == []


_part = st.text("abcxyz", min_size=1, max_size=4)
_name = st.lists(_part, min_size=1, max_size=4).map(".".join)


@given(st.lists(_name, min_size=2, max_size=40, unique=True), st.lists(_part, min_size=1,
                                                                       max_size=3),
       st.booleans(), st.randoms(use_true_random=False))
def test_the_change_found_sends_names_onto_targets(
    names: list[str], prefix_parts: list[str], added: bool, rnd: random.Random
) -> None:
    """Whatever the names: the change found maps at least half of the smaller side onto target
    names, each one onto a target; a prefix put before all of them is found with every name;
    the answer does not depend on the order of either side (below the sample size)."""
    prefix = ".".join(prefix_parts) + "."
    sources, targets = (names, [prefix + n for n in names]) if added else (
        [prefix + n for n in names], names)
    change = find(sources, targets)
    assert change is not None
    assert change.matched == len(names)
    assert all(change.apply(s) in targets for s in sources)
    shuffled_s, shuffled_t = sources[:], targets[:]
    rnd.shuffle(shuffled_s)
    rnd.shuffle(shuffled_t)
    assert find(shuffled_s, shuffled_t) == change
    assert renames.MIN_SHARE * len(names) <= change.matched


@given(st.lists(_name, min_size=2, max_size=40, unique=True),
       st.lists(_part, min_size=1, max_size=2), st.lists(_part, min_size=1, max_size=2),
       st.randoms(use_true_random=False))
def test_a_replacement_found_sends_names_onto_targets(
    names: list[str], old_parts: list[str], new_parts: list[str], rnd: random.Random
) -> None:
    """Whatever the names and the two prefixes: a change is found or not, and when found it
    sends at least half of the names onto targets, each onto one, whatever the order; when the
    prefixes end in different modules and no name already names a target, it is found."""
    old, new = ".".join(old_parts) + ".", ".".join(new_parts) + "."
    sources, targets = [old + n for n in names], [new + n for n in names]
    change = find(sources, targets)
    if change is not None:
        assert renames.MIN_SHARE * len(names) <= change.matched
        assert sum(change.apply(s) in set(targets) for s in sources) == change.matched
        shuffled_s, shuffled_t = sources[:], targets[:]
        rnd.shuffle(shuffled_s)
        rnd.shuffle(shuffled_t)
        assert find(shuffled_s, shuffled_t) == change
    distinct = old_parts[-1] != new_parts[-1] and not set(sources) & set(targets)
    if distinct and not any(p.isdigit() for p in old_parts + new_parts):
        assert change is not None


def _replacements_by_every_target(sources: list[str], targets: list[str]) -> Counter[tuple[str,
                                                                                          str]]:
    """The counts as first written: every target's rests indexed, then the sample looked up."""
    by_rest: dict[str, list[str]] = {}
    for name in targets:
        for q in renames._module_heads(name):
            by_rest.setdefault(name[len(q):], []).append(q)
    out: Counter[tuple[str, str]] = Counter()
    for name in renames._sample(sources):
        for p in renames._module_heads(name):
            found = by_rest.get(name[len(p):], ())
            if len(found) > renames.MAX_PREFIXES:
                continue
            out.update((p, q) for q in found if renames._last(q) != renames._last(p))
    return out


@given(st.lists(_name, max_size=60, unique=True), st.lists(_name, max_size=60, unique=True),
       st.integers(1, 20))
def test_replacements_count_as_an_index_of_every_target_would(
    sources: list[str], targets: list[str], many: int
) -> None:
    """Only the sample's rests are indexed (memory: three strings a target name were held at
    100k), with the same counts, a rest that more than MAX_PREFIXES targets end in included."""
    targets = targets + [f"m{i}.x.y" for i in range(many)]  # one rest, many prefixes
    sources = [*sources, "s.x.y"]
    assert renames._replacements(sources, targets) == _replacements_by_every_target(sources,
                                                                                   targets)


@given(st.lists(st.sampled_from(["a.x", "a.", "b.a.x", "", "a.b.c", "ab.x"]), max_size=8),
       st.sampled_from(["", "a.", "a.b."]), st.sampled_from(["", "m.", "m.n."]))
def test_apply_all_is_apply_of_each_name(names: list[str], strip: str, add: str) -> None:
    change = PrefixChange(strip, add, 0, 0)
    assert change.apply_all(names) == [change.apply(n) for n in names]

