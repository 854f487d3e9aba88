"""One table of element types, and the names each format uses for them.

Canonical names follow torch (`float32`, `bfloat16`, `float8_e4m3fn`); they are the names printed,
stored in plans and hashed (see docs/hash-spec.md), so they never change once released.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # numpy is only needed to build arrays, not to list a checkpoint
    import numpy as np


@dataclass(frozen=True)
class DType:
    name: str  # canonical (torch) name
    itemsize: int
    kind: str  # "f" float, "i" signed int, "u" unsigned int, "b" bool, "c" complex
    numpy: str | None  # numpy dtype string with the same bytes, or None when numpy has none
    safetensors: str | None
    storage: str | None  # legacy torch typed-storage class name
    # Position in the reference's Dtype enum (safetensors/src/tensor.rs): files list tensors
    # by it, widest first. None when safetensors has no code for the type.
    safetensors_rank: int | None

    @property
    def is_float(self) -> bool:
        return self.kind in "fc"


_TABLE = [
    # name, itemsize, kind, numpy, safetensors, torch storage class, safetensors enum rank
    ("float64", 8, "f", "<f8", "F64", "DoubleStorage", 17),
    ("float32", 4, "f", "<f4", "F32", "FloatStorage", 15),
    ("float16", 2, "f", "<f2", "F16", "HalfStorage", 11),
    ("bfloat16", 2, "f", None, "BF16", "BFloat16Storage", 12),
    ("float8_e4m3fn", 1, "f", None, "F8_E4M3", "Float8_e4m3fnStorage", 7),
    ("float8_e5m2", 1, "f", None, "F8_E5M2", "Float8_e5m2Storage", 6),
    ("float8_e4m3fnuz", 1, "f", None, None, "Float8_e4m3fnuzStorage", None),
    ("float8_e5m2fnuz", 1, "f", None, None, "Float8_e5m2fnuzStorage", None),
    ("float8_e8m0fnu", 1, "f", None, "F8_E8M0", "Float8_e8m0fnuStorage", 8),
    ("int64", 8, "i", "<i8", "I64", "LongStorage", 18),
    ("int32", 4, "i", "<i4", "I32", "IntStorage", 13),
    ("int16", 2, "i", "<i2", "I16", "ShortStorage", 9),
    ("int8", 1, "i", "|i1", "I8", "CharStorage", 5),
    ("uint64", 8, "u", "<u8", "U64", "UInt64Storage", 19),
    ("uint32", 4, "u", "<u4", "U32", "UInt32Storage", 14),
    ("uint16", 2, "u", "<u2", "U16", "UInt16Storage", 10),
    ("uint8", 1, "u", "|u1", "U8", "ByteStorage", 4),
    ("bool", 1, "b", "|b1", "BOOL", "BoolStorage", 0),
    ("complex32", 4, "c", None, None, "ComplexHalfStorage", None),
    ("complex64", 8, "c", "<c8", "C64", "ComplexFloatStorage", 16),
    ("complex128", 16, "c", "<c16", None, "ComplexDoubleStorage", None),
    ("qint8", 1, "i", None, None, "QInt8Storage", None),
    ("quint8", 1, "u", None, None, "QUInt8Storage", None),
    ("qint32", 4, "i", None, None, "QInt32Storage", None),
]

DTYPES: dict[str, DType] = {row[0]: DType(*row) for row in _TABLE}
BY_SAFETENSORS: dict[str, DType] = {d.safetensors: d for d in DTYPES.values() if d.safetensors}
BY_STORAGE: dict[str, DType] = {d.storage: d for d in DTYPES.values() if d.storage}

# torch attribute names that pickles (and users) use for the same types.
ALIASES = {
    "float": "float32",
    "double": "float64",
    "half": "float16",
    "long": "int64",
    "int": "int32",
    "short": "int16",
    "cfloat": "complex64",
    "cdouble": "complex128",
    "chalf": "complex32",
}


def get(name: str) -> DType:
    """The DType for a canonical name or torch alias; KeyError when unknown."""
    return DTYPES[ALIASES.get(name, name)]


def from_numpy(dtype: np.dtype) -> DType:
    """The DType for a numpy dtype (byte order ignored: callers normalise to little-endian)."""
    key = dtype.newbyteorder("<").str if dtype.itemsize > 1 else dtype.str
    for d in DTYPES.values():
        if d.numpy == key:
            return d
    raise KeyError(str(dtype))


def numpy_view_dtype(d: DType) -> np.dtype:
    """A numpy dtype with the same bytes: the real one, or raw unsigned ints (bf16, fp8)."""
    import numpy as np

    if d.numpy is not None:
        return np.dtype(d.numpy)
    return (
        np.dtype(f"<u{d.itemsize}") if d.itemsize in (1, 2, 4, 8) else np.dtype(("V", d.itemsize))
    )
