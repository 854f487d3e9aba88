"""The package's import graph and its layer rules (docs/development.md, "Who may import whom").

Every module's imports are read with `ast`, never by importing it. An edge is one import of a
package module by another, of one of three kinds: `module` (runs when the importer is imported),
`lazy` (inside a function: it runs later, but still couples the two modules) and `type` (under
`if TYPE_CHECKING:`, never runs). Importing `a.b.c` runs the packages `a.b` on the way, so those
are edges too, except the importer's own packages (already being imported) and the package root
(which Python runs before any module of the package).

Cycles count `module` edges (an import that can fail half-initialised) and, separately, `module`
and `lazy` edges together. The layer rules count every kind; a `lazy` import the rules list as an
allowed exception is the only way up.

`python tests/import_layers.py` prints the cycles and the rule violations of the package.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

KINDS = ("module", "lazy", "type")


@dataclass(frozen=True)
class Edge:
    importer: str
    imported: str
    kind: str  # module | lazy | type
    line: int

    def __str__(self) -> str:
        return f"{self.importer} -> {self.imported} ({self.kind}, line {self.line})"


# -- the graph -------------------------------------------------------------------------------------
def find_modules(folder: Path, package: str) -> dict[str, Path | None]:
    """Dotted name -> source file for every module of the package in `folder` (compiled
    extensions, known by their stub or shared library, have no source: None)."""
    out: dict[str, Path | None] = {}
    for path in sorted(folder.rglob("*.py")):
        parts = [package, *path.relative_to(folder).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    for pattern in ("*.so", "*.pyd", "*.pyi"):
        for path in folder.rglob(pattern):
            parts = [package, *path.relative_to(folder).parent.parts, path.name.split(".")[0]]
            out.setdefault(".".join(parts), None)
    return out


def _is_package(name: str, modules: dict[str, Path | None]) -> bool:
    path = modules.get(name)
    return path is not None and path.name == "__init__.py"


def _ancestors(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def _module_of(name: str, modules: dict[str, Path | None]) -> str | None:
    """The package module `name` is or lies in (an attribute's module), None if outside."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def _targets(
    node: ast.Import | ast.ImportFrom, importer: str, modules: dict[str, Path | None]
) -> set[str]:
    """The package modules one import statement names."""
    out: set[str] = set()
    if isinstance(node, ast.Import):
        for alias in node.names:
            found = _module_of(alias.name, modules)
            if found is not None:
                out.add(found)
        return out
    base = node.module or ""
    if node.level:
        pkg = importer if _is_package(importer, modules) else importer.rpartition(".")[0]
        for _ in range(node.level - 1):
            pkg = pkg.rpartition(".")[0]
        base = f"{pkg}.{base}" if base else pkg
    for alias in node.names:
        sub = f"{base}.{alias.name}"
        found = sub if sub in modules else _module_of(base, modules)
        if found is not None:
            out.add(found)
    return out


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk(node: ast.AST, kind: str) -> Iterator[tuple[ast.Import | ast.ImportFrom, str]]:
    for child in ast.iter_child_nodes(node):
        child_kind = kind
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            child_kind = "lazy" if kind == "module" else kind
        if isinstance(child, ast.If) and _is_type_checking(child):
            for sub in child.body:
                yield from _walk(ast.Module(body=[sub], type_ignores=[]), "type")
            for sub in child.orelse:
                yield from _walk(ast.Module(body=[sub], type_ignores=[]), kind)
            continue
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            yield child, child_kind
        yield from _walk(child, child_kind)


def module_edges(
    name: str, source: str, modules: dict[str, Path | None], root: str, filename: str = "<source>"
) -> list[Edge]:
    """The edges out of module `name`, whose text is `source` (read from `filename`)."""
    own = {name, *_ancestors(name)}
    out: dict[tuple[str, str], Edge] = {}
    for node, kind in _walk(ast.parse(source, filename), "module"):
        for target in _targets(node, name, modules):
            implied = [a for a in _ancestors(target) if a != root and a not in own]
            for imported in (target, *implied):
                if imported == name:
                    continue
                key = (imported, kind)
                if key not in out:
                    out[key] = Edge(name, imported, kind, node.lineno)
    return list(out.values())


def package_edges(folder: Path, package: str) -> tuple[dict[str, Path | None], list[Edge]]:
    """Every module of the package in `folder` and every import edge between them."""
    modules = find_modules(folder, package)
    edges = [
        edge
        for name, path in modules.items()
        if path is not None
        for edge in module_edges(
            name, path.read_text(encoding="utf-8"), modules, package, str(path)
        )
    ]
    return modules, edges


def cycles(edges: Iterable[Edge], kinds: Iterable[str]) -> list[list[str]]:
    """One cycle (a path that returns to its start) per strongly connected set of modules,
    following edges of the given kinds."""
    graph: dict[str, set[str]] = {}
    wanted = set(kinds)
    for e in edges:
        if e.kind in wanted:
            graph.setdefault(e.importer, set()).add(e.imported)
            graph.setdefault(e.imported, set())
    return [_one_cycle(group, graph) for group in _strong_components(graph) if len(group) > 1]


def _strong_components(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative (a deep package must not hit the recursion limit)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                out.append(sorted(group))
    return out


def _one_cycle(group: list[str], graph: dict[str, set[str]]) -> list[str]:
    """A shortest path from the group's first module back to itself, inside the group."""
    members, start = set(group), group[0]
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for child in sorted(graph[node] & members):
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [start, *reversed(path[:-1]), start]
                if child not in previous:
                    previous[child] = node
                    following.append(child)
        frontier = following
    raise AssertionError(f"no cycle in strongly connected {group}")  # pragma: no cover


# -- the rules -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Layer:
    name: str
    modules: tuple[str, ...]  # a package covers its modules; the root covers only itself
    may_import: frozenset[str]  # names of other layers


@dataclass
class Rules:
    root: str
    layers: list[Layer]
    allowed: set[tuple[str, str]] = field(default_factory=set)  # lazy (importer, imported)

    def layer_of(self, module: str) -> Layer | None:
        """The layer whose most specific entry covers `module`."""
        best: tuple[int, Layer] | None = None
        for layer in self.layers:
            for entry in layer.modules:
                covers = module == entry or (entry != self.root and module.startswith(entry + "."))
                if covers and (best is None or len(entry) > best[0]):
                    best = (len(entry), layer)
        return None if best is None else best[1]

    def is_allowed(self, edge: Edge) -> bool:
        """A listed lazy import, or one of the packages it runs on the way."""
        return edge.kind == "lazy" and any(
            _covers(a, edge.importer, self.root)
            and (_covers(b, edge.imported, self.root) or b.startswith(edge.imported + "."))
            for a, b in self.allowed
        )


def _covers(entry: str, module: str, root: str) -> bool:
    return module == entry or (entry != root and module.startswith(entry + "."))


_SECTION = "### Who may import whom"
_ROOT_WORD = "__init__"
_EXCEPTION = re.compile(r"^- `([\w.]+)` -> `([\w.]+)`")


def parse_rules(markdown: str, root: str) -> Rules:
    """The layer table and the allowed exceptions of the section `### Who may import whom`:
    rows `| layer | modules | may import | ... |` (modules in backticks, without the root's
    name; `__init__` is the root itself), then `- `importer` -> `imported`` lines."""
    if _SECTION not in markdown:
        raise ValueError(f"no section {_SECTION!r}")
    text = markdown.split(_SECTION, 1)[1].split("\n#", 1)[0]
    rows = [line for line in text.splitlines() if line.startswith("|")][2:]
    layers = []
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        names = re.findall(r"`([\w.]+)`", cells[1])
        modules = tuple(root if n == _ROOT_WORD else f"{root}.{n}" for n in names)
        may = frozenset(w for w in (p.strip() for p in cells[2].split(",")) if w and w != "-")
        layers.append(Layer(cells[0], modules, may))
    allowed = {
        (f"{root}.{m.group(1)}", f"{root}.{m.group(2)}")
        for m in map(_EXCEPTION.match, text.splitlines())
        if m
    }
    rules = Rules(root, layers, allowed)
    _check_rules(rules)
    return rules


def _check_rules(rules: Rules) -> None:
    names = [layer.name for layer in rules.layers]
    if len(set(names)) != len(names):
        raise ValueError(f"layer names repeat: {names}")
    seen: dict[str, str] = {}
    for layer in rules.layers:
        unknown = layer.may_import - set(names)
        if unknown:
            raise ValueError(f"layer {layer.name}: may import unknown layers {sorted(unknown)}")
        for entry in layer.modules:
            if entry in seen:
                raise ValueError(f"{entry} is in layers {seen[entry]} and {layer.name}")
            seen[entry] = layer.name


def violations(modules: Iterable[str], edges: Iterable[Edge], rules: Rules) -> list[str]:
    """Every module the rules place nowhere, and every import the rules do not allow."""
    out = [f"{m}: in no layer" for m in sorted(modules) if rules.layer_of(m) is None]
    for e in edges:
        src, dst = rules.layer_of(e.importer), rules.layer_of(e.imported)
        if src is None or dst is None or src is dst or dst.name in src.may_import:
            continue
        if not rules.is_allowed(e):
            out.append(f"{e}: layer {src.name} may not import layer {dst.name}")
    return out


def report(folder: Path, package: str, rules: Rules) -> list[str]:
    modules, edges = package_edges(folder, package)
    lines = [f"cycle of module-level imports: {' -> '.join(c)}" for c in cycles(edges, ["module"])]
    lines += [
        f"cycle of imports (function-level included): {' -> '.join(c)}"
        for c in cycles(edges, ["module", "lazy"])
    ]
    return lines + violations(modules, edges, rules)


if __name__ == "__main__":
    repo = Path(__file__).resolve().parents[1]
    text = (repo / "docs" / "development.md").read_text(encoding="utf-8")
    found = report(repo / "inspector", "inspector", parse_rules(text, "inspector"))
    print("\n".join(found) or "no cycles, no violations")
    raise SystemExit(1 if found else 0)
