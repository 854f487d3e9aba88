# Type stub for the compiled core (csrc/bindings/). One section per register_*.cpp.
from collections.abc import Callable, Sequence
from typing import Any, TypedDict, TypeVar

_T = TypeVar("_T")

# Any object exposing a C-contiguous buffer (bytes, memoryview, mmap, numpy array). Not
# collections.abc.Buffer: numpy arrays only implement it in the stubs for Python >= 3.12.
Buffer = Any

# ---- module (csrc/bindings/module.cpp) ----------------------------------------------------------

has_cuda: bool

# ---- errors (csrc/bindings/errors.cpp; mapped by inspector._native.core_error) -----------------

class CoreError(ValueError):
    """Bad input refused by the core, with its parts as attributes."""

    kind: str  # header, offset, dtype, shape, duplicate_key, truncated, io, or value
    problem: str
    where: str | None
    key: str | None
    job: int | None

class MappedFileFault(OSError):
    """A mapped file was truncated while the core read it (a SIGBUS, caught)."""

# ---- hashing (csrc/bindings/register_hash.cpp, docs/hash-spec.md) -------------------------------

HASH_VERSION: str
HASH_CHUNK: int
xxh3_kernel: str  # long-input kernel in use: "avx512", "avx2", "sse2" or "scalar"

def xxh3_128(data: Buffer, kernel: str = "auto") -> bytes: ...
def xxh3_64(data: Buffer) -> int: ...

# (buffer, dtype, itemsize, shape, strides_in_elements, offset_in_elements, byteswap)
HashJob = tuple[Buffer, str, int, tuple[int, ...], tuple[int, ...], int, bool]

def hash_tensors(
    jobs: Sequence[HashJob],
    threads: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> list[bytes]: ...
def hash_device(ptr: int, nbytes: int, dtype: str, shape: Sequence[int], device: int) -> bytes: ...

class TreeHasher:
    def __init__(self, dtype: str, shape: Sequence[int], itemsize: int) -> None: ...
    def update(self, data: Buffer) -> None: ...
    def finish(self) -> bytes: ...
    @property
    def expected_bytes(self) -> int: ...

# ---- numeric (csrc/bindings/register_numeric.cpp) ------------------------------------------------


class CompareResult(TypedDict):
    numel: int
    max_abs_diff: float
    mean_abs_diff: float
    rel_l2: float
    cosine: float
    n_diff: int
    n_not_close: int
    allclose: bool
    nan_a: int
    nan_b: int
    inf_a: int
    inf_b: int

class StatsResult(TypedDict):
    numel: int
    finite: int
    min: float | None
    max: float | None
    mean: float | None
    std: float | None
    zeros: int
    nan: int
    inf: int
    hist: list[int]
    hist_edges: list[float]

class ShapeDiffResult(TypedDict):
    only_a: list[int]
    only_b: list[int]
    shape_a: list[int]
    shape_b: list[int]
    dtype_a: list[int]
    dtype_b: list[int]
    equal_a: list[int]
    equal_b: list[int]

def compare(
    a: Buffer,
    a_dtype: str,
    a_shape: Sequence[int],
    a_strides: Sequence[int],
    a_offset: int,
    b: Buffer,
    b_dtype: str,
    b_shape: Sequence[int],
    b_strides: Sequence[int],
    b_offset: int,
    *,
    rtol: float = 1e-5,
    atol: float = 1e-8,
    a_byteswap: bool = False,
    b_byteswap: bool = False,
    equal_nan: bool = False,
    threads: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> CompareResult: ...
def stats(
    buf: Buffer,
    dtype: str,
    shape: Sequence[int],
    strides: Sequence[int],
    offset: int,
    *,
    bins: int = 16,
    byteswap: bool = False,
    threads: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> StatsResult: ...
def crc32(data: Buffer, init: int = 0) -> int: ...
def _crc32_portable(data: Buffer, init: int = 0) -> int: ...
def _crc32_has_pclmul() -> bool: ...
def _numeric_simd() -> bool: ...
def crc32_combine(crc1: int, crc2: int, len2: int) -> int: ...
def average(
    srcs: Sequence[Buffer],
    src_dtype: str,
    weights: Sequence[float],
    divisor: float,
    dst: Buffer,
    dst_dtype: str,
) -> int: ...
def copy_cast(
    src: Buffer,
    src_dtype: str,
    shape: Sequence[int],
    src_strides: Sequence[int],
    src_offset: int,
    dst: Buffer,
    dst_offset_bytes: int,
    dst_dtype: str,
    *,
    src_byteswap: bool = False,
    threads: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> int: ...
def copy_region(
    src: Buffer,
    src_dtype: str,
    src_shape: Sequence[int],
    src_strides: Sequence[int],
    src_offset: int,
    dst: Buffer,
    dst_offset_bytes: int,
    dst_dtype: str,
    dst_shape: Sequence[int],
    src_start: Sequence[int],
    dst_start: Sequence[int],
    count: Sequence[int],
    *,
    fill: float = 0.0,
    src_byteswap: bool = False,
    threads: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> int: ...
def shape_diff(
    names_a: Sequence[str],
    shapes_a: Sequence[Sequence[int]],
    dtypes_a: Sequence[str],
    names_b: Sequence[str],
    shapes_b: Sequence[Sequence[int]],
    dtypes_b: Sequence[str],
) -> ShapeDiffResult: ...

# ---- safetensors headers and name folding (csrc/bindings/register_header.cpp) -------------------

# Rows of (safetensors dtype name, itemsize, label); a label is what the "dtypes" column holds.
DtypeRow = tuple[str, int, object]

def parse_safetensors_header(
    file: Buffer, file_size: int, dtypes: Sequence[DtypeRow], offsets: bool = True,
    tensors: tuple[Any, ...] | None = None,
) -> dict[str, Any]: ...
def fold_names(names: Sequence[str]) -> list[str] | None: ...
def zip_central_directory(
    file: Buffer, base: int, length: int, cd_off: int, cd_size: int, count: int,
    member: type | None = None,
) -> Any: ...
class ZipTable:
    def __len__(self) -> int: ...
    def find(self, name: object) -> int: ...
    def member(self, i: int) -> Any: ...
    def names(self) -> list[str]: ...

def torch_zip_layout(
    file: Buffer, base: int, length: int, small_max: int, member: type,
) -> tuple[ZipTable, str, dict[str, bytes]] | None: ...
def prefix_counts(names: Sequence[str], depth: int) -> list[tuple[str, int]] | None: ...
def module_tree(
    names: Sequence[str],
    kind_of: Sequence[int],
    kinds: Sequence[tuple[int, int, int, int]],
    fold: bool,
) -> dict[str, list[Any]] | None: ...

# ---- torch pickle fast path (csrc/bindings/register_pickle.cpp) ---------------------------------

def load_torch_pickle(
    data: Buffer,
    persistent_load: Callable[[Any], Any],
    types: tuple[type, type, type, type],
    dtype_info: Callable[[str], tuple[str, int] | None],
    call: Callable[[str, tuple[Any, ...]], Any] | None = None,
    stored: tuple[Any, ...] | None = None,
    columns: bool = False,
) -> tuple[bool, Any]: ...

class StateColumns:
    def build(self) -> dict[str, Any]: ...

def read_dcp_metadata(
    data: Buffer,
    types: tuple[type, type, type, type],
    dtype_info: Callable[[str], tuple[str, int] | None],
    call: Callable[[str, tuple[Any, ...]], Any],
) -> tuple[bool, Any]: ...

# register_objects.cpp
def frozen_rows(cls: type[_T], names: tuple[str, ...], columns: list[Any], n: int) -> list[_T]: ...
def frozen_replaced(cls: type[_T], names: tuple[str, ...], instances: list[_T], field: str,
                    value: Any) -> list[_T]: ...
