"""The package's imports follow docs/development.md ("Who may import whom") and form no cycle.

The checker (tests/import_layers.py) reads imports with `ast`; its own tests below run it on small
synthetic packages, and on a copy of this package with one forbidden import added, to show that
it fails for the right reason.
"""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest
from import_layers import Edge, cycles, package_edges, parse_rules, report, violations

import inspector

PACKAGE = Path(inspector.__file__).resolve().parent
DEV_DOC = Path(__file__).resolve().parents[1] / "docs" / "development.md"


@pytest.fixture(scope="module")
def graph() -> tuple[dict[str, Path | None], list[Edge]]:
    return package_edges(PACKAGE, "inspector")


def rules():
    return parse_rules(DEV_DOC.read_text(encoding="utf-8"), "inspector")


def test_the_checker_sees_the_whole_package(graph) -> None:
    modules, edges = graph
    assert {"inspector", "inspector._core", "inspector.mapping.plan", "inspector.tui.app"} <= set(
        modules
    )
    found = {(e.importer, e.imported, e.kind) for e in edges}
    assert ("inspector.reader", "inspector.formats", "module") in found
    assert ("inspector.mapping.propose", "inspector.reader", "lazy") in found
    assert ("inspector.mapping.plan", "inspector.model", "type") in found


def test_no_import_cycle_of_module_level_imports(graph) -> None:
    assert cycles(graph[1], ["module"]) == []


def test_no_import_cycle_even_through_imports_inside_functions(graph) -> None:
    assert cycles(graph[1], ["module", "lazy"]) == []


def test_no_import_cycle_even_through_type_checking_imports(graph) -> None:
    assert cycles(graph[1], ["module", "lazy", "type"]) == []


def test_every_module_is_in_a_layer_and_imports_only_what_the_table_allows(graph) -> None:
    modules, edges = graph
    assert violations(modules, edges, rules()) == []


def test_the_table_is_read_as_written() -> None:
    r = rules()
    assert [layer.name for layer in r.layers][:4] == ["base", "io", "model", "readers"]
    assert r.layer_of("inspector").name == "api"
    assert r.layer_of("inspector.formats.unpickler").name == "readers"
    assert r.layer_of("inspector.mapping.plan").name == "stages"
    assert r.layer_of("inspector.tui.screens.help").name == "tui"
    assert "tui" not in r.layer_of("inspector.cli").may_import
    assert r.allowed == set()


def test_a_forbidden_import_added_to_this_package_fails_the_check(tmp_path: Path) -> None:
    """A reader that reaches up to `inspector.signature` (which imports the reader), inside a
    function, is exactly the kind of import the rules forbid."""
    copy = tmp_path / "inspector"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    assert report(copy, "inspector", rules()) == []
    reader = copy / "formats" / "safetensors.py"
    reader.write_text(
        reader.read_text(encoding="utf-8")
        + "\n\ndef _late():\n    from ..signature import signature\n\n    return signature\n",
        encoding="utf-8",
    )
    found = report(copy, "inspector", rules())
    assert len(found) == 1, found
    assert found[0].startswith("inspector.formats.safetensors -> inspector.signature (lazy,")
    assert found[0].endswith("layer readers may not import layer open")


# -- the checker on synthetic packages -------------------------------------------------------------
RULES = """
### Who may import whom

| Layer | Modules | May import |
|---|---|---|
| low | `low`, `util` | - |
| mid | `mid` | low |
| high | `high`, `mid.special` | low, mid |
| front | `front` | low, mid, high |
| other | `other` | low, mid, high |
| api | `__init__` | low, mid, high, front, other |

- `mid.lazy_ok` -> `high.gui`

## Next section
- `util` -> `other`
"""


def write(root: Path, files: dict[str, str]) -> Path:
    pkg = root / "pkg"
    for name, text in files.items():
        path = pkg / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
    return pkg


SYNTHETIC = {
    "__init__.py": "from .front import run\n\ndef later():\n    from . import other\n",
    "util.py": "",
    "low/__init__.py": "",
    "low/a.py": "from ..util import x\nfrom . import b\n",
    "low/b.py": "import os\n",
    "mid/__init__.py": "",
    "mid/m.py": "from ..low.a import y\n",
    "mid/special.py": "from pkg.high import gui\n",
    "mid/lazy_ok.py": "def f():\n    from ..high import gui\n",
    "high/__init__.py": "",
    "high/gui.py": "import typing\nif typing.TYPE_CHECKING:\n    from ..mid.m import T\n",
    "front/__init__.py": "from ..mid import m\n\nclass App:\n    import pkg.high.gui as g\n",
    "other.py": "",
}


def check(tmp_path: Path, extra: dict[str, str]) -> list[str]:
    pkg = write(tmp_path, {**SYNTHETIC, **extra})
    return report(pkg, "pkg", parse_rules(RULES, "pkg"))


def test_checker_reads_every_form_of_import(tmp_path: Path) -> None:
    pkg = write(tmp_path, SYNTHETIC)
    _, edges = package_edges(pkg, "pkg")
    found = {(e.importer, e.imported, e.kind) for e in edges}
    assert {
        ("pkg", "pkg.front", "module"),  # from .front import run (an attribute of a package)
        ("pkg", "pkg.other", "lazy"),  # from . import other, inside a function
        ("pkg.low.a", "pkg.util", "module"),  # two dots
        ("pkg.low.a", "pkg.low.b", "module"),  # from . import <module>
        ("pkg.mid.m", "pkg.low.a", "module"),
        ("pkg.mid.m", "pkg.low", "module"),  # importing pkg.low.a runs pkg.low first
        ("pkg.mid.special", "pkg.high.gui", "module"),  # absolute
        ("pkg.high.gui", "pkg.mid.m", "type"),  # under TYPE_CHECKING
        ("pkg.front", "pkg.high.gui", "module"),  # in a class body: runs at import
    } <= found
    # the importer's own packages and the root are not edges: they run before it anyway
    assert ("pkg.low.a", "pkg.low", "module") not in found
    assert not any(e.imported == "pkg" for e in edges)
    assert all(e.importer != e.imported for e in edges)


def test_checker_passes_the_synthetic_package(tmp_path: Path) -> None:
    assert check(tmp_path, {}) == []


def test_checker_fails_on_an_upward_import(tmp_path: Path) -> None:
    found = check(tmp_path, {"low/b.py": "from .. import other\n"})
    assert found == [
        "pkg.low.b -> pkg.other (module, line 1): layer low may not import layer other"
    ]


def test_checker_counts_an_import_inside_a_function(tmp_path: Path) -> None:
    found = check(tmp_path, {"low/b.py": "def f():\n    from pkg.high import gui\n"})
    assert found == [
        "pkg.low.b -> pkg.high.gui (lazy, line 2): layer low may not import layer high",
        "pkg.low.b -> pkg.high (lazy, line 2): layer low may not import layer high",
    ]


def test_checker_counts_a_type_checking_import(tmp_path: Path) -> None:
    text = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..front import App\n"
    found = check(tmp_path, {"low/b.py": text})
    assert found == ["pkg.low.b -> pkg.front (type, line 3): layer low may not import layer front"]


def test_checker_forbids_peers_and_excuses_only_listed_lazy_imports(tmp_path: Path) -> None:
    # `other` and `front` share a rank but may not import each other
    assert check(tmp_path, {"other.py": "from .front import App\n"}) == [
        "pkg.other -> pkg.front (module, line 1): layer other may not import layer front"
    ]
    # the listed exception excuses the lazy import, not the same import at module level
    assert check(tmp_path, {"mid/lazy_ok.py": "from ..high import gui\n"}) == [
        "pkg.mid.lazy_ok -> pkg.high.gui (module, line 1): layer mid may not import layer high",
        "pkg.mid.lazy_ok -> pkg.high (module, line 1): layer mid may not import layer high",
    ]
    # and only that pair: an exception line outside the section is not read
    assert check(tmp_path, {"util.py": "def f():\n    from . import other\n"}) == [
        "pkg.util -> pkg.other (lazy, line 2): layer low may not import layer other"
    ]


def test_checker_places_every_module(tmp_path: Path) -> None:
    # the most specific entry wins (mid.special is in high); the root covers only itself
    assert check(tmp_path, {"stray.py": ""}) == ["pkg.stray: in no layer"]


def test_checker_finds_cycles_by_kind(tmp_path: Path) -> None:
    b_imports_util = {"low/b.py": "from ..util import x\n"}
    found = check(tmp_path, {"util.py": "from .low import b\n", **b_imports_util})
    assert found == [
        "cycle of module-level imports: pkg.low.b -> pkg.util -> pkg.low.b",
        "cycle of imports (function-level included): pkg.low.b -> pkg.util -> pkg.low.b",
    ]
    lazy = check(tmp_path, {"util.py": "def f():\n    from .low import b\n", **b_imports_util})
    assert lazy == [
        "cycle of imports (function-level included): pkg.low.b -> pkg.util -> pkg.low.b"
    ]


def test_cycles_on_a_synthetic_graph() -> None:
    edges = [
        Edge("a", "b", "module", 1),
        Edge("b", "c", "module", 1),
        Edge("c", "a", "lazy", 1),
        Edge("c", "d", "module", 1),
        Edge("d", "e", "type", 1),
        Edge("e", "d", "module", 1),
    ]
    assert cycles(edges, ["module"]) == []
    assert cycles(edges, ["module", "lazy"]) == [["a", "b", "c", "a"]]
    assert cycles(edges, ["module", "lazy", "type"]) == [["d", "e", "d"], ["a", "b", "c", "a"]]


@pytest.mark.parametrize(
    ("table", "error"),
    [
        ("| x | `a` | - |\n| x | `b` | - |", "layer names repeat"),
        ("| x | `a` | y |", "may import unknown layers"),
        ("| x | `a` | - |\n| y | `a` | x |", "pkg.a is in layers x and y"),
    ],
)
def test_a_broken_table_is_refused(table: str, error: str) -> None:
    text = f"### Who may import whom\n\n| L | M | I |\n|---|---|---|\n{table}\n"
    with pytest.raises(ValueError, match=error):
        parse_rules(text, "pkg")
