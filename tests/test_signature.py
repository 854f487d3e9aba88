"""Signatures (names, shapes, dtypes) and the header-only diff built on them.

The fast paths are checked against the slow ones: a reader's `signature()` against
`inspector.open`, the C++ fold against tree.fold_names (the reference), the columnar DiffResult
against the rows it stands for.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors import torch as safetensors_torch
from subproc import ckpt, python

import inspector
from inspector._native import core
from inspector.diffing import DTYPE, ONLY_A, ONLY_B, SHAPE, STATUSES, UNCHECKED, diff
from inspector.signature import Signature, signature
from inspector.tree import FOLD_IN_CORE_FROM, fold_names_python
from inspector.tree import fold_names as folded_by_either

REPO = Path(__file__).resolve().parents[1]


def _sd(layers: int, *, vocab: int = 29, extra: str | None = None) -> dict[str, object]:
    sd: dict[str, object] = {}
    for i in range(layers):
        sd[f"enc.layers.{i}.w"] = torch.zeros(4, 2)
        sd[f"enc.layers.{i}.b"] = torch.zeros(4)
    sd["out.weight"] = torch.zeros(vocab, 4)
    sd["out.bias"] = torch.zeros(vocab, dtype=torch.float16)
    if extra:
        sd[extra] = torch.zeros(1)
    return sd


# signature() -------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["safetensors", "pt", "sharded", "state-dict"])
def test_signature_equals_open_for_every_way_in(tmp_path, fmt):
    sd = _sd(3)
    if fmt == "safetensors":
        source: object = tmp_path / "m.safetensors"
        safetensors_torch.save_file(sd, source)
    elif fmt == "pt":
        source = tmp_path / "m.pt"
        torch.save({"model": sd, "epoch": 1}, source)  # root detected by open()
    elif fmt == "sharded":
        names = list(sd)
        safetensors_torch.save_file({k: sd[k] for k in names[:3]}, tmp_path / "a.safetensors")
        safetensors_torch.save_file({k: sd[k] for k in names[3:]}, tmp_path / "b.safetensors")
        weight_map = {k: "a.safetensors" if k in names[:3] else "b.safetensors" for k in names}
        source = tmp_path / "model.safetensors.index.json"
        source.write_text(json.dumps({"weight_map": weight_map}))
    else:
        source = sd
    sig = signature(source)
    ckpt = inspector.open(source)
    assert sig == Signature.of(ckpt)
    assert len(sig) == len(ckpt) == len(sd)
    assert dict(zip(sig.names, sig.shapes, strict=True)) == {
        k: tuple(v.shape) for k, v in sd.items()
    }


def test_signature_errors_are_open_errors(tmp_path):
    with pytest.raises(inspector.CheckpointError, match="no such file"):
        signature(tmp_path / "missing.safetensors")
    (tmp_path / "empty.safetensors").write_bytes(b"")
    with pytest.raises(inspector.CheckpointError):
        signature(tmp_path / "empty.safetensors")


def test_signature_columns_must_agree():
    with pytest.raises(ValueError, match="same length"):
        Signature(["a"], [], ["float32"])


# fold_names in C++ against the reference -------------------------------------------------------

segments = st.one_of(
    st.sampled_from(["layers", "w", "bias", "", "experts", "0", "1", "2", "10", "007", "3\n"]),
    st.integers(0, 40).map(str),
    st.text(alphabet="ab1_\n", max_size=3),
)
dotted = st.lists(segments, min_size=1, max_size=5).map(".".join)


@settings(max_examples=300, deadline=None)
@given(st.lists(dotted, max_size=40))
def test_core_fold_matches_tree_fold_names(names):
    folded = core.fold_names(names)
    assert folded is not None  # ASCII, short numbers, no '#': the core covers these
    assert folded == fold_names_python(names)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.one_of(dotted, st.just("a.#.b"), st.just("l.\u0661.x"), st.just("l." + "9" * 19)),
        max_size=12,
    )
)
def test_fold_wrapper_falls_back_outside_the_core(names):
    if any("#" in n.split(".") or not n.isascii() or "9" * 19 in n for n in names):
        assert core.fold_names(names) is None
    try:
        expected = fold_names_python(names)
    except ValueError:  # the reference itself fails on a literal '#' next to a number
        return
    big = names * (FOLD_IN_CORE_FROM // max(len(names), 1) + 1)
    assert folded_by_either(big) == fold_names_python(big)
    assert folded_by_either(iter(names)) == expected


def test_core_fold_on_a_million_style_list():
    names = [
        f"model.layers.{i}.experts.{j}.w{k}" for i in range(3) for j in range(50) for k in (1, 2)
    ]
    names += [f"model.layers.{i}.router.bias" for i in (0, 1, 2, 5, 6)]
    assert core.fold_names(names) == fold_names_python(names)
    assert core.fold_names(names)[-1] == "model.layers.{0..2,5..6}.router.bias"


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(dotted, st.text(max_size=6)), max_size=30), st.integers(0, 3))
def test_prefix_counts_match_python(names, depth):
    want = list(Counter(".".join(n.split(".")[:depth]) for n in names).items())
    assert core.prefix_counts(names, depth) == want
    assert core.prefix_counts(["a.\ud800.b"], 1) is None  # not encodable: Python counts these


# the header-only diff ---------------------------------------------------------------------------


def _files(tmp_path: Path) -> tuple[Path, Path]:
    a = _sd(1200)
    b = {k: v for k, v in _sd(1200, vocab=1025, extra="new.only").items() if "layers.7." not in k}
    b["enc.layers.3.b"] = torch.zeros(4, dtype=torch.bfloat16)
    pa, pb = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    safetensors_torch.save_file(a, pa)
    safetensors_torch.save_file(b, pb)
    return pa, pb


def test_header_only_diff_columns_agree_with_rows(tmp_path):
    pa, pb = _files(tmp_path)
    r = diff(pa, pb, values=False)
    rows = r.rows
    assert r.counts() == dict(Counter(row.status for row in rows))
    assert r.counts() == {ONLY_A: 2, ONLY_B: 1, SHAPE: 2, DTYPE: 1, UNCHECKED: 2397}
    for status in STATUSES:
        assert r.by_status(status) == [row for row in rows if row.status == status]
        assert r.names(status) == [row.name for row in rows if row.status == status]
        assert r.folded(status) == fold_names_python(
            row.name for row in rows if row.status == status)
    assert sorted(r.folded(ONLY_A)) == ["enc.layers.7.b", "enc.layers.7.w"]  # file order
    assert r.folded(UNCHECKED)[0].startswith("enc.layers.{")
    assert not r.equal
    doc = r.to_json()
    assert [t["status"] for t in doc["tensors"]] == [row.status for row in rows]
    modules = {m.module: m.counts for m in r.modules()}
    assert modules["enc"][UNCHECKED] == 2397
    assert modules["out"] == {SHAPE: 2}
    # The same result through open() and the row-by-row join it replaced
    slow = diff(inspector.open(pa), inspector.open(pb), values=False)
    assert [
        (x.status, x.name_a, x.name_b, x.shape_a, x.shape_b, x.dtype_a, x.dtype_b) for x in rows
    ] == [
        (x.status, x.name_a, x.name_b, x.shape_a, x.shape_b, x.dtype_a, x.dtype_b)
        for x in slow.rows
    ]


def test_cli_no_values_output_folds_long_lists(tmp_path):
    pa, pb = _files(tmp_path)
    out = ckpt("diff", "--no-values", "--all", pa, pb)
    assert out.returncode == 1, out.stderr
    text = out.stdout
    assert "out.weight  (shape [29, 4] vs [1025, 4])" in text
    assert "out.bias  (shape [29] vs [1025])" in text
    assert "enc.layers.3.b  (dtype float32 vs bfloat16)" in text
    assert "same shape and dtype (values not compared) (2397):" in text
    assert "  enc.layers.{0..6,8..1199}.w\n" in text  # 2397 names: folded by the core
    assert "  enc.layers.{0..2,4..6,8..1199}.b\n" in text
    assert "enc: 2 only in A" in text
    same = ckpt("diff", "--no-values", pa, pa)
    assert same.returncode == 0
    assert "equal: 2402 same shape and dtype" in same.stdout


def test_header_only_diff_does_not_import_torch_or_numpy(tmp_path):
    pa, pb = _files(tmp_path)
    code = (
        "import sys; from inspector.diffing import diff; "
        f"r = diff({str(pa)!r}, {str(pb)!r}, values=False); r.to_json(); "
        "print(sorted(m for m in ('torch', 'numpy') if m in sys.modules))"
    )
    out = python("-c", code)
    assert out.stdout.strip() == "[]", out.stderr
