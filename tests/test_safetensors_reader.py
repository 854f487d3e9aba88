"""safetensors files written by the real library, read back and checked against safe_open."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors import safe_open
from safetensors.torch import save_file
from subproc import python

import inspector

TORCH_DTYPES = [
    torch.float32,
    torch.float16,
    torch.bfloat16,
    torch.float64,
    torch.int64,
    torch.int32,
    torch.int16,
    torch.int8,
    torch.uint8,
    torch.bool,
    torch.float8_e4m3fn,
    torch.float8_e5m2,
]


def _tensors() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    out = {}
    for i, dt in enumerate(TORCH_DTYPES):
        t = torch.randn(3, i + 1, generator=g) * 10
        out[f"layers.{i}.weight"] = t.to(dt)
    out["scalar"] = torch.tensor(3.5)
    out["empty"] = torch.zeros(0, 4)
    return out


def _raw(t: torch.Tensor) -> bytes:
    return t.contiguous().view(-1).view(torch.uint8).numpy().tobytes()


def test_matches_safe_open_tensor_by_tensor(tmp_path):
    path = tmp_path / "model.safetensors"
    tensors = _tensors()
    save_file(tensors, str(path), metadata={"format": "pt", "note": "x"})
    ckpt = inspector.open(path)
    assert ckpt.format == "safetensors"
    assert ckpt.metadata["safetensors_metadata"] == {"format": "pt", "note": "x"}
    with safe_open(str(path), framework="pt") as f:
        assert sorted(ckpt) == sorted(f.keys())
        for name in sorted(f.keys()):
            ref = f.get_tensor(name)
            info = ckpt[name]
            assert info.name == name
            assert info.dtype == str(ref.dtype).removeprefix("torch.")
            assert info.shape == tuple(ref.shape)
            assert info.is_contiguous
            assert bytes(ckpt.storage_bytes(info.storage)) == _raw(ref)
            start, end = info.byte_range  # type: ignore[misc]
            assert end - start == ref.numel() * ref.element_size()
            assert path.read_bytes()[start:end] == _raw(ref)


def test_array_view_equals_numpy(tmp_path):
    path = tmp_path / "m.safetensors"
    a = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    from safetensors.numpy import save_file as np_save

    np_save({"a.b.c": a}, str(path))
    with inspector.open(path) as ckpt:
        np.testing.assert_array_equal(ckpt.array("a.b.c"), a)
        assert ckpt["a.b.c"].storage.key == "a.b.c"  # its own storage, keyed by its name


def test_each_tensor_has_its_own_storage(tmp_path):
    path = tmp_path / "m.safetensors"
    save_file({"a": torch.ones(2), "b": torch.zeros(3)}, str(path))
    ckpt = inspector.open(path)
    assert ckpt.tied_groups() == []
    assert ckpt.root == ()


def test_sniffs_without_extension_and_reads_header_order_independent(tmp_path):
    # Hand-built: entries listed out of offset order in the JSON; the data tiles the section.
    header = {
        "b": {"dtype": "I32", "shape": [1], "data_offsets": [4, 8]},
        "a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
    }
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)  # the writer pads with spaces; allowed
    body = struct.pack("<f", 1.5) + struct.pack("<i", -7)
    path = tmp_path / "weights.data"
    path.write_bytes(struct.pack("<Q", len(text)) + text + body)
    ckpt = inspector.open(path)
    assert ckpt.format == "safetensors"
    assert list(ckpt) == ["a", "b"]
    assert ckpt.array("a")[0] == 1.5
    assert ckpt.array("b")[0] == -7


def test_reader_does_not_import_torch(tmp_path):

    path = tmp_path / "m.safetensors"
    save_file({"a": torch.ones(2)}, str(path))
    code = (
        "import sys, inspector; c = inspector.open(sys.argv[1]); "
        "assert list(c) == ['a']; assert 'torch' not in sys.modules"
    )
    python("-c", code, path, check=True)


@pytest.mark.parametrize("n", [0, 1, 5])
def test_empty_and_small_files(tmp_path, n):
    path = tmp_path / "m.safetensors"
    save_file({f"t{i}": torch.full((i,), float(i)) for i in range(n)}, str(path))
    ckpt = inspector.open(path)
    assert len(ckpt) == n


# -- the tensors made in the core (parse_safetensors_header's `tensors`) ---------------------------
def _header_file(path, entries) -> None:
    """A safetensors file of `entries` [(name, dtype, shape)], data laid out in order."""
    header, at = {}, 0
    for name, dtype, shape in entries:
        size = {"F32": 4, "BF16": 2, "I64": 8}[dtype] * int(np.prod(shape, dtype=object))
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [at, at + size]}
        at += size
    blob = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(blob)) + blob + bytes(at))


_ENTRY = st.tuples(
    st.text(st.characters(blacklist_categories=["Cs"]), min_size=1, max_size=8),
    st.sampled_from(["F32", "BF16", "I64"]),
    st.lists(st.integers(0, 5), max_size=4).map(tuple),
)


@settings(max_examples=150, deadline=None)
@given(entries=st.lists(_ENTRY, max_size=12, unique_by=lambda e: e[0]))
def test_tensors_made_in_the_core_are_the_readers(entries) -> None:
    """read_tensors (objects made in the core) against _tensor_info over the same columns."""
    import tempfile
    from pathlib import Path

    from inspector.formats.safetensors import _tensor_info, read_header, read_tensors
    from inspector.model import ByteSource, Storage, TensorInfo

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.safetensors"
        _header_file(path, entries)
        got, _ = read_tensors(path)
        h = read_header(path)
        abspath = str(path.resolve())
        made = read_header(path, tensors=(TensorInfo, Storage, ByteSource, abspath))
        want = {
            n: _tensor_info(abspath, n, d, s, h["data_start"] + b, e - b)
            for n, s, d, b, e in zip(h["names"], h["shapes"], h["dtypes"], h["begins"], h["ends"],
                                     strict=True)
        }
    assert list(got) == list(want)
    assert got == want
    if "tensors" in made:  # never the offset columns beside the objects (8 MB at 100k)
        assert "begins" not in made
        assert "ends" not in made
    assert all(type(t) is type(want[n]) for n, t in got.items())


def test_strides_past_64_bits_are_made_in_python(tmp_path) -> None:
    from inspector.formats.safetensors import read_header, read_tensors
    from inspector.model import ByteSource, Storage, TensorInfo

    path = tmp_path / "m.safetensors"
    _header_file(path, [("wide", "F32", (0, 2**40, 2**40)), ("w", "F32", (2, 3))])
    spec = (TensorInfo, Storage, ByteSource, str(path))
    declined = read_header(path, tensors=spec)
    assert "tensors" not in declined  # the core declines, and gives the offsets to make them
    assert declined["begins"] == read_header(path)["begins"]
    tensors, _ = read_tensors(path)
    assert tensors["wide"].strides == (2**80, 2**40, 1)
    assert tensors["w"].strides == (3, 1)
