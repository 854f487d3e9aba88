"""The compact plan form (mapping/plantemplates.py): rows that differ only in the indices of their
target's name are written once, as a template; every row still reads back as it was."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.numpy import save_file
from subproc import ckpt

from inspector import yamlload
from inspector.errors import PlanError
from inspector.mapping import planfile
from inspector.mapping.entries import Candidate, Entry, Evidence, SourceRef
from inspector.mapping.plan import Plan
from inspector.mapping.plantemplates import COMPACT_FROM, templated
from inspector.mapping.propose import propose
from inspector.mapping.transforms import transform_from_dict


def _moe(path: Path, layers: int, prefix: str = "", experts: int = 4) -> Path:
    """A small mixture-of-experts state dict: per layer a norm, `experts` experts of two
    weights, and a router; plus an embedding."""
    tensors = {f"{prefix}embed.weight": np.zeros((10, 4), np.float32)}
    for i in range(layers):
        tensors[f"{prefix}layers.{i}.norm.weight"] = np.ones(4, np.float32)
        tensors[f"{prefix}layers.{i}.router.weight"] = np.full((experts, 4), i, np.float32)
        for j in range(experts):
            for w in ("w1", "w2"):
                tensors[f"{prefix}layers.{i}.experts.{j}.{w}.weight"] = np.full((4, 4), i * 10 + j,
                                                                                np.float32)
    save_file(tensors, str(path))
    return path


@pytest.fixture
def moe_plan(tmp_path: Path) -> Plan:
    src = _moe(tmp_path / "src.safetensors", 12)
    tgt = _moe(tmp_path / "tgt.safetensors", 12, prefix="model.")
    return propose(str(src), str(tgt))


def test_a_plan_written_compact_reads_back_the_same(moe_plan: Plan) -> None:
    text = moe_plan.to_yaml(compact=True)
    assert text.startswith("version: 2\n")
    assert "\ntemplates:\n" in text
    full = moe_plan.to_yaml(compact=False)
    assert len(text) * 4 < len(full)
    back = Plan.from_yaml(text)
    assert back == moe_plan
    assert back.to_yaml(compact=True) == text  # dumping again gives the same text
    rows = [line for line in text.splitlines() if line.startswith('  "model.layers.')]
    assert rows
    assert all(line.split(": ")[1].isdigit() for line in rows)
    e = back.entries["model.layers.7.experts.3.w2.weight"]
    assert e.sources == (("src.safetensors", "layers.7.experts.3.w2.weight"),)
    # a reason that names the row's source (a rule's: "rule ... maps src:NAME") is a template
    # filled per row
    named = {n: dataclasses.replace(x, reason=f"{x.sources[0][0]}:{x.sources[0][1]} moved")
             for n, x in moe_plan.entries.items()}
    plan = Plan(moe_plan.sources, moe_plan.target, moe_plan.rules, named, moe_plan.unused)
    text = plan.to_yaml(compact=True)
    assert len(text) * 4 < len(plan.to_yaml(compact=False))
    e = Plan.from_yaml(text).entries["model.layers.7.experts.3.w2.weight"]
    assert e.reason == "src.safetensors:layers.7.experts.3.w2.weight moved"


def test_small_plans_stay_full_rows_and_large_ones_turn_compact(moe_plan: Plan) -> None:
    assert len(moe_plan.entries) < COMPACT_FROM
    assert moe_plan.to_yaml().startswith("version: 1\n")
    assert moe_plan.to_yaml() == moe_plan.to_yaml(compact=False)


def test_a_compact_plan_loads_the_same_through_the_yaml_loader(moe_plan: Plan) -> None:
    """A row JSON cannot say as YAML reads it (a float like 1e-05) makes the file YAML flow
    there, read by the bounded YAML loader: the templates and numbers read the same."""
    tiny = {n: dataclasses.replace(e, confidence=1e-05) for n, e in moe_plan.entries.items()}
    plan = Plan(moe_plan.sources, moe_plan.target, moe_plan.rules, tiny, moe_plan.unused)
    text = plan.to_yaml(compact=True)
    assert "!!map" in text
    assert Plan.from_yaml(text) == plan
    assert planfile.from_dict(yamlload.load(text))[3] == plan.entries


def test_rows_a_template_cannot_say_stay_full_rows(moe_plan: Plan) -> None:
    entries = dict(moe_plan.entries)
    odd = entries["model.layers.3.norm.weight"]
    entries[odd.target] = dataclasses.replace(odd, reason="a NUL \0 in it")
    flip = transform_from_dict({"op": "transpose"}, "t")
    sq = entries["model.layers.4.experts.0.w1.weight"]
    entries[sq.target] = dataclasses.replace(sq, transform=(flip,))
    plan = Plan(moe_plan.sources, moe_plan.target, moe_plan.rules, entries, moe_plan.unused)
    text = plan.to_yaml(compact=True)
    assert '"model.layers.3.norm.weight": {' in text
    assert '"model.layers.4.experts.0.w1.weight": {' in text
    assert Plan.from_yaml(text) == plan


names = st.lists(st.sampled_from(["a", "b", "layers", "0", "1", "7", "12", "007", "x{", "}y"]),
                 min_size=1, max_size=6).map(".".join)
texts = st.text(alphabet="ab.{}0127 :'", max_size=24)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(names, texts, texts, texts), min_size=1, max_size=12,
                unique_by=lambda r: r[0]))
def test_any_rows_read_back_as_they_were(rows: list[tuple[str, str, str, str]]) -> None:
    """Names with indices that repeat or hold leading zeros, strings with braces and dotted
    numbers: every row reads back equal, through a template or in full."""
    ref = SourceRef("s", "s.pt")
    entries = {}
    for name, reason, detail, why in rows:
        src = f"{name}.{detail}"
        entries[name] = Entry(
            name, "copy", (("s", src),), reason=reason, confidence=0.5,
            evidence=(Evidence("similar", detail, 0.5), Evidence("shape", "[2, 2]", 1.0)),
            candidates=(Candidate("s", src, 0.5, why),), shape=(2, 2), dtype="F32",
            source_shapes=((2, 2),), source_dtypes=("F32",))
        entries[name + ".b"] = Entry(name + ".b", "keep", reason=reason,
                                     flags=frozenset({"no-source"}))
    plan = Plan([ref], SourceRef("t", "t.pt"), [], entries)
    text = plan.to_yaml(compact=True)
    assert Plan.from_yaml(text) == plan
    for name, reason, *_ in rows:
        v = [c for c in name.split(".")[1:-1] if c.isdigit()]
        assert templated(reason, v).format(*v) == reason


_HEAD = ("version: 2\nsources:\n- {label: s, path: s.pt}\ntarget: {label: t, path: t.pt}\n"
         "rules: []\n")
_ROW = '{"decision": "keep", "status": "proposed", "reason": %s}'


@pytest.mark.parametrize(("templates", "entries", "message"), [
    ([_ROW % '"x {0.__class__}"'], ['"a.1.b": 0'], "templates[0].reason: a template says {0}"),
    ([_ROW % '"x {}"'], ['"a.1.b": 0'], "templates[0].reason: a template says {0}"),
    ([_ROW % '"x {0!r}"'], ['"a.1.b": 0'], "templates[0].reason: a template says {0}"),
    ([_ROW % '"x {0:>9}"'], ['"a.1.b": 0'], "templates[0].reason: a template says {0}"),
    ([_ROW % '"x {0"'], ['"a.1.b": 0'], "templates[0].reason: a template says {0}"),
    ([_ROW % '"x }"'], ['"a.1.b": 0'], "templates[0].reason: a template says {0}"),
    ([_ROW % '"x {1}"'], ['"a.1.b": 0'], "entries['a.1.b']: its template (plan: templates[0]) "
     "says {1}; the name has 1 index"),
    ([_ROW % '"x {0}"'], ['"a.1.b": 1'], "entries['a.1.b']: no template 1"),
    ([_ROW % '"x {0}"'], ['"a.1.b": -1'], "entries['a.1.b']: no template -1"),
    ([_ROW % '"x {0}"'], ['"a.1.b": true'], "entries['a.1.b']: expected a mapping"),
    (['{"decision": "copy", "reason": "x"}'], ['"a.1.b": 0'],
     "templates[0]: decision copy needs at least one source"),
    (['{"decision": "keep", "transform": [{"op": "transpose"}]}'], ['"a.1.b": 0'],
     "templates[0].transform: a template holds no transform"),
    (["7"], ['"a.1.b": 0'], "templates[0]: expected a mapping with decision, status, reason (a "
     "row whose strings"),
    ([_ROW % '"x {00}"'], ['"a.1.b": 0'], "templates[0].reason: a template says {0}"),
    ([_ROW % '"x {0:}"'], ['"a.1.b": 0'], "templates[0].reason: a template says {0}"),
    ([_ROW % '"x {1234567}"'], ['"a.1.b": 0'], "templates[0].reason: a template says {0}"),
    (['{"decision": "copy", "sources": [["s", "a", [1], "f"]], "candidates": [["s", "a", 0.5, '
      '"{x}"]]}'], ['"a.1.b": 0'], "templates[0].candidates[0].why: a template says {0}"),
    ([_ROW % '"x"'], ['"a.1.b": ' + "9" * 5000], "cannot read a value"),
])
def test_a_bad_template_is_a_plan_error_naming_it(templates: list[str], entries: list[str],
                                                  message: str) -> None:
    text = (_HEAD + "templates:\n" + "".join(f"- {t}\n" for t in templates) + "entries:\n"
            + "".join(f"  {e}\n" for e in entries) + "unused: []\n")
    with pytest.raises(PlanError) as err:
        Plan.from_yaml(text)
    assert message in str(err.value)


def test_templates_need_version_2() -> None:
    text = _HEAD.replace("version: 2", "version: 1") + "templates: []\nentries: {}\nunused: []\n"
    with pytest.raises(PlanError, match=r"unknown key 'templates' \(a plan with templates says "
                                        r"version: 2\)"):
        Plan.from_yaml(text)


def test_the_cli_writes_a_large_plan_compact_and_applies_it(tmp_path: Path) -> None:
    """`ckpt map -o` of a plan past COMPACT_FROM rows, `ckpt plan approve` of some of them, and
    `ckpt apply` of the compact file: the tensors land where the full plan puts them."""
    layers = COMPACT_FROM // 10 + 1
    src = _moe(tmp_path / "src.safetensors", layers)
    tgt = _moe(tmp_path / "tgt.safetensors", layers, prefix="model.")
    plan_file, out = tmp_path / "plan.yaml", tmp_path / "out.safetensors"
    done = ckpt("map", src, tgt, "-o", plan_file)
    assert done.returncode == 0, done.stderr
    text = plan_file.read_text()
    assert text.startswith("version: 2\n")
    assert len(text) * 4 < len(Plan.load(plan_file).to_yaml(compact=False))
    done = ckpt("plan", "approve", plan_file, "model.layers.3")
    assert done.returncode == 0, done.stderr
    plan = Plan.load(plan_file)
    assert plan.entries["model.layers.3.experts.1.w2.weight"].status == "approved"
    assert plan.entries["model.layers.4.experts.1.w2.weight"].status == "proposed"
    done = ckpt("apply", plan_file, "-o", out, "--accept-proposed")
    assert done.returncode == 0, done.stderr
    from safetensors.numpy import load_file

    written = load_file(str(out))
    assert (written["model.layers.37.experts.2.w1.weight"] == 372).all()
    assert (written["model.layers.5.router.weight"] == 5).all()


def test_plan_show_folds_a_models_layers_into_one_section(tmp_path: Path) -> None:
    """A model whose top level is its layer stack (one module per layer): `ckpt plan show`
    prints its layers as one section with one line per kind of row, as `ckpt map` does, not a
    section per layer (a 100k-row plan printed 16,670 lines)."""
    names = [f"layers.{i}.experts.{j}.w{k}" for i in range(30) for j in range(4) for k in (1, 2)]
    src, tgt = tmp_path / "src.safetensors", tmp_path / "tgt.safetensors"
    save_file({n: np.zeros(2, np.float32) for n in names}, str(src))
    save_file({"model." + n: np.zeros(2, np.float32) for n in names}, str(tgt))
    plan_file = tmp_path / "plan.yaml"
    propose(str(src), str(tgt)).save(plan_file)
    done = ckpt("plan", "show", plan_file)
    assert done.returncode == 0, done.stderr
    out = done.stdout.splitlines()
    assert out[1] == "model.layers.{0..29} 100%  [240 proposed]"
    assert len(out) == 5  # title, the section, a line for w1 rows and one for w2, the footer
    assert out[2].startswith("  proposed copy 120 rows under model.layers <- src.safetensors:")
    assert out[2].endswith("(prefix 'model.' put before (as 240 of the 240 names it was left"
                           " with))")


@pytest.mark.parametrize(("reason", "names"), [
    ("{{" + "x" * 200_000, [f"m.{i}.w" for i in range(1000)]),  # one long string, many rows
    ("{0}" * 10_000, [f"m.{i:0>1000}.w" for i in range(20)]),  # many fields, long indices
])
def test_a_plan_that_would_expand_too_far_is_refused(reason: str, names: list[str]) -> None:
    """A template's strings are filled in per row: a 215 kB file could name 200 M characters
    (each time the file doubles, 4x). What rows fill in is bounded by what the file writes."""
    import json

    template = json.dumps({"decision": "keep", "reason": reason, "shape": [1], "dtype": "f32"})
    text = (_HEAD + f"templates:\n- {template}\nentries:\n"
            + "".join(f'  "{n}": 0\n' for n in names) + "unused: []\n")
    with pytest.raises(PlanError, match="would fill in more than 67,108,864 characters"):
        Plan.from_yaml(text)


def test_rows_built_with_unhashable_values_are_written_in_full(moe_plan: Plan) -> None:
    """An Entry made through the API with a list for its shape (what version 1 writes as is)
    cannot share a template: it is written in full, not refused with a TypeError."""
    entries = dict(moe_plan.entries)
    e = entries["model.embed.weight"]
    entries[e.target] = dataclasses.replace(e, shape=list(e.shape))  # type: ignore[arg-type]
    plan = Plan(moe_plan.sources, moe_plan.target, moe_plan.rules, entries, moe_plan.unused)
    text = plan.to_yaml(compact=True)
    assert '"model.embed.weight": {' in text
    assert Plan.from_yaml(text).entries["model.layers.3.router.weight"] == entries[
        "model.layers.3.router.weight"]


_PROBES = {  # refused with a Python exception (or made from the held copy), never a crash
    "a setter clears a column": (
        "cols = [[1, 2, 3]]\nclass C:\n    @property\n    def a(self): return 0\n"
        "    @a.setter\n    def a(self, v): cols[0].clear()\n"
        "assert len(core.frozen_rows(C, ('a',), cols, 3)) == 3\nprint('made')"),
    "a subclass clears the instances": (
        "class Sub(Entry):\n    def __getattribute__(self, n):\n        L.clear()\n"
        "        return object.__getattribute__(self, n)\n"
        "L = [Sub('t%d' % i, 'keep') for i in range(5)]\n"
        "core.frozen_replaced(Entry, ENTRY_FIELDS, L, 'status', 'approved')"),
    "another class's slot": (
        "class A: __slots__ = ('p', 'w')\nclass B: pass\nB.w = A.__dict__['w']\n"
        "core.frozen_rows(B, ('w',), [(1,)], 100)"),
    "a slot never set": (
        "from dataclasses import dataclass\n@dataclass(frozen=True, slots=True)\n"
        "class S:\n    a: int\n    b: int\n"
        "core.frozen_replaced(S, ('a', 'b'), [S(1, 2), object.__new__(S)], 'a', 5)"),
    "a read-only slot": (
        "import types\n"
        "core.frozen_replaced(types.SimpleNamespace, (), [types.SimpleNamespace()], 'a', 5)"),
    "a built-in type": "core.frozen_rows(slice, ('start',), [(1,)], 1)",
    "dict": "core.frozen_rows(dict, (), [], 1)",
    "type": "core.frozen_rows(type, (), [], 1)",
}


@pytest.mark.parametrize("probe", list(_PROBES))
def test_the_cores_row_makers_refuse_what_they_cannot_make(probe: str) -> None:
    """frozen_rows/frozen_replaced read their inputs from a held copy and make only Python
    classes built by object.__new__, with slots of their own or a base: bad calls raise."""
    from subproc import python

    code = ("from inspector._native import core\n"
            "from inspector.mapping.entries import Entry, ENTRY_FIELDS\n"
            f"try:\n    exec({_PROBES[probe]!r})\n"
            "except (TypeError, ValueError, AttributeError) as e:\n    print('refused', e)\n")
    done = python("-c", code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("made" if "setter" in probe else "refused")
