"""Mapping rules: data that says how source tensor names become target tensor names.

Rules are applied to a source name (after its source's prefix is added) as a pipeline: each rule in
order rewrites the current name when it matches, and the result is what later rules see. A
`table` rule groups rules with first-match semantics (the shape of the HF conversion scripts'
MAPPING dicts). A `drop` rule ends the pipeline: the source tensor is not used. A `keep` rule
names target tensors that keep their own initialisation whatever the sources hold.

The same structure is written in YAML and in Python (`rule_from_dict`, `Rule.to_dict`). Every kind
is one small frozen dataclass registered in `RULE_KINDS`; see docs/mapping.md for the reference.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar

import yaml

from .. import yamlload
from ..errors import PlanError
from .indexexpr import Affine, parse_affine, parse_range
from .transforms import Transform, transform_from_dict


@dataclass(frozen=True)
class Hit:
    """A rule matched: the new name (alternatives, the first existing one wins), which rule fired,
    and the rule's transforms."""

    names: tuple[str, ...]  # empty: dropped
    rule: str  # path of the rule that fired: "rules[2]" or "rules[0].table[7]"
    transforms: tuple[Transform, ...] = ()
    why: str = ""  # for a drop: why, when the rule says more than "dropped"


@dataclass(frozen=True)
class Rule:
    """Base of every rule kind. `source` restricts a rule to one source label."""

    kind: ClassVar[str] = ""
    source: str | None = dataclasses.field(default=None, kw_only=True)
    transforms: tuple[Transform, ...] = dataclasses.field(default=(), kw_only=True)
    note: str = dataclasses.field(default="", kw_only=True)

    # -- behaviour ------------------------------------------------------------------------------
    def rewrite(self, name: str) -> tuple[str, ...] | None:
        """New name(s) for `name`, () to drop it, None when the rule does not match."""
        return None

    def match(self, name: str, label: str, path: str) -> Hit | None:
        if self.source is not None and self.source != label:
            return None
        names = self.rewrite(name)
        return None if names is None else Hit(names, path, self.transforms)

    def keeps(self, target: str) -> bool:
        """True when this rule says target tensor `target` keeps its own initialisation."""
        return False

    @property
    def invertible(self) -> bool:
        return False

    @property
    def selects(self) -> bool:
        """True for a layer selection: it drops the layers it does not select."""
        return False

    def inverted(self) -> Rule:
        raise PlanError(f"rule {self.describe()} cannot be inverted")

    # -- data -----------------------------------------------------------------------------------
    def body(self) -> Any:
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {self.kind: self.body()}
        if self.source is not None:
            out["source"] = self.source
        if self.transforms:
            out["transforms"] = [t.to_dict() for t in self.transforms]
        if self.note:
            out["note"] = self.note
        return out

    def describe(self) -> str:
        body = self.body()
        if isinstance(body, dict):
            text = " -> ".join(str(v) for v in body.values() if not isinstance(v, dict))
        elif isinstance(body, list):
            text = f"{len(body)} rules"
        else:
            text = str(body)
        return f"{self.kind} {text}"

    def _with_common(self, other: Rule) -> Rule:
        return dataclasses.replace(
            other, source=self.source, transforms=self.transforms, note=self.note
        )


@dataclass(frozen=True)
class Rename(Rule):
    """Exact rename of one tensor."""

    kind: ClassVar[str] = "rename"
    old: str
    new: str

    def rewrite(self, name: str) -> tuple[str, ...] | None:
        return (self.new,) if name == self.old else None

    @property
    def invertible(self) -> bool:
        return not self.transforms

    def inverted(self) -> Rule:
        return self._with_common(Rename(self.new, self.old))

    def body(self) -> Any:
        return {"from": self.old, "to": self.new}


@dataclass(frozen=True)
class StripPrefix(Rule):
    """Remove a leading prefix (`module.` of DataParallel/DDP, `model.` of Lightning)."""

    kind: ClassVar[str] = "strip_prefix"
    prefix: str

    def rewrite(self, name: str) -> tuple[str, ...] | None:
        return (name[len(self.prefix) :],) if name.startswith(self.prefix) else None

    @property
    def invertible(self) -> bool:
        return not self.transforms

    def inverted(self) -> Rule:
        return self._with_common(AddPrefix(self.prefix))

    def body(self) -> Any:
        return self.prefix


@dataclass(frozen=True)
class AddPrefix(Rule):
    """Prepend a prefix to every name."""

    kind: ClassVar[str] = "add_prefix"
    prefix: str

    def rewrite(self, name: str) -> tuple[str, ...] | None:
        return (self.prefix + name,)

    @property
    def invertible(self) -> bool:
        return not self.transforms

    def inverted(self) -> Rule:
        return self._with_common(StripPrefix(self.prefix))

    def body(self) -> Any:
        return self.prefix


@dataclass(frozen=True)
class OptionalPrefix(Rule):
    """A name under `prefix` may also land without it, the first name the target has winning:
    `hubert.encoder.x` -> (`hubert.encoder.x`, `encoder.x`), so one rule set serves an HF head
    model (`HubertForCTC`, names under `hubert.`) and the bare base model (`HubertModel`)."""

    kind: ClassVar[str] = "optional_prefix"
    prefix: str

    def rewrite(self, name: str) -> tuple[str, ...] | None:
        if not name.startswith(self.prefix) or name == self.prefix:
            return None
        return (name, name[len(self.prefix) :])

    def body(self) -> Any:
        return self.prefix


@dataclass(frozen=True)
class Suffix(Rule):
    """Replace a trailing dotted part (`weight_g` <-> `parametrizations.weight.original0`)."""

    kind: ClassVar[str] = "suffix"
    old: str
    new: str

    def rewrite(self, name: str) -> tuple[str, ...] | None:
        if name == self.old:
            return (self.new,)
        if name.endswith("." + self.old):
            return (name[: -len(self.old)] + self.new,)
        return None

    @property
    def invertible(self) -> bool:
        return not self.transforms

    def inverted(self) -> Rule:
        return self._with_common(Suffix(self.new, self.old))

    def body(self) -> Any:
        return {"from": self.old, "to": self.new}


_PLACEHOLDER = re.compile(r"\*|\{([^{}]*)\}")


@dataclass(frozen=True)
class _Shape:
    """A parsed template side: its regex, component placeholders in order, `*` count, and the
    index expression (`{2*n}`) when it has one."""

    regex: re.Pattern[str]
    names: list[str]
    stars: int
    index: Affine | None


_IDENTIFIER = re.compile(r"[A-Za-z_]\w*")  # a `{name}` placeholder; `{2n}` is an expression


def _index_vars(*templates: str) -> set[str]:
    """Variables used in index expressions (`{2*n}` makes `n` one) on either side."""
    out = set()
    for template in templates:
        for m in _PLACEHOLDER.finditer(template):
            if m.group(0) != "*" and not _IDENTIFIER.fullmatch(m.group(1)):
                out.add(parse_affine(m.group(1)).var)
    return out


def _template_regex(template: str, index_vars: frozenset[str] = frozenset()) -> _Shape:
    """Regex for a dotted-prefix template: `*` is a layer index (digits), `{x}` one component,
    `{2*n+1}` (or `{n}` with n in `index_vars`) a layer index given by an expression."""
    parts, names, stars, pos = [], [], 0, 0
    index: Affine | None = None
    for m in _PLACEHOLDER.finditer(template):
        parts.append(re.escape(template[pos : m.start()]))
        body = m.group(1)
        if m.group(0) == "*":
            parts.append(rf"(?P<_star{stars}>\d+)")
            stars += 1
        elif _IDENTIFIER.fullmatch(body) and body not in index_vars:
            if body in names:
                raise PlanError(f"placeholder {{{body}}} appears twice in {template!r}")
            names.append(body)
            parts.append(rf"(?P<{body}>[^.]+)")
        else:
            if index is not None:
                raise PlanError(f"{template!r} has two index expressions; one is allowed")
            index = parse_affine(body)
            parts.append(r"(?P<_index>\d+)")
        pos = m.end()
    parts.append(re.escape(template[pos:]))
    return _Shape(re.compile("".join(parts) + r"(?=\.|$)"), names, stars, index)


@dataclass(frozen=True)
class Template(Rule):
    """`encoder.layers.*.ffn1.w_1` -> `encoder.layers.*.ffn1.intermediate_dense`.

    Matches a whole name or a dotted prefix of it (the rest, e.g. `.weight`, is carried over).
    `*` matches a layer index (digits) and is filled in order; `{name}` matches one component.

    Layer selection: `{2*n}` -> `{n}` (affine `a*n+b`, one variable, optionally limited to
    `span`, inclusive) renames the layers it selects; a name of the `from` shape whose index
    it does not select (odd layers, layers outside `span`) is dropped, with that reason.
    """

    kind: ClassVar[str] = "template"
    old: str
    new: str
    span: tuple[int, int] | None = None  # the index variable's range, inclusive
    var: str | None = None  # the variable `span` is declared for (the body's key)

    def __post_init__(self) -> None:
        vars_ = _index_vars(self.old, self.new) | ({self.var} if self.var else set())
        if len(vars_) > 1:
            raise PlanError(f"index expressions use variables {sorted(vars_)}; one is allowed")
        old, new = self._shapes
        if not set(new.names) <= set(old.names):
            missing = sorted(set(new.names) - set(old.names))
            raise PlanError(f"'to' uses placeholders {missing} that 'from' does not define")
        if new.stars > old.stars:
            raise PlanError(f"'to' has {new.stars} '*' but 'from' has {old.stars}")
        if vars_:
            (var,) = vars_
            if old.index is None:
                raise PlanError(f"'from' has no index expression in {var}: write {{{var}}}")
            if new.index is None:
                raise PlanError(
                    f"'to' does not use {var}: every selected layer would get the same name"
                )
        if self.span is not None and (old.index is None or self.span[0] > self.span[1]):
            raise PlanError(f"range {self.span} needs lo <= hi and an index expression in 'from'")

    @cached_property
    def _shapes(self) -> tuple[_Shape, _Shape]:
        vars_ = frozenset(_index_vars(self.old, self.new) | ({self.var} if self.var else set()))
        return _template_regex(self.old, vars_), _template_regex(self.new, vars_)

    @property
    def selects(self) -> bool:
        """True for a layer selection (an index expression): it drops what it does not select."""
        return self._shapes[0].index is not None

    def _pick(self, index: int) -> int | None:
        """The `to` index for source index `index`, None when it is not selected."""
        old, new = self._shapes
        assert old.index is not None
        assert new.index is not None
        n = old.index.solve(index)
        if n is None or (self.span and not self.span[0] <= n <= self.span[1]):
            return None
        out = new.index.at(n)
        return out if out >= 0 else None

    def match(self, name: str, label: str, path: str) -> Hit | None:
        hit = super().match(name, label, path)
        if hit is None or hit.names:
            return hit
        return dataclasses.replace(hit, why=f"a layer not selected by {self.selection_text()}")

    def rewrite(self, name: str) -> tuple[str, ...] | None:
        old, new = self._shapes
        m = old.regex.match(name)
        if m is None:
            return None
        groups = m.groupdict()
        index = None
        if old.index is not None:
            index = self._pick(int(groups["_index"]))
            if index is None:
                return ()
        stars = iter(groups[f"_star{i}"] for i in range(new.stars))

        def fill(p: re.Match[str]) -> str:
            if p.group(0) == "*":
                return next(stars)
            return groups[p.group(1)] if p.group(1) in groups else str(index)

        return (_PLACEHOLDER.sub(fill, self.new) + name[m.end() :],)

    def selection_text(self) -> str:
        """`encoder.layers.{2*n} -> encoder.layers.{n}, n in 0..5`."""
        old, _ = self._shapes
        text = f"{self.old} -> {self.new}"
        if old.index is not None and self.span is not None:
            text += f", {old.index.var} in {self.span[0]}..{self.span[1]}"
        return text

    @property
    def invertible(self) -> bool:
        old, new = self._shapes
        return (
            not self.transforms
            and not self.selects
            and set(old.names) == set(new.names)
            and old.stars == new.stars
        )

    def inverted(self) -> Rule:
        if self.selects:
            raise PlanError(
                f"rule template {self.selection_text()} selects layers: its inverse would leave "
                "the layers it does not select at their init"
            )
        if not self.invertible:
            raise PlanError(f"rule {self.describe()} drops a placeholder: not invertible")
        return self._with_common(Template(self.new, self.old))

    def describe(self) -> str:
        return f"template {self.selection_text()}"

    def body(self) -> Any:
        out: dict[str, Any] = {"from": self.old, "to": self.new}
        if self.span is not None:
            old, _ = self._shapes
            assert old.index is not None
            out[old.index.var] = f"{self.span[0]}..{self.span[1]}"
        return out


@dataclass(frozen=True)
class Regex(Rule):
    """Full-match `pattern`, replace with `to` (`\\1`, `\\g<name>` group references)."""

    kind: ClassVar[str] = "regex"
    pattern: str
    to: str

    def __post_init__(self) -> None:
        try:
            compiled = re.compile(self.pattern)
        except re.error as e:
            raise PlanError(f"bad regular expression {self.pattern!r}: {e}") from None
        for ref in re.findall(r"\\(\d+)|\\g<(\w+)>", self.to):
            num, named = ref
            if num and int(num) > compiled.groups:
                raise PlanError(f"'to' refers to group {num}, the pattern has {compiled.groups}")
            if named and not named.isdigit() and named not in compiled.groupindex:
                raise PlanError(f"'to' refers to group {named!r} the pattern does not define")

    @cached_property
    def _compiled(self) -> re.Pattern[str]:
        return re.compile(self.pattern)

    def rewrite(self, name: str) -> tuple[str, ...] | None:
        m = self._compiled.fullmatch(name)
        return None if m is None else (m.expand(self.to),)

    def body(self) -> Any:
        return {"pattern": self.pattern, "to": self.to}


@dataclass(frozen=True)
class Substring(Rule):
    """HF-conversion-script style: `key` found in the name (at dotted boundaries) maps to `to`.

    A `*` in `to` takes the component just before `key` (the layer index). The part after `key`
    (the weight type: `weight`, `bias`, `running_mean`...) is appended; when `suffixes` is given
    the part must be one of its keys, and maps to the listed alternatives (the first one present
    in the target wins: `weight_g` -> [`weight_g`, `parametrizations.weight.original0`]).
    """

    kind: ClassVar[str] = "substring"
    key: str
    to: str
    suffixes: tuple[tuple[str, tuple[str, ...]], ...] | None = None

    def rewrite(self, name: str) -> tuple[str, ...] | None:
        at = ("." + name + ".").find("." + self.key + ".")  # = the key's start in `name`
        if at < 0:
            return None
        before = name[: at - 1] if at else ""
        rest = name[at + len(self.key) + 1 :]
        to = self.to
        if "*" in to:
            index = before.rsplit(".", 1)[-1] if before else ""
            if not index.isdigit():
                return None
            to = to.replace("*", index)
        if self.suffixes is None:
            return (f"{to}.{rest}" if rest else to,)
        table = dict(self.suffixes)
        if rest not in table:
            return None
        return tuple(f"{to}.{alt}" if alt else to for alt in table[rest])

    def body(self) -> Any:
        out: dict[str, Any] = {"key": self.key, "to": self.to}
        if self.suffixes is not None:
            out["suffixes"] = {k: list(v) for k, v in self.suffixes}
        return out


@dataclass(frozen=True)
class Table(Rule):
    """An ordered group with first-match semantics (one HF MAPPING dict)."""

    kind: ClassVar[str] = "table"
    rules: tuple[Rule, ...]

    def match(self, name: str, label: str, path: str) -> Hit | None:
        if self.source is not None and self.source != label:
            return None
        for i, rule in enumerate(self.rules):
            hit = rule.match(name, label, f"{path}.table[{i}]")
            if hit is not None:
                return Hit(hit.names, hit.rule, self.transforms + hit.transforms, hit.why)
        return None

    def keeps(self, target: str) -> bool:
        return any(r.keeps(target) for r in self.rules)

    @property
    def selects(self) -> bool:
        return any(r.selects for r in self.rules)

    @property
    def invertible(self) -> bool:
        return not self.transforms and all(r.invertible for r in self.rules)

    def inverted(self) -> Rule:
        return self._with_common(Table(tuple(r.inverted() for r in self.rules)))

    def body(self) -> Any:
        return [r.to_dict() for r in self.rules]


@dataclass(frozen=True)
class Drop(Rule):
    """Source tensors matching the glob are not used (listed as dropped, not as unused).

    With `above`, the pattern is a template with one `*` (a layer index; the whole name or a
    dotted prefix of it) and only layers whose index is above `above` are dropped: a teacher
    kept up to its middle layer."""

    kind: ClassVar[str] = "drop"
    pattern: str
    above: int | None = None

    def __post_init__(self) -> None:
        if self.above is not None:
            shape = _template_regex(self.pattern)
            if shape.stars != 1 or shape.names or shape.index is not None:
                raise PlanError(
                    f"with 'above', the pattern needs exactly one '*' (the layer index) and no "
                    f"other placeholder, got {self.pattern!r}"
                )

    @cached_property
    def _compiled(self) -> re.Pattern[str]:
        return _template_regex(self.pattern).regex

    def _index(self, name: str) -> int | None:
        m = self._compiled.match(name)
        return None if m is None else int(m.group("_star0"))

    def rewrite(self, name: str) -> tuple[str, ...] | None:
        if self.above is None:
            return () if fnmatch.fnmatchcase(name, self.pattern) else None
        index = self._index(name)
        return () if index is not None and index > self.above else None

    def match(self, name: str, label: str, path: str) -> Hit | None:
        hit = super().match(name, label, path)
        if hit is None or self.above is None:
            return hit
        return dataclasses.replace(hit, why=f"a layer above {self.above} in {self.pattern}")

    @property
    def selects(self) -> bool:
        return self.above is not None

    def describe(self) -> str:
        above = "" if self.above is None else f" above {self.above}"
        return f"drop {self.pattern}{above}"

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        if self.above is not None:
            out = {"drop": out.pop("drop"), "above": self.above, **out}
        return out

    def body(self) -> Any:
        return self.pattern


@dataclass(frozen=True)
class Keep(Rule):
    """Target tensors matching the glob keep their own initialisation."""

    kind: ClassVar[str] = "keep"
    pattern: str

    def keeps(self, target: str) -> bool:
        return fnmatch.fnmatchcase(target, self.pattern)

    def body(self) -> Any:
        return self.pattern


RULE_KINDS: dict[str, type[Rule]] = {
    cls.kind: cls
    for cls in (
        Rename,
        StripPrefix,
        AddPrefix,
        OptionalPrefix,
        Suffix,
        Template,
        Regex,
        Substring,
        Table,
        Drop,
        Keep,
    )
}
_COMMON_KEYS = ("source", "transforms", "note")
_KIND_KEYS = {"drop": ("above",)}  # keys beside the kind key that only that kind takes


def name_matcher(pattern: str, *, regex: bool = False) -> Callable[[str], bool]:
    """Whether a tensor name matches `pattern` the way rules match names, for selecting rows
    (`ckpt plan approve`): as a keep/drop glob (`fnmatch`: `*` any text, `?`, `[...]`) or as a
    template's `from` (the whole name or a dotted prefix of it: `*` a layer index, `{x}` one
    component, `{2*n}` the layers it selects), so `encoder` selects the subtree. With `regex`, a
    full match as a regex rule's `pattern`. A bad pattern raises PlanError."""
    if regex:
        rx = Regex(pattern, "")
        return lambda name: rx.rewrite(name) is not None
    glob = Keep(_nonempty(pattern, "pattern"))
    try:  # `{2*n}` selects the layers it maps; a pattern no template reads is a glob only
        template: Template | None = Template(pattern, pattern)
    except PlanError:
        template = None
    return lambda name: glob.keeps(name) or bool(template and template.rewrite(name))


# -- building rules from data ----------------------------------------------------------------------
def rule_from_dict(data: Any, where: str = "rule") -> Rule:
    """A rule from its YAML/Python mapping. PlanError messages start with `where`."""
    if isinstance(data, Rule):
        return data
    if not isinstance(data, dict):
        raise PlanError(
            f"{where}: a rule is a mapping like {{rename: {{from: a, to: b}}}}, got {data!r}"
        )
    kinds = [k for k in data if k in RULE_KINDS]
    extra = tuple(k for kind in kinds for k in _KIND_KEYS.get(kind, ()))
    unknown = [k for k in data if k not in RULE_KINDS and k not in _COMMON_KEYS + extra]
    if unknown:
        raise PlanError(
            f"{where}: unknown key {unknown[0]!r} (rule kinds: {', '.join(RULE_KINDS)})"
        )
    if len(kinds) != 1:
        raise PlanError(f"{where}: needs exactly one rule kind, found {kinds or 'none'}")
    kind = kinds[0]
    common = _common_fields(data, where)
    if "above" in data:
        common["above"] = _count(data["above"], f"{where}.above")
    try:
        return _BUILDERS[kind](data[kind], f"{where}.{kind}", common)
    except PlanError as e:
        msg = str(e)
        raise PlanError(msg if msg.startswith(where) else f"{where}.{kind}: {msg}") from None


def _common_fields(data: dict[str, Any], where: str) -> dict[str, Any]:
    common: dict[str, Any] = {}
    if "source" in data:
        common["source"] = _str(data["source"], f"{where}.source")
    if "note" in data:
        common["note"] = _str(data["note"], f"{where}.note")
    if "transforms" in data:
        items = data["transforms"]
        if not isinstance(items, list):
            raise PlanError(f"{where}.transforms: expected a list, got {items!r}")
        common["transforms"] = tuple(
            transform_from_dict(t, f"{where}.transforms[{i}]") for i, t in enumerate(items)
        )
    return common


def _str(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise PlanError(f"{where}: expected a string, got {value!r}")
    return value


def _count(value: Any, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise PlanError(f"{where}: expected a layer index (an integer >= 0), got {value!r}")
    return value


def _nonempty(value: Any, where: str) -> str:
    text = _str(value, where)
    if not text:
        raise PlanError(f"{where}: must not be empty")
    return text


def _pair(body: Any, where: str, keys: tuple[str, str] = ("from", "to")) -> tuple[str, str]:
    if not isinstance(body, dict) or set(body) != set(keys):
        raise PlanError(f"{where}: expected a mapping with keys {list(keys)}, got {body!r}")
    return _nonempty(body[keys[0]], f"{where}.{keys[0]}"), _str(body[keys[1]], f"{where}.{keys[1]}")


def _suffixes(value: Any, where: str) -> tuple[tuple[str, tuple[str, ...]], ...] | None:
    if value is None:
        return None
    if isinstance(value, list):
        for i, v in enumerate(value):
            if not isinstance(v, str):
                raise PlanError(f"{where}[{i}]: expected a suffix string, got {v!r}")
        value = {v: [v] for v in value}
    if not isinstance(value, dict):
        raise PlanError(f"{where}: expected a list of suffixes or a mapping suffix -> alternatives")
    out = []
    for k, alts in value.items():
        alts = [alts] if isinstance(alts, str) else alts
        if not isinstance(alts, list) or not alts or not all(isinstance(a, str) for a in alts):
            raise PlanError(f"{where}.{k}: expected a list of target suffixes, got {alts!r}")
        out.append((str(k) if k is not None else "", tuple(alts)))
    return tuple(out)


def _build_substring(body: Any, where: str, common: dict[str, Any]) -> Rule:
    if (
        not isinstance(body, dict)
        or not {"key", "to"} <= set(body)
        or set(body) - {"key", "to", "suffixes"}
    ):
        raise PlanError(f"{where}: expected keys key, to and optionally suffixes, got {body!r}")
    return Substring(
        _nonempty(body["key"], f"{where}.key"),
        _nonempty(body["to"], f"{where}.to"),
        _suffixes(body.get("suffixes"), f"{where}.suffixes"),
        **common,
    )


def _build_template(body: Any, where: str, common: dict[str, Any]) -> Rule:
    """`{from, to}`, and for a layer selection optionally `VAR: lo..hi` (the index variable's
    range, inclusive: `{from: "layers.{2*n}", to: "layers.{n}", n: 0..5}`)."""
    extra = [k for k in body if k not in ("from", "to")] if isinstance(body, dict) else []
    if len(extra) > 1:
        raise PlanError(f"{where}: expected keys from, to and at most one range, got {extra}")
    if not extra:
        return Template(*_pair(body, where), **common)
    (var,) = extra
    if not isinstance(var, str) or not re.fullmatch(r"[A-Za-z_]\w*", var):
        raise PlanError(f"{where}: unknown key {var!r} (a range is written n: 0..5)")
    pair = _pair({k: body[k] for k in body if k != var}, where)
    span = parse_range(body[var], f"{where}.{var}")
    try:
        return Template(*pair, span=span, var=var, **common)
    except PlanError as e:
        raise PlanError(f"{where}: {e}") from None


def _build_table(body: Any, where: str, common: dict[str, Any]) -> Rule:
    if not isinstance(body, list) or not body:
        raise PlanError(f"{where}: expected a non-empty list of rules")
    return Table(tuple(rule_from_dict(r, f"{where}[{i}]") for i, r in enumerate(body)), **common)


_BUILDERS = {
    "rename": lambda b, w, c: Rename(*_pair(b, w), **c),
    "strip_prefix": lambda b, w, c: StripPrefix(_nonempty(b, w), **c),
    "add_prefix": lambda b, w, c: AddPrefix(_nonempty(b, w), **c),
    "optional_prefix": lambda b, w, c: OptionalPrefix(_nonempty(b, w), **c),
    "suffix": lambda b, w, c: Suffix(*_pair(b, w), **c),
    "template": lambda b, w, c: _build_template(b, w, c),
    "regex": lambda b, w, c: Regex(*_pair(b, w, ("pattern", "to")), **c),
    "substring": _build_substring,
    "table": _build_table,
    "drop": lambda b, w, c: Drop(_nonempty(b, w), **c),
    "keep": lambda b, w, c: Keep(_nonempty(b, w), **c),
}


def rules_from_list(items: Any, where: str = "rules") -> list[Rule]:
    """Validate a list of rule mappings (or Rule objects)."""
    if items is None:
        return []
    if not isinstance(items, list):
        raise PlanError(f"{where}: expected a list of rules, got {type(items).__name__}")
    return [rule_from_dict(r, f"{where}[{i}]") for i, r in enumerate(items)]


def substring_table(
    mapping: dict[str, str], suffixes: list[str] | dict[str, Any] | None = None
) -> Rule:
    """A first-match table of substring rules from an HF-script style MAPPING dict."""
    sfx = _suffixes(suffixes, "suffixes")
    return Table(tuple(Substring(k, v, sfx) for k, v in mapping.items()))


# -- built-in rule sets and files ------------------------------------------------------------------
def builtin_rule_set_names() -> list[str]:
    """Built-in rule set names, sorted, without reading the files (for command-line help)."""
    data = resources.files(__package__).joinpath("data")
    return sorted(item.name[:-5] for item in data.iterdir() if item.name.endswith(".yaml"))


def builtin_rule_sets() -> dict[str, str]:
    """Built-in rule set names -> one-line descriptions."""
    out = {}
    for name in builtin_rule_set_names():
        text = resources.files(__package__).joinpath("data", f"{name}.yaml").read_text("utf-8")
        data = yamlload.load(text)
        out[name] = str(data.get("description", "")).strip().splitlines()[0]
    return out


INLINE = "--rules (inline)"  # how errors name rules given as YAML text


def is_inline(spec: Any) -> bool:
    """True for rules given as YAML text rather than a name or a path: a str that starts with
    `{` or `[` (a flow mapping or list) or spans several lines."""
    return isinstance(spec, str) and (spec.lstrip().startswith(("{", "[")) or "\n" in spec)


def load_rules(spec: str | Path | list[Any]) -> list[Rule]:
    """Rules from a built-in set name (`builtin_rule_sets()`: "ddp", "lightning", "nemo",
    "nemo-encoder", ...), a YAML file path, YAML text (`is_inline`: `{rules: [...]}`, `[...]`
    or several lines; errors name it "--rules (inline)"), or a list of rule mappings."""
    if isinstance(spec, list):
        return rules_from_list(spec)
    where = str(spec)
    path = Path(spec)
    if is_inline(spec):
        where, text = INLINE, str(spec)
    elif path.suffix not in (".yaml", ".yml") and not path.exists():
        item = resources.files(__package__).joinpath("data", f"{spec}.yaml")
        if not item.is_file():
            known = ", ".join(builtin_rule_sets())
            raise PlanError(f"{spec}: no such rules file or built-in rule set (built-in: {known})")
        text = item.read_text(encoding="utf-8")
    else:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as e:
            raise PlanError(f"{where}: cannot read rules file: {e.strerror}") from None
        except UnicodeDecodeError as e:
            raise PlanError(f"{where}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    try:
        data = yamlload.load(text)
    except yaml.YAMLError as e:
        raise PlanError(f"{where}: not valid YAML: {e}") from None
    if isinstance(data, dict) and "rules" in data:
        data = data["rules"]
    return rules_from_list(data, f"{where}: rules")


# -- applying rules --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Resolution:
    """Where the rule pipeline sends one source name."""

    names: tuple[str, ...]  # candidate target names, best first; empty when dropped
    fired: tuple[str, ...]  # rule paths that changed the name, in order
    transforms: tuple[Transform, ...]
    dropped: bool = False
    why: str = ""  # for a drop: the rule's reason (a layer a selection does not select)


def apply_rules(rules: list[Rule] | tuple[Rule, ...], name: str, label: str = "") -> Resolution:
    """Run `name` (from source `label`) through the rule pipeline."""
    names: tuple[str, ...] = (name,)
    fired: list[str] = []
    transforms: list[Transform] = []
    for i, rule in enumerate(rules):
        new: list[str] = []
        for current in names:
            hit = rule.match(current, label, f"rules[{i}]")
            if hit is None:
                new.append(current)
                continue
            if not hit.names:
                return Resolution(
                    (), (*fired, hit.rule), tuple(transforms), dropped=True, why=hit.why
                )
            if hit.rule not in fired:
                fired.append(hit.rule)
                transforms.extend(hit.transforms)
            new.extend(hit.names)
        names = tuple(dict.fromkeys(new))
    return Resolution(names, tuple(fired), tuple(transforms))


def kept_by(rules: list[Rule] | tuple[Rule, ...], target: str) -> str | None:
    """Path of the first rule saying `target` keeps its own init, or None."""
    for i, rule in enumerate(rules):
        if rule.keeps(target):
            return f"rules[{i}]"
    return None


def selection_paths(rules: list[Rule] | tuple[Rule, ...], path: str = "rules") -> list[str]:
    """Paths (`rules[0]`, `rules[1].table[2]`) of the layer selections in `rules`: templates with
    an index expression and drops with `above`."""
    out = []
    for i, rule in enumerate(rules):
        here = f"{path}[{i}]"
        if isinstance(rule, Table):
            out.extend(selection_paths(rule.rules, f"{here}.table"))
        elif rule.selects:
            out.append(here)
    return out


def invert_rules(rules: list[Rule] | tuple[Rule, ...]) -> list[Rule]:
    """The pipeline that undoes `rules` (reversed, each inverted). PlanError if one cannot be."""
    out = []
    for i, rule in enumerate(reversed(rules)):
        if not rule.invertible:
            raise PlanError(f"rules[{len(rules) - 1 - i}]: {rule.describe()} cannot be inverted")
        out.append(rule.inverted())
    return out
