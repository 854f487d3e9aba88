"""Allow-listed builders for Python and numpy globals: each makes plain data from plain data.

A builder receives the pickled arguments (already data) and returns data; it never imports the
module the global names. numpy arrays stay records (class, shape, dtype and raw bytes in their
state); numpy scalars of plain numeric types become Python numbers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported only when a pickle holds a numpy scalar: listing stays light
    import numpy as np

from ..model import Record
from .pickle_build import AttrDict, Builder, BuildError

# Text encodings `_codecs.encode` may apply (protocols 0-2 pickle bytes as latin-1 text).
_TEXT_ENCODINGS = frozenset({"latin1", "latin-1", "iso-8859-1", "utf-8", "utf8", "ascii"})

# numpy dtype codes that are plain numbers (no objects, no structured or datetime types).
_NUMPY_CODES = frozenset(
    {"b1", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "f2", "f4", "f8", "c8", "c16"}
)


def _pairs(items: Any) -> list[tuple[Any, Any]]:
    if isinstance(items, dict):
        return list(items.items())
    pairs = []
    for pair in items:
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise BuildError("OrderedDict items are not key/value pairs")
        pairs.append((pair[0], pair[1]))
    return pairs


def ordered_dict(items: Any = ()) -> AttrDict:
    return AttrDict(_pairs(items))


def default_dict(factory: Any = None, items: Any = ()) -> AttrDict:
    d = AttrDict(_pairs(items))
    d.attrs["default_factory"] = factory
    return d


def _iterable(value: Any) -> Any:
    if not isinstance(value, (list, tuple, set, frozenset, dict, str, bytes)):
        raise BuildError(f"expected a collection, got {type(value).__name__}")
    return value


def make_set(items: Any = ()) -> set[Any]:
    return set(_iterable(items))


def make_frozenset(items: Any = ()) -> frozenset[Any]:
    return frozenset(_iterable(items))


def codecs_encode(text: Any, encoding: str = "utf-8") -> bytes:
    if not (isinstance(text, str) and isinstance(encoding, str)) or (
        encoding.lower() not in _TEXT_ENCODINGS
    ):
        raise BuildError(f"_codecs.encode with {encoding!r} is not a text encoding")
    return text.encode(encoding)


def make_bytes(*args: Any) -> bytes:
    if not args:
        return b""
    if len(args) == 1 and isinstance(args[0], bytes):
        return args[0]
    if len(args) == 2 and isinstance(args[0], str):
        return codecs_encode(args[0], args[1])
    raise BuildError("bytes() arguments are not bytes or text")


def make_bytearray(*args: Any) -> bytearray:
    return bytearray(make_bytes(*args))


def _numbers(args: tuple[Any, ...], kinds: tuple[type, ...]) -> tuple[Any, ...]:
    for a in args:
        if not isinstance(a, kinds):
            raise BuildError(f"expected numbers, got {type(a).__name__}")
    return args


def make_slice(*args: Any) -> slice:
    return slice(*_numbers(args, (int, type(None))))


def make_range(*args: Any) -> range:
    return range(*_numbers(args, (int,)))


def make_complex(real: Any = 0.0, imag: Any = 0.0) -> complex:
    return complex(*_numbers((real, imag), (int, float)))


def reconstructor(cls: Any, base: Any, state: Any = None) -> Record:
    """copyreg._reconstructor (protocols 0-1 objects): an object record; BUILD adds the state."""
    if not isinstance(cls, Record):
        raise BuildError("copyreg._reconstructor without a class")
    return Record(cls.cls, kind="object", args=() if state is None else (state,))


def numpy_reconstruct(cls: Any, shape: Any = (0,), typecode: Any = b"b") -> Record:
    """numpy's ndarray reconstruction: a record whose state BUILD fills with the raw array."""
    name = cls.cls if isinstance(cls, Record) else "numpy.ndarray"
    return Record(name, kind="object")


def numpy_frombuffer(buf: Any, dtype: Any, shape: Any, order: Any = "C") -> Record:
    """numpy's protocol-5 array form: the same record as the `_reconstruct` + BUILD form."""
    state = (1, shape, dtype, order == "F", bytes(buf) if isinstance(buf, bytearray) else buf)
    return Record("numpy.ndarray", kind="object", state=state)


def numpy_dtype(code: Any, align: Any = False, copy: Any = True) -> Record:
    return Record("numpy.dtype", kind="object", args=(code,))


def numpy_scalar(dtype: Any, raw: Any = None) -> Any:
    """A numpy scalar of a plain numeric type becomes the Python number; anything else a record."""
    np_dtype = _plain_numpy_dtype(dtype)
    if np_dtype is None or not isinstance(raw, (bytes, bytearray)) or len(raw) != np_dtype.itemsize:
        return Record("numpy.scalar", kind="object", args=(dtype, raw))
    import numpy as np

    return np.frombuffer(bytes(raw), dtype=np_dtype)[0].item()


def _plain_numpy_dtype(dtype: Any) -> np.dtype | None:
    if not isinstance(dtype, Record) or dtype.cls != "numpy.dtype" or not dtype.args:
        return None
    code = dtype.args[0]
    if code not in _NUMPY_CODES:
        return None
    state = dtype.state
    order = state[1] if isinstance(state, tuple) and len(state) > 1 else "<"
    if order not in ("<", ">", "|", "="):
        return None
    import numpy as np

    return np.dtype(("<" if order in ("|", "=") else order) + code)


BUILTIN_BUILDERS: dict[str, Builder] = {
    "collections.OrderedDict": ordered_dict,
    "collections.defaultdict": default_dict,
    "collections.Counter": ordered_dict,
    "builtins.set": make_set,
    "builtins.frozenset": make_frozenset,
    "builtins.bytes": make_bytes,
    "builtins.bytearray": make_bytearray,
    "builtins.slice": make_slice,
    "builtins.range": make_range,
    "builtins.complex": make_complex,
    "_codecs.encode": codecs_encode,
    "copyreg._reconstructor": reconstructor,
    "numpy.core.multiarray._reconstruct": numpy_reconstruct,
    "numpy._core.multiarray._reconstruct": numpy_reconstruct,
    "numpy.core.multiarray.scalar": numpy_scalar,
    "numpy._core.multiarray.scalar": numpy_scalar,
    "numpy.core.numeric._frombuffer": numpy_frombuffer,
    "numpy._core.numeric._frombuffer": numpy_frombuffer,
    "numpy.dtype": numpy_dtype,
}
