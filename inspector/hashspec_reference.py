"""The ckh1 content hash in plain Python on the `xxhash` package: the executable form of
docs/hash-spec.md. Slow; used by the tests and by tests/vectors/make_vectors.py, never by the
library (which uses the C++ core). Input: the logical bytes in C order, little-endian elements.
`xxhash` is a test extra, imported on first use: importing this module needs nothing.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Mapping

VERSION = "ckh1"
CHUNK = 1 << 20


def xxh3_128(data: bytes) -> bytes:
    """XXH3-128, seed 0, canonical (big-endian) digest, from the `xxhash` package."""
    return _xxh3_128_digest()(data)


def _xxh3_128_digest() -> Callable[[bytes], bytes]:
    try:
        import xxhash
    except ImportError as e:
        raise ImportError(
            "inspector.hashspec_reference needs the `xxhash` package: pip install xxhash "
            "(or pip install 'ckpt-inspector[test]')"
        ) from e
    digest: Callable[[bytes], bytes] = xxhash.xxh3_128_digest
    return digest


def u64le(v: int) -> bytes:
    return struct.pack("<Q", v)


def leaves(data: bytes) -> list[bytes]:
    """XXH3-128 (seed 0, canonical big-endian) of each 1 MiB chunk; none for empty data."""
    return [xxh3_128(data[i : i + CHUNK]) for i in range(0, len(data), CHUNK)]


def header(dtype: str, shape: Iterable[int], nbytes: int) -> bytes:
    dims = list(shape)
    out = VERSION.encode() + b"\0" + dtype.encode("ascii") + b"\0" + u64le(len(dims))
    return out + b"".join(u64le(d) for d in dims) + u64le(nbytes)


def tensor_digest(dtype: str, shape: Iterable[int], data: bytes) -> bytes:
    """16-byte digest of a tensor: header, then its leaf digests, hashed with XXH3-128."""
    return xxh3_128(header(dtype, shape, len(data)) + b"".join(leaves(data)))


def checkpoint_digest(digests: Mapping[str, bytes]) -> bytes:
    """16-byte digest over (name, tensor digest) pairs, names sorted by their UTF-8 bytes."""
    body = bytearray(b"ckh1-ckpt\0")
    for raw in sorted(name.encode("utf-8") for name in digests):
        body += u64le(len(raw)) + raw + digests[raw.decode("utf-8")]
    return xxh3_128(bytes(body))


def printed(digest: bytes) -> str:
    return f"{VERSION}:{digest.hex()}"
