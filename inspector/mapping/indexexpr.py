"""Index arithmetic for templates: `{2*n}`, `{n+1}`, `{3*n-2}`, affine in one variable.

Parsed by a small tokenizer and a two-level grammar (sums of products of integers and at most one
variable), never by `eval`. Only `a*n+b` with `a >= 1` is accepted: one index maps to one index.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import PlanError

MAX_INT = 1_000_000  # an integer literal above this is a typo, not a layer index
_TOKEN = re.compile(r"\s*(?:(?P<int>\d+)|(?P<var>[A-Za-z_]\w*)|(?P<op>[*+-]))")
_RANGE = re.compile(r"^\s*(\d+)\s*\.\.\s*(\d+)\s*$")


@dataclass(frozen=True)
class Affine:
    """`a*var + b`; `a >= 1`."""

    var: str
    a: int = 1
    b: int = 0

    def at(self, n: int) -> int:
        return self.a * n + self.b

    def solve(self, index: int) -> int | None:
        """The n with `at(n) == index`, or None when there is none."""
        q, r = divmod(index - self.b, self.a)
        return q if r == 0 else None

    def text(self) -> str:
        """Canonical text: `n`, `2*n`, `2*n+1`, `n-3`."""
        head = self.var if self.a == 1 else f"{self.a}*{self.var}"
        return head if self.b == 0 else f"{head}{self.b:+d}"


def _tokens(text: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise PlanError(f"{{{text}}}: unexpected {text[pos:].strip()[:1]!r} at {pos}")
        kind = m.lastgroup
        assert kind is not None
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


def parse_affine(text: str) -> Affine:
    """`2*n+1` -> Affine('n', 2, 1). PlanError naming the text when it is not `a*n+b`, a >= 1."""
    toks = _tokens(text)
    if not toks:
        raise PlanError("{}: empty index expression")
    coef: dict[str, int] = {}
    const, sign, i = 0, 1, 0
    if toks[0] == ("op", "-"):
        sign, i = -1, 1
    while True:
        factor, var, i = _product(toks, i, text)
        if var is None:
            const += sign * factor
        else:
            coef[var] = coef.get(var, 0) + sign * factor
        if i == len(toks):
            break
        if toks[i][0] != "op" or toks[i][1] == "*":
            raise PlanError(f"{{{text}}}: expected + or - before {toks[i][1]!r}")
        sign, i = (1 if toks[i][1] == "+" else -1), i + 1
    if len(coef) != 1:
        found = "no variable" if not coef else f"variables {sorted(coef)}"
        raise PlanError(f"{{{text}}}: an index expression is a*n+b in one variable, found {found}")
    ((var, a),) = coef.items()
    if a < 1:
        raise PlanError(f"{{{text}}}: the factor of {var} must be at least 1, got {a}")
    return Affine(var, a, const)


def _product(toks: list[tuple[str, str]], i: int, text: str) -> tuple[int, str | None, int]:
    """Integers and at most one variable joined by `*`, from toks[i]: (factor, var, next i)."""
    factor, var = 1, None
    while True:
        if i >= len(toks) or toks[i][0] == "op":
            raise PlanError(f"{{{text}}}: expected a number or a variable")
        kind, value = toks[i]
        if kind == "int":
            if len(value) > len(str(MAX_INT)) or int(value) > MAX_INT:
                raise PlanError(f"{{{text}}}: {value} is too large (at most {MAX_INT})")
            factor *= int(value)
        elif var is not None:
            raise PlanError(f"{{{text}}}: {var}*{value} is not affine")
        else:
            var = value
        i += 1
        if i < len(toks) and toks[i] == ("op", "*"):
            i += 1
            continue
        return factor, var, i


def parse_range(value: object, where: str) -> tuple[int, int]:
    """`0..5` (inclusive, as the folded names print) or one integer -> (lo, hi)."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value, value
    m = _RANGE.match(value) if isinstance(value, str) else None
    if m is None:
        raise PlanError(f"{where}: expected a range like 0..5, got {value!r}")
    if max(len(m.group(1)), len(m.group(2))) > len(str(MAX_INT)):
        raise PlanError(f"{where}: {value!r} is too large (at most {MAX_INT})")
    lo, hi = int(m.group(1)), int(m.group(2))
    if lo > hi:
        raise PlanError(f"{where}: empty range {lo}..{hi}")
    return lo, hi


def is_variable(text: str) -> bool:
    """A bare identifier: `{name}` (a component placeholder unless the rule makes it an index)."""
    return re.fullmatch(r"[A-Za-z_]\w*", text) is not None
