"""dtype decoding and encoding in the C++ core, bit-exact against torch's own conversions.

Decoders are checked over every bit pattern of the 16- and 8-bit floats; encoders on random values
at many scales, exact ties between neighbouring representable values, overflow, subnormals, signed
zeros, infinities and NaN.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from inspector import _core as core

NARROW = {
    "float16": (torch.float16, np.uint16),
    "bfloat16": (torch.bfloat16, np.uint16),
    "float8_e4m3fn": (torch.float8_e4m3fn, np.uint8),
    "float8_e5m2": (torch.float8_e5m2, np.uint8),
    "float8_e4m3fnuz": (torch.float8_e4m3fnuz, np.uint8),
    "float8_e5m2fnuz": (torch.float8_e5m2fnuz, np.uint8),
    "float8_e8m0fnu": (torch.float8_e8m0fnu, np.uint8),
}
INTS = {
    "int8": torch.int8,
    "uint8": torch.uint8,
    "int16": torch.int16,
    "int32": torch.int32,
    "int64": torch.int64,
    "bool": torch.bool,
}
WIDE = {
    "float32": (torch.float32, np.float32, np.uint32),
    "float64": (torch.float64, np.float64, np.uint64),
}


def cast(arr: np.ndarray, src: str, dst: str, itemsize: int) -> bytes:
    """Our conversion of a contiguous 1-D array through copy_cast."""
    out = bytearray(arr.size * itemsize)
    core.copy_cast(arr, src, (arr.size,), (1,), 0, out, 0, dst)
    return bytes(out)


def torch_bits(t: torch.Tensor) -> bytes:
    return t.contiguous().view(torch.uint8).numpy().tobytes()


def all_patterns(raw_dtype: type) -> np.ndarray:
    return np.arange(np.iinfo(raw_dtype).max + 1, dtype=np.uint64).astype(raw_dtype)


@pytest.mark.parametrize("name", NARROW)
@pytest.mark.parametrize("wide", WIDE)
def test_decode_every_bit_pattern(name: str, wide: str) -> None:
    tdt, raw_dtype = NARROW[name]
    raw = all_patterns(raw_dtype)
    wdt, _, _ = WIDE[wide]
    ref = torch.from_numpy(raw.copy()).view(tdt).to(wdt)
    assert cast(raw, name, wide, ref.element_size()) == torch_bits(ref)


def edge_values(name: str) -> np.ndarray:
    """Every representable value, the midpoints between neighbours (ties), just beside them,
    overflow, subnormals, signed zeros, infinities and NaN, as float64."""
    tdt, raw_dtype = NARROW[name]
    decoded = torch.from_numpy(all_patterns(raw_dtype)).view(tdt).double().numpy()
    finite = np.unique(decoded[np.isfinite(decoded)])
    mids = (finite[:-1] + finite[1:]) / 2
    nudge = np.abs(mids) * 2.0**-20
    rng = np.random.default_rng(0)
    random = rng.standard_normal(4000) * 10.0 ** rng.integers(-12, 12, 4000)
    special = [
        0.0,
        -0.0,
        np.inf,
        -np.inf,
        np.nan,
        -np.nan,
        1e-45,
        -1e-45,
        1e-40,
        3e38,
        -3e38,
        7e4,
        6e4,
    ]
    big = finite.max() * np.array([1.0, 1.01, 1.06, 1.125, 1.5, 2.0, 1e3])
    return np.concatenate([finite, mids, mids + nudge, mids - nudge, random, special, big, -big])


@pytest.mark.parametrize("name", NARROW)
@pytest.mark.parametrize("wide", WIDE)
def test_encode_matches_torch(name: str, wide: str) -> None:
    tdt, _ = NARROW[name]
    _wdt, np_dtype, _ = WIDE[wide]
    with np.errstate(over="ignore"):  # values beyond float32 become inf, also tested
        values = edge_values(name).astype(np_dtype)
    ref = torch.from_numpy(values).to(tdt)
    ours = cast(values, wide, name, ref.element_size())
    assert ours == torch_bits(ref)


@pytest.mark.parametrize("src", INTS)
@pytest.mark.parametrize("dst", [*NARROW, "float32", "float64"])
def test_int_to_float_matches_torch(src: str, dst: str) -> None:
    rng = np.random.default_rng(1)
    t = torch.from_numpy(rng.integers(-(2**62), 2**62, 2000)).to(INTS[src])
    t = torch.cat([t, torch.tensor([0, 1, 2**24 + 1, 2**53 + 1, 65519, 65520]).to(INTS[src])])
    tdt = NARROW[dst][0] if dst in NARROW else WIDE[dst][0]
    ref = t.to(tdt)
    arr = t.view(torch.uint8).numpy() if src == "bool" else t.numpy()
    assert cast(arr, src, dst, ref.element_size()) == torch_bits(ref)


@pytest.mark.parametrize("src", INTS)
@pytest.mark.parametrize("dst", INTS)
def test_int_to_int_is_modular_like_torch(src: str, dst: str) -> None:
    rng = np.random.default_rng(2)
    t = torch.from_numpy(rng.integers(-(2**63), 2**63 - 1, 2000, dtype=np.int64)).to(INTS[src])
    ref = t.to(INTS[dst])
    arr = t.view(torch.uint8).numpy() if src == "bool" else t.numpy()
    assert cast(arr, src, dst, ref.element_size()) == torch_bits(ref)


@pytest.mark.parametrize("src", ["float32", "bfloat16", "float64"])
def test_float_to_bool_like_torch(src: str) -> None:
    t = torch.tensor([0.0, -0.0, 1.0, -2.5, float("inf"), float("nan"), 1e-30]).to(
        NARROW[src][0] if src in NARROW else WIDE[src][0]
    )
    arr = t.view(torch.int16).numpy() if src == "bfloat16" else t.numpy()
    assert cast(arr, src, "bool", 1) == torch_bits(t.to(torch.bool))


@pytest.mark.parametrize("dst", ["int32", "uint8", "int64"])
def test_float_to_int_is_refused(dst: str) -> None:
    with pytest.raises(ValueError, match="not supported"):
        cast(np.zeros(3, np.float32), "float32", dst, 8)


def test_unknown_dtype_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="unsupported dtype 'complex64'"):
        cast(np.zeros(3, np.float32), "complex64", "float32", 4)
