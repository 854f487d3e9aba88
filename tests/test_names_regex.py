"""The regex forms of the name helpers (`template`, `blanked`, `split_index`, `common_root`, the
map report's `_layer_prefix`) agree with their definitions by components, written out here as
they were before: one split, test and join per component."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from inspector import tree
from inspector.cli.map import _layer_prefix
from inspector.mapping import names as nm


def _is_index(c: str) -> bool:
    return c.isascii() and c.isdigit()


def template_by_parts(name: str) -> tuple[str, tuple[int, ...]]:
    parts = name.split(".")
    out = ["{}" if _is_index(p) else p for p in parts]
    return ".".join(out), tuple(int(p) for p in parts if _is_index(p))


def split_index_by_parts(name: str) -> tuple[str, int, str] | None:
    comps = name.split(".")
    for i in range(1, len(comps) - 1):
        if _is_index(comps[i]):
            return ".".join(comps[:i]), int(comps[i]), ".".join(comps[i + 1 :])
    return None


def common_root_by_parts(names: list[str]) -> tuple[str, ...]:
    root: list[str] = []
    for comps in zip(*[n.split(".")[:-1] for n in names], strict=False):
        if len(set(comps)) != 1:
            break
        root.append(comps[0])
    return tuple(root)


def layer_prefix_by_parts(name: str) -> str:
    comps = name.split(".")
    for i, c in enumerate(comps[:-1]):
        if _is_index(c) and i > 0:
            return ".".join(comps[: i + 1])
    return ""


COMPONENT = st.sampled_from(
    ["", "0", "7", "12", "007", "a", "w1", "1a", "²", "٣", " ", "\n", "1\n"])
NAME = st.lists(COMPONENT | st.text(max_size=3), min_size=1, max_size=6).map(".".join)


@settings(max_examples=1000)
@given(NAME)
def test_one_name(name: str) -> None:
    assert nm.template(name) == template_by_parts(name)
    assert nm.blanked(name) == template_by_parts(name)[0]
    assert nm.split_index(name) == split_index_by_parts(name)
    assert _layer_prefix(name) == layer_prefix_by_parts(name)


@settings(max_examples=1000)
@given(st.lists(NAME, min_size=1, max_size=5))
def test_common_root(names: list[str]) -> None:
    assert nm.common_root(names) == common_root_by_parts(names)


def test_examples() -> None:
    assert nm.template("encoder.layers.3.ffn.w") == ("encoder.layers.{}.ffn.w", (3,))
    assert nm.split_index("encoder.layers.3.ffn.w") == ("encoder.layers", 3, "ffn.w")
    assert nm.common_root(["model.a.w", "model.b.w"]) == ("model",)
    assert nm.common_root(["model.ab.w", "model.a.w"]) == ("model",)
    assert _layer_prefix("model.layers.12.w") == "model.layers.12"


def tokens_by_parts(name: str) -> frozenset[str]:
    out: set[str] = set()
    for p in name.lower().split("."):
        if not _is_index(p):
            out.update(nm._WORD.findall(p))
    return frozenset(out)


@settings(max_examples=1000)
@given(NAME)
def test_tokens(name: str) -> None:
    nm._template_tokens.cache_clear()
    assert nm.tokens(name) == tokens_by_parts(name)


@settings(max_examples=2000)
@given(COMPONENT | st.text(max_size=4))
def test_tree_index_is_the_regex(part: str) -> None:
    assert tree._is_index(part) == bool(tree._INDEX.match(part))


def parse_by_parts(name: str) -> nm.Parsed:
    parts = tuple(name.split("."))
    indices = tuple(int(p) for p in parts if _is_index(p))
    return nm.Parsed(name, parts, indices, tokens_by_parts(name))


@settings(max_examples=1000)
@given(NAME)
def test_parse(name: str) -> None:
    assert nm.parse(name) == parse_by_parts(name)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.text(alphabet="0123.a{}\n ", max_size=14), max_size=8))
def test_blanked_many_blanks_each_text_as_blanked_does(texts: list[str]) -> None:
    """The joined two-pass form (newlines bound components; a text holding a newline itself
    is blanked alone) is `blanked` per text."""
    assert nm.blanked_many(texts) == [template_by_parts(t)[0] for t in texts]
    assert nm.blanked_many(texts) == [nm.blanked(t) for t in texts]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(["a", "7", "0.5", "x1", "{}", "{}"]), min_size=1, max_size=6),
       st.lists(st.lists(st.sampled_from(["0", "1", "12"]), min_size=6, max_size=6), min_size=1,
                max_size=6))
def test_a_runs_reasons_compare_as_by_their_numbers(parts: list[str], fills: list[list[str]]
                                                    ) -> None:
    """`ckpt map`'s folded reason: texts equal once blanked (one run's reasons) are told apart
    by their varying numbers as the whole-text definition does (counted up to 2)."""
    from inspector.cli.rowruns import DIGITS, numbers_apart

    template = ".".join(parts)
    texts = list(dict.fromkeys(template.replace("{}", "%s") % tuple(f[: template.count("{}")])
                               for f in fills))
    same = len({DIGITS.sub("#", t) for t in texts}) == 1
    columns = zip(*(DIGITS.findall(t) for t in texts), strict=True) if same else []
    varying = sum(len(set(c)) > 1 for c in columns)
    got_same, got_varying = numbers_apart(texts)
    assert got_same == same
    assert min(got_varying, 2) == min(varying, 2)


@settings(max_examples=500, deadline=None)
@given(st.lists(NAME, max_size=8))
def test_parse_many_is_parse_of_each(names: list[str]) -> None:
    assert nm.parse_many(names) == [nm.parse(n) for n in names]


@settings(max_examples=500)
@given(st.lists(NAME, max_size=6), st.integers(0, 3))
def test_modules_of_many_names_is_module_of_each(names: list[str], depth: int) -> None:
    """`modules_of` (one regex pass over the names joined) says what `module_of` says of each
    name, for any root length, names with newlines, empty components and short names."""
    root = tuple("r" * depth)
    assert nm.modules_of(names, root) == [nm.module_of(n, root) for n in names]
    assert nm.modules_of(names, nm.common_root(names) if names else ()) == [
        nm.module_of(n, nm.common_root(names)) for n in names]

