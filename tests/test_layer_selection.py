"""Layer selection: index arithmetic in templates, `drop ... above`, `--layers`, and invert."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from subproc import ckpt

import inspector
from inspector.errors import PlanError
from inspector.mapping import load_rules, propose
from inspector.mapping.indexexpr import Affine, parse_affine
from inspector.mapping.layersel import layer_rules, parse_layers
from inspector.mapping.rules import apply_rules, name_matcher, rule_from_dict

# -- the expression parser -------------------------------------------------------------------------
VARS = st.sampled_from(["n", "i", "layer", "k_2"])


def _texts(var: str, a: int, b: int) -> list[str]:
    """Ways of writing a*var+b."""
    head = [f"{a}*{var}", f"{var}*{a}", f"{var} * {a}"] if a != 1 else [var, f"1*{var}"]
    out = []
    for h in head:
        if b == 0:
            out += [h, f"{h}+0", f"0+{h}"]
        elif b > 0:
            out += [f"{h}+{b}", f"{b} + {h}", f"{h}+{b - 1}+1"]
        else:
            out += [f"{h}-{-b}", f"-{-b}+{h}", f"{h} - {-b}"]
    return out


@settings(max_examples=200, deadline=None)
@given(VARS, st.integers(1, 50), st.integers(-100, 100), st.data())
def test_affine_expressions_parse_in_any_spelling(var, a, b, data) -> None:  # type: ignore[no-untyped-def]
    text = data.draw(st.sampled_from(_texts(var, a, b)))
    expr = parse_affine(text)
    assert expr == Affine(var, a, b)
    assert parse_affine(expr.text()) == expr
    n = data.draw(st.integers(0, 1000))
    assert expr.solve(expr.at(n)) == n
    assert expr.solve(expr.at(n) + 1) is None or a == 1


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="n m 0123456789*+-()/._x", max_size=12))
def test_the_parser_accepts_affine_or_raises_plan_error(text: str) -> None:
    try:
        expr = parse_affine(text)
    except PlanError as e:
        error = str(e)
    else:
        error = ""
    if error:
        assert error.startswith("{")  # names the expression
        return
    assert expr.a >= 1
    assert expr.var in re.findall(r"[A-Za-z_]\w*", text)
    assert not set(text) & set("()/.")
    assert parse_affine(expr.text()) == expr


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("n*n", "not affine"),
        ("0*n", "at least 1"),
        ("n-n", "at least 1"),
        ("3", "no variable"),
        ("n+m", "variables ['m', 'n']"),
        ("n/2", "unexpected '/'"),
        ("__import__('os')", "unexpected '('"),
        ("2 n", "expected + or -"),
        ("n+", "expected a number"),
        ("", "empty"),
        ("9999999*n", "too large"),
    ],
)
def test_bad_expressions_say_why(text: str, message: str) -> None:
    with pytest.raises(PlanError, match=re.escape(message)):
        parse_affine(text)


# -- selection rules -------------------------------------------------------------------------------
def _selection(a: int, b: int, span: tuple[int, int] | None) -> dict[str, object]:
    body: dict[str, object] = {"from": f"enc.layers.{{{Affine('n', a, b).text()}}}",
                               "to": "enc.layers.{n}"}
    if span is not None:
        body["n"] = f"{span[0]}..{span[1]}"
    return {"template": body}


@settings(max_examples=150, deadline=None)
@given(
    st.integers(1, 4),
    st.integers(-3, 5),
    st.none() | st.tuples(st.integers(0, 6), st.integers(0, 6)).map(lambda t: (min(t), max(t))),
    st.integers(1, 16),
)
def test_a_selection_maps_each_layer_at_most_once_and_drops_the_rest(a, b, span, count) -> None:  # type: ignore[no-untyped-def]
    rule = rule_from_dict(_selection(a, b, span))
    taken: dict[str, int] = {}
    expected = {}
    for n in range(-10, 40):
        i = a * n + b
        if 0 <= i < count and n >= 0 and (span is None or span[0] <= n <= span[1]):
            expected[i] = n
    for i in range(count):
        res = apply_rules([rule], f"enc.layers.{i}.w")
        if i in expected:
            assert res.names == (f"enc.layers.{expected[i]}.w",)
            assert res.names[0] not in taken, (res.names, taken)
            taken[res.names[0]] = i
        else:
            assert res.dropped
            assert "not selected by enc.layers" in res.why
    # names outside the container, or not at the index position, pass untouched
    assert apply_rules([rule], "enc.layers_norm.w").names == ("enc.layers_norm.w",)
    assert apply_rules([rule], "head.3.w").names == ("head.3.w",)


def _arrays(n_layers: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {f"enc.layers.{i}.{p}": rng.standard_normal((4, 4) if p == "w" else (4,)).astype(
        np.float32) for i in range(n_layers) for p in ("w", "b")}
    out["head.w"] = rng.standard_normal((2, 4)).astype(np.float32)
    return out


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 3), st.integers(0, 3), st.integers(1, 12), st.integers(1, 6))
def test_propose_lists_every_layer_left_out_as_unused(a, b, teacher, student) -> None:  # type: ignore[no-untyped-def]
    src, tgt = inspector.open(_arrays(teacher, 1)), inspector.open(_arrays(student, 2))
    plan = propose(src, tgt, [_selection(a, b, (0, student - 1))])
    used = {s for e in plan.entries.values() for _, s in e.sources if e.effective == "copy"}
    unused = {u.name: u.reason for u in plan.unused}
    assert set(src.tensors) == used | set(unused)
    assert not used & set(unused)
    for i in range(teacher):
        selected = (i - b) % a == 0 and 0 <= (i - b) // a < student
        name = f"enc.layers.{i}.w"
        assert (name in used) == selected
        if not selected:
            assert unused[name].startswith("dropped by rules[0]: a layer not selected by")
        else:
            assert plan.entries[f"enc.layers.{(i - b) // a}.w"].sources == (("source", name),)


def test_validation_names_the_rule() -> None:
    rules = [
        {"strip_prefix": "module."},
        {"keep": "x"},
        {"template": {"from": "enc.layers.{2*n}", "to": "enc.layers.0"}},
    ]
    with pytest.raises(PlanError, match=r"^rules\[2\]\.template: 'to' does not use n"):
        load_rules(rules)
    bad = {"template": {"from": "a.{n}", "to": "b.{n}", "n": "4..1"}}
    with pytest.raises(PlanError, match=r"rules\[0\]\.template\.n: empty range 4\.\.1"):
        load_rules([bad])
    with pytest.raises(PlanError, match=r"rules\[0\]\.template: 'from' has no index expression "
                                        r"in k: write \{k\}"):
        load_rules([{"template": {"from": "a.{n}", "to": "b.{n}", "k": "0..3"}}])
    with pytest.raises(PlanError, match=r"rules\[0\]\.template: \{n\*\*2\}"):
        load_rules([{"template": {"from": "a.{n**2}", "to": "b.{n}"}}])
    with pytest.raises(PlanError, match=r"rules\[0\]\.above: expected a layer index"):
        load_rules([{"drop": "a.*", "above": "5"}])
    with pytest.raises(PlanError, match=r"rules\[0\]: unknown key 'above'"):
        load_rules([{"keep": "a.*", "above": 5}])


def test_a_range_makes_a_bare_placeholder_an_index_and_round_trips() -> None:
    rule = rule_from_dict({"template": {"from": "enc.layers.{n}", "to": "dec.layers.{n+1}",
                                        "n": "2..3"}})
    assert rule_from_dict(rule.to_dict()) == rule
    assert [apply_rules([rule], f"enc.layers.{i}.w").names for i in range(5)] == [
        (), (), ("dec.layers.3.w",), ("dec.layers.4.w",), ()]
    # without a range `{n}` is still one component (old templates keep their meaning)
    plain = rule_from_dict({"template": {"from": "enc.{n}.w", "to": "dec.{n}.w"}})
    assert apply_rules([plain], "enc.proj.w").names == ("dec.proj.w",)


def test_row_patterns_select_what_a_selection_selects() -> None:
    even = name_matcher("enc.layers.{2*n+1}")
    assert [even(f"enc.layers.{i}.w") for i in range(5)] == [False, True, False, True, False]
    # a pattern no template reads (a folded range as printed) is a glob, never an error
    folded = name_matcher("enc.layers.{0..3}.w")
    assert not folded("enc.layers.1.w")
    assert folded("enc.layers.{0..3}.w")


def test_drop_above_keeps_a_teacher_up_to_its_middle_layer() -> None:
    src, tgt = inspector.open(_arrays(12, 1)), inspector.open(_arrays(6, 2))
    rule = {"drop": "enc.layers.*", "above": 5}
    assert rule_from_dict(rule).to_dict() == rule
    plan = propose(src, tgt, [rule])
    assert all(e.effective == "copy" and e.sources[0][1] == n for n, e in plan.entries.items())
    assert {u.name for u in plan.unused} == {
        f"enc.layers.{i}.{p}" for i in range(6, 12) for p in ("w", "b")}
    assert {u.reason for u in plan.unused} == {
        "dropped by rules[0]: a layer above 5 in enc.layers.*"}


def test_invert_refuses_a_selection_that_left_layers_out() -> None:
    teacher, student = inspector.open(_arrays(12, 1)), inspector.open(_arrays(6, 2))
    plan = propose(teacher, student, [_selection(2, 0, (0, 5))])
    with pytest.raises(PlanError, match=r"rules\[0\] selects layers and leaves 12 source tensor"
                                        r".*enc\.layers\.\{1,3,5,7,9,11\}"):
        plan.invert()
    with pytest.raises(PlanError, match=r"rules\[0\] selects layers"):
        propose(teacher, student, [{"drop": "enc.layers.*", "above": 5}]).invert()
    # a selection that leaves nothing out inverts: every source tensor gets its value back
    same = inspector.open(_arrays(6, 1))
    inv = propose(same, student, [_selection(1, 0, (0, 5))]).invert()
    assert {n: e.sources for n, e in inv.entries.items()} == {
        n: (("target", n),) for n in same.tensors}


# -- --layers --------------------------------------------------------------------------------------
def _names(*stacks: tuple[str, int]) -> list[str]:
    return [f"{p}.{i}.w" for p, n in stacks for i in range(n)] + ["head.w"]


@pytest.mark.parametrize(
    ("spec", "source"),
    [("every:2", "{2*n}"), ("first", "{n}"), ("first:6", "{n}"), ("1,3,5,7,9,11", "{2*n+1}"),
     ("6,7,8,9,10,11", "{n+6}")],
)
def test_layers_spec_becomes_one_template(spec: str, source: str) -> None:
    [rule] = layer_rules(parse_layers(spec), _names(("enc.layers", 12)), _names(("enc.layers", 6)))
    assert rule.to_dict() == {
        "template": {"from": f"enc.layers.{source}", "to": "enc.layers.{n}", "n": "0..5"},
        "note": f"--layers {spec}",
    }


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("every:0", "every:K needs K >= 1"),
        ("0,1,5", "fixed step"),
        ("4,2,0", "fixed step"),
        ("last:3", "expected every:K"),
        ("first:5", "selects 5 of enc.layers's 12 source layers .0,1,2,3,4.; the target has 6"),
        ("every:3", "selects 4 of enc.layers's 12"),
        ("2,4,6,8,10,12", r"the source has no layer\(s\) \[12\]"),
    ],
)
def test_layers_spec_errors(spec: str, message: str) -> None:
    with pytest.raises(PlanError, match=message):
        layer_rules(parse_layers(spec), _names(("enc.layers", 12)), _names(("enc.layers", 6)))


def test_several_layer_lists_need_a_prefix() -> None:
    src = _names(("enc.layers", 12), ("dec.blocks", 4))
    tgt = _names(("enc.layers", 6), ("dec.blocks", 2))
    with pytest.raises(PlanError, match=r"several layer lists \(dec\.blocks \(4 -> 2 layers\), "
                                        r"enc\.layers \(12 -> 6 layers\)\); choose with "
                                        r"--layers-prefix"):
        layer_rules(parse_layers("every:2"), src, tgt)
    rules = layer_rules(parse_layers("every:2"), src, tgt, ["enc.layers.", "dec.blocks"])
    assert [r.to_dict()["template"]["from"] for r in rules] == [
        "enc.layers.{2*n}", "dec.blocks.{2*n}"]
    with pytest.raises(PlanError, match="--layers-prefix head: not a layer list"):
        layer_rules(parse_layers("every:2"), src, tgt, ["head"])
    with pytest.raises(PlanError, match="no layer list in both source and target"):
        layer_rules(parse_layers("every:2"), _names(("a.layers", 4)), _names(("b.layers", 2)))


# -- end to end: real files, the real command line ------------------------------------------------
def _model(n_layers: int, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    enc = torch.nn.Module()
    enc.layers = torch.nn.ModuleList(
        torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.LayerNorm(8)) for _ in range(n_layers)
    )
    model = torch.nn.Module()
    model.encoder = enc
    model.head = torch.nn.Linear(8, 3)
    return model


@pytest.fixture
def teacher_student(tmp_path: Path) -> tuple[Path, Path]:
    teacher, student = tmp_path / "teacher.pt", tmp_path / "student.pt"
    torch.save(_model(12, 1).state_dict(), teacher)
    torch.save(_model(6, 2).state_dict(), student)
    return teacher, student


def _bytes(t: torch.Tensor) -> bytes:
    return t.detach().contiguous().numpy().tobytes()


def test_cli_every_other_layer_end_to_end(
    teacher_student: tuple[Path, Path], tmp_path: Path
) -> None:
    teacher, student = teacher_student
    plan = tmp_path / "plan.yaml"
    r = ckpt("map", teacher, student, "--layers", "every:2", "-o", plan)
    assert r.returncode == 0, r.stderr
    assert ("teacher.pt: 24 tensors under encoder.layers  (dropped by rules[0]: a layer not "
            "selected by encoder.layers.{2*n} -> encoder.layers.{n}, n in 0..5)") in r.stdout
    assert "WARNING" not in r.stdout
    shown = ckpt("plan", "show", plan)
    assert ("rules[0]: template encoder.layers.{2*n} -> encoder.layers.{n}, n in 0..5 "
            "(--layers every:2)") in shown.stdout.splitlines()
    assert ckpt("plan", "approve", plan, "*").returncode == 0
    out = tmp_path / "out.pt"
    r = ckpt("apply", plan, "-o", out)
    assert r.returncode == 0, r.stderr
    direct = tmp_path / "direct.pt"
    r = ckpt("apply", "--source", teacher, "--target", student, "--layers", "every:2",
             "--accept-proposed", "-o", direct)
    assert r.returncode == 0, r.stderr
    t = torch.load(teacher, weights_only=True)
    for path in (out, direct):
        got = torch.load(path, weights_only=True)
        assert set(got) == set(torch.load(student, weights_only=True))
        for name, value in got.items():
            if name.startswith("encoder.layers."):
                k, rest = name.split(".")[2], ".".join(name.split(".")[3:])
                assert _bytes(value) == _bytes(t[f"encoder.layers.{2 * int(k)}.{rest}"]), name
            else:
                assert _bytes(value) == _bytes(t[name]), name


def test_cli_layers_errors_exit_2_without_traceback(teacher_student: tuple[Path, Path],
                                                    tmp_path: Path) -> None:
    teacher, student = teacher_student
    r = ckpt("map", teacher, student, "--layers", "every:3")
    assert r.returncode == 2
    assert r.stderr.strip() == ("ckpt map: error: --layers every:3: selects 4 of encoder.layers's "
                                "12 source layers (0,3,6,9); the target has 6")
    r = ckpt("map", teacher, student, "--layers-prefix", "encoder.layers")
    assert r.returncode == 2
    assert "--layers-prefix needs --layers" in r.stderr
    plan = tmp_path / "p.yaml"
    assert ckpt("map", teacher, student, "--layers", "first", "-o", plan).returncode == 0
    r = ckpt("apply", plan, "--layers", "first", "-o", tmp_path / "o.pt")
    assert r.returncode == 2
    assert "a plan file holds its rules already" in r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("spec", [
    {"from": "enc.layers.{2n}", "to": "enc.layers.{n}"},  # the typo for {2*n}
    {"from": "enc.layers.{" + "9" * 5000 + "*n}", "to": "enc.layers.{n}"},
    {"from": "enc.layers.{2*n}", "to": "enc.layers.{n}", "n": "0.." + "9" * 5000},
])
def test_malformed_expressions_are_plan_errors_naming_the_rule(spec: dict[str, str]) -> None:
    with pytest.raises(PlanError, match=r"^rules\[0\]\.template"):
        load_rules([{"template": spec}])
