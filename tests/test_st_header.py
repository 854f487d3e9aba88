"""The C++ safetensors header parser against the pure-Python reference (tests/st_reference.py).

Both must accept the same headers with the same columns, and refuse the same headers with the
same error class naming the same tensor: on the shared bad-input cases, on generated headers,
on mutations of valid ones, and on JSON string escapes.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import pytest
import st_reference
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors import torch as safetensors_torch
from safetensors_cases import CASES

import inspector
from inspector import errors
from inspector.formats import safetensors as reader
from inspector.signature import signature

Outcome = tuple[str, Any]  # ("ok", columns) or (error class name, key)


def core_outcome(file: bytes, file_size: int) -> Outcome:
    try:
        h = reader.parse_header("m.safetensors", file, file_size)
    except errors.CheckpointError as e:
        return type(e).__name__, e.key
    entries = [
        (n, d, tuple(s), b, e)
        for n, s, d, b, e in zip(
            h["names"], h["shapes"], h["dtypes"], h["begins"], h["ends"], strict=True
        )
    ]
    return "ok", (entries, h["metadata"])


def reference_outcome(file: bytes, file_size: int) -> Outcome:
    try:
        entries, metadata = st_reference.parse("m.safetensors", file, file_size)
    except errors.CheckpointError as e:
        return type(e).__name__, e.key
    return "ok", ([tuple(e) for e in entries], metadata)


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def assert_same(text: bytes, data_size: int) -> Outcome:
    file = struct.pack("<Q", len(text)) + text
    size = len(file) + data_size
    got, want = core_outcome(file, size), reference_outcome(file, size)
    assert got == want, text[:300]
    return got


# The shared bad-input cases, through every way in -----------------------------------------------


def _reference_open(path: Path) -> None:
    data = path.read_bytes()
    st_reference.parse(str(path), data, len(data))


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
@pytest.mark.parametrize("way", ["open", "signature", "reference"])
def test_bad_input_cases_same_error_in_every_parser(tmp_path, case, way):
    path = case.make(tmp_path)
    read = {"open": inspector.open, "signature": signature, "reference": _reference_open}[way]
    with pytest.raises(errors.CheckpointError) as info:
        read(path)
    assert type(info.value) is case.error, f"{type(info.value).__name__}: {info.value}"
    assert str(path) in str(info.value)
    if case.key is not None:
        assert info.value.key == case.key


# Files written by safetensors itself --------------------------------------------------------------


def test_columns_match_safetensors_own_reader(tmp_path):
    tensors = {
        "z.first": torch.zeros(3, 2, dtype=torch.bfloat16),
        "a.second": torch.arange(5, dtype=torch.int64),
        "empty": torch.zeros(0, 4),
        "scalar": torch.tensor(1.5, dtype=torch.float64),
        "é.ü\n": torch.ones(2, dtype=torch.uint8),
    }
    path = tmp_path / "m.safetensors"
    safetensors_torch.save_file(tensors, str(path), metadata={"format": "pt", "ü": "x"})
    h = reader.read_header(path)
    loaded = safetensors_torch.load_file(str(path))
    assert sorted(h["names"]) == sorted(loaded)
    for name, shape, dtype in zip(h["names"], h["shapes"], h["dtypes"], strict=True):
        assert shape == tuple(loaded[name].shape)
        assert dtype == str(loaded[name].dtype).removeprefix("torch.")
    assert h["metadata"] == {"format": "pt", "ü": "x"}
    data = path.read_bytes()
    assert reference_outcome(data, len(data))[1][0] == [
        (n, d, s, b, e)
        for n, s, d, b, e in zip(
            h["names"], h["shapes"], h["dtypes"], h["begins"], h["ends"], strict=True
        )
    ]
    ckpt = inspector.open(path)
    assert list(ckpt) == h["names"]
    with path.open("rb") as f:  # byte ranges point at the right bytes
        f.seek(ckpt["a.second"].byte_range[0])
        assert f.read(40) == loaded["a.second"].numpy().tobytes()


# Generated headers -------------------------------------------------------------------------------

DTYPES = ["F32", "BF16", "I64", "U8", "BOOL", "F8_E4M3", "F31", "f32", ""]
ITEMSIZE = {"F32": 4, "BF16": 2, "I64": 8, "U8": 1, "BOOL": 1, "F8_E4M3": 1}
names = st.text(alphabet='ab.0é"\\\n\t/€😀', max_size=6)
ints = st.one_of(
    st.integers(0, 4),
    st.integers(-3, 3),
    st.sampled_from([2**63, 2**64 - 1, 2**64, 2**70, -(2**64)]),
)
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-5, 2**65), st.floats(allow_nan=True), names),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(names, inner, max_size=3)),
    max_leaves=6,
)


@st.composite
def headers(draw: st.DrawFn) -> tuple[list[tuple[str, Any]], int]:
    """Mostly valid headers (tiling offsets), with faults drawn in at random; the data size."""
    n = draw(st.integers(0, 5))
    pairs: list[tuple[str, Any]] = []
    offset = 0
    for _ in range(n):
        dtype = draw(
            st.sampled_from(DTYPES[:6]) if draw(st.booleans()) else st.sampled_from(DTYPES)
        )
        shape = draw(st.lists(st.integers(0, 3), max_size=3))
        nbytes = ITEMSIZE.get(dtype, 1)
        for s in shape:
            nbytes *= s
        entry: Any = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
        fault = draw(st.integers(0, 12))
        if fault == 1:
            entry["shape"] = draw(st.lists(ints, max_size=3))
        elif fault == 2:
            entry["data_offsets"] = draw(st.lists(ints, max_size=3))
        elif fault == 3:
            entry.pop(draw(st.sampled_from(sorted(entry))))
        elif fault == 4:
            entry[draw(st.sampled_from(["dtype", "shape", "data_offsets", "extra"]))] = draw(
                json_values
            )
        elif fault == 5:
            entry = draw(json_values)
        name = draw(names)
        pairs.append((name if draw(st.integers(0, 9)) == 0 else f"{name}#{len(pairs)}", entry))
    if draw(st.booleans()):
        pairs.insert(
            draw(st.integers(0, len(pairs))),
            (
                "__metadata__",
                draw(st.one_of(st.dictionaries(names, names, max_size=3), json_values)),
            ),
        )
    if draw(st.integers(0, 4)) == 0:
        draw(st.randoms()).shuffle(pairs)
    data_size = offset + draw(st.sampled_from([0, 0, 0, 1, -1]))
    return pairs, max(data_size, 0)


def dump(pairs: list[tuple[str, Any]], ascii_only: bool, indent: int | None) -> bytes:
    """A JSON object from pairs (duplicates kept), as json.dumps writes it."""
    enc = json.JSONEncoder(ensure_ascii=ascii_only, indent=indent, allow_nan=True)
    members = ", ".join(f"{enc.encode(k)}: {enc.encode(v)}" for k, v in pairs)
    return ("{" + members + "}").encode()


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(headers(), st.booleans(), st.sampled_from([None, 1]))
def test_generated_headers_agree(h, ascii_only, indent):
    pairs, data_size = h
    assert_same(dump(pairs, ascii_only, indent), data_size)


JSON_BITS = [*'{}[]",: \t\n\\u0123456789abcdefABCDEF.eE+-ntrfNaIy', "\\ud800", "\\udc00", "é"]


@settings(max_examples=600, deadline=None)
@given(
    headers(),
    st.lists(
        st.tuples(st.integers(0, 10**6), st.integers(0, 2), st.sampled_from(JSON_BITS)),
        min_size=1,
        max_size=3,
    ),
)
def test_mutated_headers_agree(h, edits):
    """Valid headers with a few bytes inserted, deleted or replaced: mostly syntax errors."""
    pairs, data_size = h
    text = dump(pairs, False, None).decode()
    for at, op, bit in edits:
        i = at % (len(text) + 1)
        if op == 0:
            text = text[:i] + bit + text[i:]
        elif op == 1:
            text = text[:i] + text[i + 1 :]
        else:
            text = text[:i] + bit + text[i + 1 :]
    assert_same(text.encode("utf-8", "surrogatepass"), data_size)


ESCAPES = [
    "a", "é", "😀", "\\u0041", "\\ud83d\\ude00", "\\uD83D\\uDE00", "\\ud800", "\\udc00",
    "\\ud800\\u0041", "\\ud800\\ud800", "\\udbff\\udfff", "\\n", '\\"', "\\\\", "\\/", "\\b",
    "\\f", "\\r", "\\t", "\\u0000", "\\x", "\\u12G4", "\\u12", "\x01", "\t", "\x7f", "\\",
]  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(ESCAPES), max_size=5), st.booleans())
def test_string_escapes_decode_like_python_json(pieces, in_metadata):
    raw = "".join(pieces)
    if in_metadata:
        text = '{"__metadata__": {"' + raw + '": "' + raw + '"}}'
        out = assert_same(text.encode("utf-8", "surrogatepass"), 0)
    else:
        text = '{"' + raw + '": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]}}'
        out = assert_same(text.encode("utf-8", "surrogatepass"), 1)
    strict = all(p not in ("\\x", "\\u12G4", "\\u12", "\x01", "\t", "\\") for p in pieces)
    if strict and not in_metadata:  # a name must be valid Unicode: no lone surrogate
        strict = _encodable(json.loads('"' + raw + '"'))
    if strict:  # only well-formed escapes: accepted, with json's decoding of the name
        assert out[0] == "ok"


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [
                "0",
                "-0",
                "1",
                "-1",
                "1.0",
                "1e2",
                "1E+2",
                "-1e-2",
                "01",
                "1.",
                ".5",
                "-",
                "NaN",
                "Infinity",
                "-Infinity",
                "nan",
                "+1",
                "1_0",
                "9" * 4300,
                "9" * 4301,
                "true",
                "null",
                "[]",
                "{}",
            ]
        ),
        max_size=3,
    )
)
def test_numbers_and_literals_like_python_json(tokens):
    shape = "[" + ", ".join(tokens) + "]"
    text = (
        '{"t": {"dtype": "U8", "shape": ' + shape + ', "data_offsets": [0, 0], "x": ' + shape + "}}"
    )
    assert_same(text.encode(), 0)


def test_ties_on_offsets_keep_header_order_and_empty_headers():
    text = json.dumps(
        {
            "b": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]},
            "a": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]},
            "c": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
        }
    ).encode()
    assert [e[0] for e in assert_same(text, 4)[1][0]] == ["b", "a", "c"]
    assert assert_same(b"{}", 0) == ("ok", ([], {}))
    assert assert_same(b'{"__metadata__": null}\n ', 0) == ("ok", ([], {}))
    # the format says the header begins with "{": leading whitespace is refused (issue 11)
    assert assert_same(b'  {"__metadata__": null}\n ', 0) == ("HeaderError", None)


def test_nesting_limit_is_128():
    ok = (
        '{"a": {"dtype": "U8", "shape": [], "data_offsets": [0, 1], "x": '
        + "[" * 126
        + "]" * 126
        + "}}"
    )
    assert assert_same(ok.encode(), 1)[0] == "ok"
    deep = ok.replace("[" * 126, "[" * 127).replace("]" * 126, "]" * 127)
    assert assert_same(deep.encode(), 1) == ("HeaderError", None)


def test_signature_of_sharded_checkpoint_matches_open(tmp_path):
    a = {f"layers.{i}.w": torch.ones(i + 1) for i in range(4)}
    safetensors_torch.save_file({k: a[k] for k in list(a)[:2]}, tmp_path / "s1.safetensors")
    safetensors_torch.save_file({k: a[k] for k in list(a)[2:]}, tmp_path / "s2.safetensors")
    weight_map = {"layers.3.w": "s2.safetensors", "layers.0.w": "s1.safetensors"}
    index = tmp_path / "model.safetensors.index.json"
    index.write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    sig = signature(tmp_path)
    ckpt = inspector.open(tmp_path)
    assert sig.names == list(ckpt)  # listed first, then the unlisted ones, as open() orders them
    assert sig.shapes == [t.shape for t in ckpt.values()]
    assert sig.dtypes == ["float32"] * 4


def test_messages_may_quote_lone_surrogates():
    text = b'{"\\udc00x": {"dtype": "\\ud800", "shape": [], "data_offsets": [0, 1]}}'
    assert assert_same(text, 1) == ("DtypeError", "\udc00x")
    with pytest.raises(errors.DtypeError, match="unknown dtype"):
        reader.parse_header("m", struct.pack("<Q", len(text)) + text, 8 + len(text) + 1)


@pytest.mark.parametrize("shift", range(4))
def test_a_long_value_quoted_in_an_error_is_cut_on_a_character_boundary(shift: int) -> None:
    # the error quotes the first 80 bytes of the faulty value; a cut inside "€" (3 bytes) was a
    # UnicodeDecodeError from the core instead of the header's own error
    value = json.dumps({"x" * shift + "€" * 40: None})
    text = '{"w": {"dtype": ' + value + ', "shape": [], "data_offsets": [0, 4]}}'
    file = struct.pack("<Q", len(text.encode())) + text.encode()
    with pytest.raises(errors.CheckpointError):
        reader.parse_header("m.safetensors", file, len(file) + 4)
