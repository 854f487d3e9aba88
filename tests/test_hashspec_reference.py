"""inspector.hashspec_reference imports without the `xxhash` test extra and says how to get it."""

from __future__ import annotations

import importlib
import sys

import pytest


def test_imports_without_xxhash_and_names_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "xxhash", None)  # `import xxhash` now raises ImportError
    monkeypatch.delitem(sys.modules, "inspector.hashspec_reference", raising=False)
    ref = importlib.import_module("inspector.hashspec_reference")
    assert ref.header("float32", (2,), 8).startswith(b"ckh1\0float32\0")  # no xxhash needed
    with pytest.raises(ImportError, match=r"pip install xxhash"):
        ref.tensor_digest("float32", (2,), bytes(8))
    monkeypatch.delitem(sys.modules, "inspector.hashspec_reference")


def test_digest_with_xxhash_matches_the_package() -> None:
    import xxhash

    from inspector import hashspec_reference as ref

    data = bytes(range(256)) * 5000  # two chunks
    assert ref.leaves(data) == [xxhash.xxh3_128_digest(data[: ref.CHUNK]),
                                xxhash.xxh3_128_digest(data[ref.CHUNK :])]
