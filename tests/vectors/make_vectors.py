"""Generate tests/vectors/hash_vectors.json, the frozen test vectors of the ckh1 content hash.

    PYTHONPATH=. python tests/vectors/make_vectors.py            # rewrite the file
    PYTHONPATH=. python tests/vectors/make_vectors.py --check    # exit 1 if it would change

Digests come from the pure-Python reference (inspector/hashspec_reference.py on the `xxhash`
package); tests check the C++ core against this file and the reference. Inputs are not stored:
each is rebuilt from a few parameters by `pattern()` and `logical_bytes()` below, which the file's
comment describes so that another implementation can regenerate them.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from inspector import dtypes
from inspector import hashspec_reference as ref

OUT = Path(__file__).with_name("hash_vectors.json")
CHUNK = ref.CHUNK

COMMENT = (
    "ckh1 content-hash test vectors (spec: docs/hash-spec.md), made by tests/vectors/"
    "make_vectors.py. Input bytes: pattern(n, seed)[i] = (i * 31 + seed * 17 + (i >> 11)) % 251. "
    "'xxh3_128': plain XXH3-128 (seed 0) of pattern(length, 0), canonical hex. 'tensors': a "
    "storage of pattern(storage_nbytes, seed) bytes; the tensor is the view (shape, strides, "
    "offset, all in elements) of it read as dtype items of `byteorder` ('big': each item, or each "
    "half of a complex item, is byte-swapped to little-endian); digest is its ckh1 digest (hex, "
    "no prefix). 'checkpoint': ckh1 checkpoint digest over the given name -> tensor-vector "
    "digest pairs."
)


def pattern(n: int, seed: int = 0) -> bytes:
    i = np.arange(n, dtype=np.int64)
    return ((i * 31 + seed * 17 + (i >> 11)) % 251).astype(np.uint8).tobytes()


def swap_unit(dtype: str) -> int:
    itemsize = dtypes.get(dtype).itemsize
    return itemsize // 2 if dtype.startswith("complex") else itemsize


def logical_bytes(entry: dict[str, Any]) -> bytes:
    """The tensor's logical little-endian bytes in C order, from a vector entry."""
    itemsize = dtypes.get(entry["dtype"]).itemsize
    storage = np.frombuffer(pattern(entry["storage_nbytes"], entry["seed"]), dtype=np.uint8)
    shape, strides = tuple(entry["shape"]), tuple(entry["strides"])
    if 0 in shape:
        return b""
    items = storage.view(np.dtype((np.void, itemsize)))
    view = np.lib.stride_tricks.as_strided(
        items[entry["offset"] :], shape=shape, strides=tuple(s * itemsize for s in strides)
    )
    data = np.ascontiguousarray(view).view(np.uint8).reshape(-1)
    if entry["byteorder"] == "big":
        unit = swap_unit(entry["dtype"])
        data = data.reshape(-1, unit)[:, ::-1].reshape(-1)
    return data.tobytes()


def c_strides(shape: tuple[int, ...]) -> list[int]:
    out, acc = [], 1
    for n in reversed(shape):
        out.append(acc)
        acc *= max(n, 1)
    return out[::-1]


def tensor(name: str, dtype: str, shape: tuple[int, ...], **view: Any) -> dict[str, Any]:
    itemsize = dtypes.get(dtype).itemsize
    numel = int(np.prod(shape)) if shape else 1
    entry = {
        "name": name,
        "dtype": dtype,
        "shape": list(shape),
        "strides": view.get("strides", c_strides(shape)),
        "offset": view.get("offset", 0),
        "byteorder": view.get("byteorder", "little"),
        "seed": view.get("seed", len(name)),
        "storage_nbytes": view.get("storage_elems", numel) * itemsize,
    }
    entry["digest"] = ref.tensor_digest(dtype, shape, logical_bytes(entry)).hex()
    return entry


def tensor_entries() -> list[dict[str, Any]]:
    edges = [CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK + 1]
    out = [tensor(f"uint8[{n}]", "uint8", (n,)) for n in edges]
    out += [
        tensor("empty", "float32", (0,)),
        tensor("empty-2d", "float16", (3, 0)),
        tensor("scalar", "float32", ()),
        tensor("scalar-int64", "int64", ()),
        tensor("ones-1", "bfloat16", (1, 1, 1)),
        tensor("float32-chunk-edge", "float32", (CHUNK // 4 + 3,)),
    ]
    out += [tensor(f"dtype-{name}", name, (3, 5)) for name in dtypes.DTYPES]
    out += [
        tensor("transpose", "float32", (8, 6), strides=[1, 8], storage_elems=48),
        tensor("slice-offset", "float32", (3, 8), strides=[8, 1], offset=16, storage_elems=48),
        tensor("step-slice", "int16", (3, 4), strides=[16, 2], offset=1, storage_elems=48),
        tensor("permute-3d", "float64", (4, 2, 3), strides=[1, 12, 4], storage_elems=24),
        tensor("broadcast", "int32", (4, 5), strides=[0, 1], storage_elems=5),
        tensor(
            "transpose-over-chunk", "float32", (600, 700), strides=[1, 600], storage_elems=420000
        ),
        tensor("big-endian-float32", "float32", (4, 5), byteorder="big"),
        tensor("big-endian-bfloat16", "bfloat16", (7,), byteorder="big"),
        tensor("big-endian-complex64", "complex64", (3,), byteorder="big"),
        tensor(
            "big-endian-transpose",
            "int64",
            (3, 2),
            strides=[1, 3],
            byteorder="big",
            storage_elems=6,
        ),
    ]
    return out


def build() -> dict[str, Any]:
    lengths = [0, 1, 2, 3, 4, 8, 9, 16, 17, 32, 33, 64, 65, 96, 97, 128, 129, 160, 240, 241]
    lengths += [255, 256, 1023, 1024, 1025, 2048, 16383, 16384, 16385, 100003, CHUNK - 1, CHUNK]
    tensors = tensor_entries()
    picked = {t["name"]: bytes.fromhex(t["digest"]) for t in tensors[:6]}
    picked["décodeur.poids"] = bytes.fromhex(tensors[-1]["digest"])
    return {
        "comment": COMMENT,
        "version": ref.VERSION,
        "chunk": CHUNK,
        "xxh3_128": [
            {"length": n, "digest": ref.xxh3_128(pattern(n)).hex()} for n in lengths
        ],
        "tensors": tensors,
        "checkpoint": {
            "tensors": {name: d.hex() for name, d in picked.items()},
            "digest": ref.checkpoint_digest(picked).hex(),
        },
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with the file, write nothing")
    args = parser.parse_args()
    text = json.dumps(build(), indent=1, ensure_ascii=False) + "\n"
    if args.check:
        same = OUT.exists() and OUT.read_text(encoding="utf-8") == text
        print("vectors up to date" if same else f"{OUT} differs from the generator")
        return 0 if same else 1
    OUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
