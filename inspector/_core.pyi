# Type stub for the compiled core (csrc/bindings/). One section per register_*.cpp.
from collections.abc import Callable, Sequence
from typing import Any

# Any object exposing a C-contiguous buffer (bytes, memoryview, mmap, numpy array). Not
# collections.abc.Buffer: numpy arrays only implement it in the stubs for Python >= 3.12.
Buffer = Any

# ---- module (csrc/bindings/module.cpp) ----------------------------------------------------------

has_cuda: bool

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
# Not typed yet: its functions are Any until this section lists them.

def __getattr__(name: str) -> Any: ...
