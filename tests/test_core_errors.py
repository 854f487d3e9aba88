"""One path for the core's errors: `_core.CoreError` carries its parts as attributes (no message
is parsed), and `inspector._native.core_error` maps it to the project's classes."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

from inspector._native import core, core_error
from inspector.errors import CheckpointError, DtypeError, FileChangedError, TensorDataError
from inspector.hashing import hash_tensors
from inspector.model import ByteSource, Checkpoint, Storage, TensorInfo

DTYPES = (("F32", 4, "float32"),)


def job(buf: bytes, n: int) -> tuple[object, ...]:
    return (buf, "uint8", 1, (n,), (1,), 0, False)


def test_a_refused_job_carries_its_index_in_the_batch() -> None:
    with pytest.raises(core.CoreError) as info:
        core.hash_tensors([job(b"abc", 3), job(b"abc", 5), job(b"abc", 1)])
    e = info.value
    assert isinstance(e, ValueError)
    assert (e.kind, e.job, e.where, e.key) == ("value", 1, None, None)
    assert e.problem == "view spans bytes [0, 5) of a 3-byte buffer"
    assert str(e) == "job 1: view spans bytes [0, 5) of a 3-byte buffer"


def test_a_bad_argument_is_named_as_where() -> None:
    with pytest.raises(core.CoreError) as info:
        core.crc32(memoryview(bytes(8))[::2])
    assert (info.value.kind, info.value.where, info.value.job) == ("value", "data", None)
    assert info.value.problem == "needs a C-contiguous buffer"


def _header_file(header: dict[str, object]) -> bytes:
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + bytes(4)


def test_a_header_fault_carries_its_kind_and_tensor() -> None:
    file = _header_file({"w": {"dtype": "F99", "shape": [1], "data_offsets": [0, 4]}})
    with pytest.raises(core.CoreError) as info:
        core.parse_safetensors_header(file, len(file), DTYPES)
    e = info.value
    assert (e.kind, e.key, e.job) == ("dtype", "w", None)
    err = core_error(e, "m.safetensors")
    assert type(err) is DtypeError
    assert (err.path, err.key) == ("m.safetensors", "w")


def test_kind_value_is_the_callers_class_with_context() -> None:
    with pytest.raises(core.CoreError) as info:
        core.shape_diff(["a", "a"], [(1,), (1,)], ["f32", "f32"], [], [], [])
    err = core_error(info.value, "a.pt", context="the name mapping", default=CheckpointError)
    assert type(err) is CheckpointError
    assert str(err) == f"a.pt: the name mapping: {info.value.problem}"
    assert type(core_error(info.value, "a.pt")) is TensorDataError


def test_a_mapped_file_fault_is_file_changed_and_other_errors_pass_through() -> None:
    err = core_error(core.MappedFileFault("SIGBUS"), "m.safetensors")
    assert type(err) is FileChangedError
    assert str(err) == "m.safetensors: the file changed while it was read (truncated)"
    other = KeyError("x")
    assert core_error(other, "m.safetensors") is other


def test_hashing_names_the_tensor_of_the_refused_job() -> None:
    """A batch of three tensors whose second reads past its buffer: the error names that one."""
    tensors = {}
    for i, n in enumerate((4, 12, 4)):
        buf = np.zeros(16, np.uint8)
        storage = Storage(f"s{i}", "float32", 16, ByteSource(None, 0, 16, buffer=buf))
        tensors[f"t{i}"] = TensorInfo(f"t{i}", "float32", (n,), (1,), 0, storage)
    ckpt = Checkpoint(path=None, format="memory", tree=dict(tensors), tensors=tensors)
    with pytest.raises(TensorDataError) as info:
        hash_tensors(ckpt)
    assert info.value.key == "t1"
    assert info.value.what == "view spans bytes [0, 48) of a 16-byte buffer"
