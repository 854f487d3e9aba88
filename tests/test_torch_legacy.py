"""The legacy (pre-1.6) torch reader against real `_use_new_zipfile_serialization=False` files."""

from __future__ import annotations

import io
import pickle
import re
import struct
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch_helpers import (
    CASES,
    ROOTS,
    assert_same_tensors,
    raw_bytes,
    sample,
    save,
    torch_load,
    torch_tensors,
)

import inspector
from inspector.errors import (
    DtypeError,
    DuplicateKeyError,
    MissingRecordError,
    PickleError,
    ShapeError,
    TensorDataError,
    TruncatedFileError,
    UnsafeArchiveMemberError,
    UnsafePickleError,
)
from inspector.formats import torch_legacy
from inspector.model import Record
from inspector.scanning import scan

pytestmark = pytest.mark.filterwarnings("ignore:ComplexHalf support is experimental:UserWarning")

# dtypes without a typed storage class: torch writes them in the legacy format but cannot read
# them back, so those files are compared with the objects that were saved.
_TORCH_CANNOT_LOAD = {"all_dtypes"}


@pytest.mark.parametrize("case", sorted(CASES))
def test_tensors_agree_with_torch(tmp_path: Path, case: str) -> None:
    obj = CASES[case](legacy=True)
    path = save(obj, tmp_path / f"{case}.pt", legacy=True)
    expected = obj if case in _TORCH_CANNOT_LOAD else torch_load(path)
    ckpt = assert_same_tensors(path, expected)
    assert ckpt.format == "torch-legacy"


@pytest.mark.parametrize("case", sorted(ROOTS))
def test_weights_root_is_detected(tmp_path: Path, case: str) -> None:
    path = save(CASES[case](legacy=True), tmp_path / f"{case}.pt", legacy=True)
    assert inspector.open(path).root == ROOTS[case]


def test_storage_offsets_point_after_each_count_header(tmp_path: Path) -> None:
    sd = {"a": torch.arange(5, dtype=torch.int32), "b": torch.randn(2, 3, dtype=torch.float64)}
    path = save(sd, tmp_path / "x.pt", legacy=True)
    raw = path.read_bytes()
    ckpt = inspector.open(path)
    for name, t in sd.items():
        src = ckpt[name].storage.source
        count = int.from_bytes(raw[src.offset - 8 : src.offset], "little")
        assert count == t.numel()
        assert raw[src.offset : src.offset + src.length] == t.numpy().tobytes()
    assert ckpt.metadata["sys_info"]["little_endian"] is True


def test_sniff_needs_the_magic_number(tmp_path: Path) -> None:
    plain = tmp_path / "plain.pkl"
    plain.write_bytes(pickle.dumps({"a": 1}, protocol=2))
    assert not torch_legacy.sniff(plain, plain.read_bytes()[:512])
    legacy = save({"a": torch.ones(1)}, tmp_path / "l.pt", legacy=True)
    assert torch_legacy.sniff(legacy, legacy.read_bytes()[:512])


def test_scan_lists_globals_of_every_pickle(tmp_path: Path) -> None:
    path = save({"w": torch.nn.Parameter(torch.ones(2))}, tmp_path / "p.pt", legacy=True)
    names = {g.qualname for g in torch_legacy.scan(path)}
    assert {"torch._utils._rebuild_parameter", "torch.FloatStorage"} <= names


def test_array_values(tmp_path: Path) -> None:
    w = torch.randn(4, 4)
    path = save({"w": w, "wt": w.t()}, tmp_path / "w.pt", legacy=True)
    ckpt = inspector.open(path)
    np.testing.assert_array_equal(ckpt.array("wt"), w.t().numpy())
    assert ckpt.tied_groups() == [["w", "wt"]]


# The torch < 0.4 tar layout ----------------------------------------------------------------------
# torch no longer writes it; these fixtures follow torch/serialization.py `legacy_load` (and the
# old writer it mirrors) byte for byte: storages are written by torch's own `_write_file`.


class ModuleClass:
    """Where the old writer put a pickled nn.Module's class: persistent id (cls, file, src)."""

    def __init__(self, cls: type) -> None:
        self.cls = cls


class _OldTorchPickler(pickle.Pickler):
    """Pickles the object as torch < 0.4 did: every tensor becomes the persistent id str(key)."""

    def __init__(self, f: io.BytesIO, saver: _OldTorchSaver) -> None:
        super().__init__(f, protocol=2)
        self.saver = saver

    def persistent_id(self, obj: Any) -> Any:
        if isinstance(obj, ModuleClass):
            return (obj.cls, "", "")  # empty source: torch does not compare it
        if isinstance(obj, torch.Tensor):
            return str(self.saver.tensor_key(obj))
        return None


class _OldTorchSaver:
    """The four members of a torch < 0.4 tar checkpoint of `obj`, as bytes.

    `views` maps id(tensor) -> (offset, numel): that tensor is saved against a storage view
    (torch < 0.4 `storage[offset:offset + numel]`) of its storage.
    """

    def __init__(self, views: dict[int, tuple[int, int]] | None = None, little: bool = True):
        self.views = views or {}
        self.order = "<" if little else ">"
        self.keys = iter(range(1000, 1 << 30, 7))  # addresses, in spirit
        self.tensors: dict[int, tuple[torch.Tensor, int, int]] = {}  # key -> (t, storage, offset)
        self.storages: dict[int, torch.Tensor] = {}  # key -> a tensor viewing the whole storage
        self.by_ptr: dict[int, int] = {}
        self.storage_views: list[tuple[int, int, int, int]] = []

    def tensor_key(self, t: torch.Tensor) -> int:
        root = self.by_ptr.get(t.untyped_storage().data_ptr())
        if root is None:
            root = self.by_ptr[t.untyped_storage().data_ptr()] = next(self.keys)
            n = t.untyped_storage().nbytes() // t.element_size()
            self.storages[root] = torch.empty(0, dtype=t.dtype).set_(t.untyped_storage(), 0, (n,))
        storage, offset = root, t.storage_offset()
        if id(t) in self.views:
            view_offset, numel = self.views[id(t)]
            storage = next(self.keys)
            self.storage_views.append((storage, root, view_offset, numel))
            offset -= view_offset
        key = next(self.keys)
        self.tensors[key] = (t, storage, offset)
        return key

    def members(self, obj: Any) -> dict[str, bytes]:
        buf = io.BytesIO()
        _OldTorchPickler(buf, self).dump(obj)
        sys_info = {
            "protocol_version": 1001,
            "little_endian": self.order == "<",
            "type_sizes": {"short": 2, "int": 4, "long": 8},
        }
        return {
            "sys_info": pickle.dumps(sys_info, protocol=2),
            "pickle": buf.getvalue(),
            "tensors": self._tensors(),
            "storages": self._storages(),
        }

    def _tensors(self) -> bytes:
        f = io.BytesIO()
        pickle.dump(len(self.tensors), f, protocol=2)
        for key, (t, storage, offset) in self.tensors.items():
            tensor_class = getattr(torch, t.type().removeprefix("torch."), torch.Tensor)
            pickle.dump((key, storage, tensor_class), f, protocol=2)
            n = t.dim()
            f.write(struct.pack(f"{self.order}iI{n}q{n}qq", n, 0, *t.shape, *t.stride(), offset))
        return f.getvalue()

    def _storages(self) -> bytes:
        f = io.BytesIO()
        pickle.dump(len(self.storages), f, protocol=2)
        for key, whole in self.storages.items():
            storage_class = getattr(torch, torch.storage._dtype_to_storage_type_map()[whole.dtype])
            pickle.dump((key, "cpu", storage_class), f, protocol=2)
            if self.order == "<":
                whole.untyped_storage()._write_file(f, False, True, whole.element_size())
            else:
                f.write(struct.pack(">q", whole.numel()))
                f.write(whole.numpy().byteswap().tobytes())
        pickle.dump(self.storage_views, f, protocol=2)
        return f.getvalue()


def write_tar(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def old_tar(path: Path, obj: Any, **kwargs: Any) -> Path:
    return write_tar(path, _OldTorchSaver(**kwargs).members(obj))


def torch_load_unsafe(path: Path) -> Any:
    """torch still reads this layout, but only with weights_only=False (our own fixtures)."""
    return torch.load(path, weights_only=False)


_TAR_DTYPES = [
    torch.float64, torch.float32, torch.float16, torch.bfloat16, torch.complex64,
    torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8, torch.bool,
]  # fmt: skip


def _tar_case() -> tuple[dict[str, Any], dict[int, tuple[int, int]]]:
    base = sample(torch.float32, (6, 8), seed=1)
    root = sample(torch.int64, (12,), seed=2)
    in_view = root[3:9].view(2, 3)  # saved against the storage view root[2:10]
    obj: dict[str, Any] = {
        f"dtypes.{str(dt).removeprefix('torch.')}": sample(dt, (3, 4), seed=i)
        for i, dt in enumerate(_TAR_DTYPES)
    }
    obj["model"] = {
        "weight": base,
        "weight_t": base.t(),  # tied, non-contiguous
        "sliced": base[2:, 3:],  # storage offset 19
        "stepped": base[::2, 1::3],
        "expanded": torch.arange(3.0).expand(4, 3),  # stride 0
        "scalar": torch.tensor(2.5),
        "empty": torch.zeros(0, 5),
    }
    obj["nested"] = [{"layers": (root, in_view)}, 3, "text", {"lr": 0.1}]
    return obj, {id(in_view): (2, 8)}


def test_tar_layout_agrees_with_torch(tmp_path: Path) -> None:
    obj, views = _tar_case()
    path = old_tar(tmp_path / "old.pt", obj, views=views)
    loaded = torch_load_unsafe(path)  # torch 2.13 still loads the layout
    ckpt = assert_same_tensors(path, loaded)
    assert (ckpt.format, ckpt.metadata["layout"]) == ("torch-legacy", "tar")
    # ...and both agree with what was written, so the fixture is what we think it is.
    for name, t in torch_tensors(obj).items():
        assert np.ascontiguousarray(ckpt.array(name)).tobytes() == raw_bytes(t), name
    tied = {"model.weight", "model.weight_t", "model.sliced", "model.stepped"}
    assert tied in [set(g) for g in ckpt.tied_groups()]
    assert ckpt.tree["nested"][1:] == [3, "text", {"lr": 0.1}]


def test_tar_storages_are_read_in_place(tmp_path: Path) -> None:
    obj, views = _tar_case()
    path = old_tar(tmp_path / "old.pt", obj, views=views)
    with tarfile.open(path) as tar:
        member = tar.getmember("storages")
    lo, hi = member.offset_data, member.offset_data + member.size
    raw = path.read_bytes()
    ckpt = inspector.open(path, root="")
    for name, t in torch_tensors(obj).items():
        src = ckpt[name].storage.source
        assert src.path == str(path)
        assert lo < src.offset <= src.offset + src.length <= hi, name
        whole = bytes(t.untyped_storage().tolist())
        if name == "nested.0.layers.1":  # saved against the view root[2:10] of its storage
            assert raw[src.offset : src.offset + src.length] == whole[2 * 8 : 10 * 8]
            continue
        assert raw[src.offset : src.offset + src.length] == whole, name
        count = int.from_bytes(raw[src.offset - 8 : src.offset], "little")  # torch's header
        assert count * t.element_size() == len(whole), name


def test_tar_pickled_module_shows_its_class(tmp_path: Path) -> None:
    obj = {"cls": ModuleClass(torch.nn.Linear), "w": torch.ones(2)}
    path = old_tar(tmp_path / "m.pt", obj)
    assert torch_load_unsafe(path)["cls"] is torch.nn.Linear
    ckpt = inspector.open(path, root="")
    assert ckpt.tree["cls"] == Record("torch.nn.modules.linear.Linear", kind="global")
    assert list(ckpt.tensors) == ["w"]


def test_tar_big_endian_writer(tmp_path: Path) -> None:
    # torch's loader assumes little-endian; the old writer wrote native order and said so in
    # sys_info, which we honour (compared with the values written).
    obj = {"a": sample(torch.float32, (2, 3)), "b": sample(torch.int16, (4,), seed=1).t()}
    path = old_tar(tmp_path / "be.pt", obj, little=False)
    ckpt = inspector.open(path)
    assert ckpt.metadata["byteorder"] == "big"
    assert "tensors are stored big-endian" in ckpt.notes
    for name, t in obj.items():
        assert ckpt[name].shape == tuple(t.shape)
        np.testing.assert_array_equal(ckpt.array(name), t.numpy())


def test_tar_sniffed_and_not_confused_with_other_tars(tmp_path: Path) -> None:
    path = old_tar(tmp_path / "old.pt", {"w": torch.ones(1)})
    assert torch_legacy.sniff(path, path.read_bytes()[:512])
    other = write_tar(tmp_path / "other.tar", {"model_config.yaml": b"a: 1\n"})
    assert not torch_legacy.sniff(other, other.read_bytes()[:512])


# Bad input ---------------------------------------------------------------------------------------


def _members(tmp_path: Path) -> dict[str, bytes]:
    base = sample(torch.float32, (4, 4))
    return _OldTorchSaver().members({"w": base, "wt": base.t(), "b": torch.arange(3)})


def _record_ends(member: bytes) -> list[int]:
    """End offsets of the count pickle and the first record pickle of a member."""
    f = io.BytesIO(member)
    pickle.load(f)
    first = f.tell()
    pickle.load(f)
    return [first, f.tell()]


def _expect(path: Path, error: type[Exception], *parts: str, strict: bool = False) -> None:
    pattern = ".*".join(re.escape(p) for p in (str(path), *parts))
    with pytest.raises(error, match=pattern):
        inspector.open(path, strict=strict)


@pytest.mark.parametrize("member", ["tensors", "storages", "pickle", "sys_info"])
@pytest.mark.parametrize("keep", [0.3, 0.9])
def test_tar_truncated_member(tmp_path: Path, member: str, keep: float) -> None:
    members = _members(tmp_path)
    members[member] = members[member][: int(len(members[member]) * keep)]
    path = write_tar(tmp_path / "t.pt", members)
    _expect(path, (TruncatedFileError, PickleError), member)


def test_tar_truncated_file(tmp_path: Path) -> None:
    path = write_tar(tmp_path / "t.pt", _members(tmp_path))
    raw = path.read_bytes()
    with tarfile.open(path) as tar:
        storages = tar.getmember("storages")
    for cut in (700, storages.offset_data - 100, storages.offset_data + storages.size // 2):
        path.write_bytes(raw[:cut])
        _expect(path, TruncatedFileError, "archive")


@pytest.mark.parametrize("member", ["tensors", "storages"])
def test_tar_count_larger_than_the_data(tmp_path: Path, member: str) -> None:
    members = _members(tmp_path)
    first = _record_ends(members[member])[0]
    members[member] = pickle.dumps(10**9, protocol=2) + members[member][first:]
    _expect(write_tar(tmp_path / "c.pt", members), TensorDataError, member, "count 1000000000")
    members[member] = pickle.dumps(3, protocol=2) + members[member][first:]  # one more: cut short
    _expect(write_tar(tmp_path / "d.pt", members), (TruncatedFileError, PickleError), member)


def test_tar_storage_element_count_beyond_member(tmp_path: Path) -> None:
    members = _members(tmp_path)
    data = bytearray(members["storages"])
    end = _record_ends(bytes(data))[1]
    data[end : end + 8] = struct.pack("<q", 1 << 40)
    members["storages"] = bytes(data)
    _expect(write_tar(tmp_path / "s.pt", members), TruncatedFileError, "storages/", "runs past")
    data[end : end + 8] = struct.pack("<q", -1)
    members["storages"] = bytes(data)
    _expect(write_tar(tmp_path / "n.pt", members), TensorDataError, "negative element count")


def _tensor_records(members: dict[str, bytes]) -> list[tuple[Any, ...]]:
    """(key, storage, class, ndim, shape, strides, offset) per tensor record."""
    f = io.BytesIO(members["tensors"])
    out = []
    for _ in range(pickle.load(f)):
        key, storage, cls = pickle.load(f)
        ndim, _ = struct.unpack("<iI", f.read(8))
        shape = struct.unpack(f"<{ndim}q", f.read(8 * ndim))
        strides = struct.unpack(f"<{ndim}q", f.read(8 * ndim))
        (offset,) = struct.unpack("<q", f.read(8))
        out.append((key, storage, cls, ndim, shape, strides, offset))
    return out


def _write_tensor_records(
    members: dict[str, bytes], records: list[tuple[Any, ...]], raw: dict[int, bytes] | None = None
) -> None:
    """Rewrite the tensors member; `raw[i]` replaces the pickle of record i."""
    f = io.BytesIO()
    pickle.dump(len(records), f, protocol=2)
    for i, (key, storage, cls, ndim, shape, strides, offset) in enumerate(records):
        f.write((raw or {}).get(i) or pickle.dumps((key, storage, cls), protocol=2))
        n = len(shape)
        f.write(struct.pack(f"<iI{n}q{n}qq", ndim, 0, *shape, *strides, offset))
    members["tensors"] = f.getvalue()


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        ({1: 424242}, MissingRecordError, "storage 424242, absent"),
        ({1: None}, MissingRecordError, "storage None, absent"),
        ({4: (4, -4)}, ShapeError, "negative"),
        ({4: (5, 4)}, ShapeError, "reaches byte"),
        ({6: 1}, ShapeError, "reaches byte"),
        ({3: 65, 4: (1,) * 65, 5: (1,) * 65}, ShapeError, "65 dimensions"),
    ],
)
def test_tar_bad_tensor_record(
    tmp_path: Path, change: dict[int, Any], error: type[Exception], message: str
) -> None:
    members = _members(tmp_path)
    records = _tensor_records(members)
    first = list(records[0])
    for index, value in change.items():
        first[index] = value
    records[0] = tuple(first)
    _write_tensor_records(members, records)
    _expect(write_tar(tmp_path / "r.pt", members), error, f"tensors/{first[0]}", message)


def test_tar_pickle_refers_to_a_missing_tensor(tmp_path: Path) -> None:
    members = _members(tmp_path)
    records = _tensor_records(members)
    _write_tensor_records(members, records[1:])
    _expect(write_tar(tmp_path / "m.pt", members), MissingRecordError, "'pickle'", "neither")


def test_tar_duplicate_storage_key_and_bad_view(tmp_path: Path) -> None:
    members = _members(tmp_path)
    f = io.BytesIO(members["storages"])
    count = pickle.load(f)
    records = []
    for _ in range(count):
        record = pickle.load(f)
        (n,) = struct.unpack("<q", f.read(8))
        records.append((record, n, f.read(n * 8 if "Long" in record[2].__name__ else n * 4)))

    def rewrite(recs: list[Any], views: list[Any]) -> None:
        out = io.BytesIO()
        pickle.dump(len(recs), out, protocol=2)
        for record, n, data in recs:
            pickle.dump(record, out, protocol=2)
            out.write(struct.pack("<q", n) + data)
        pickle.dump(views, out, protocol=2)
        members["storages"] = out.getvalue()

    rewrite([records[0], records[0]], [])
    _expect(write_tar(tmp_path / "d.pt", members), DuplicateKeyError, "storages/", "twice")
    key = records[0][0][0]
    rewrite(records, [(7, key, 2, records[0][1])])  # reaches 2 elements past its root
    _expect(write_tar(tmp_path / "v.pt", members), ShapeError, "storages/7", "beyond storage")
    rewrite(records, [(7, 99, 0, 1)])
    _expect(write_tar(tmp_path / "w.pt", members), MissingRecordError, "missing storage 99")
    (key, location, _), n, data = records[0]
    rewrite([((key, location, torch.nn.Linear), n, data)], [])
    _expect(write_tar(tmp_path / "t.pt", members), DtypeError, f"storages/{key}", "Linear")


def test_tar_extra_bytes_and_members_are_noted(tmp_path: Path) -> None:
    members = _members(tmp_path)
    members["tensors"] += b"\0" * 5
    members["README"] = b"hello"
    ckpt = inspector.open(write_tar(tmp_path / "x.pt", members))
    assert "5 bytes after the last record of 'tensors' are ignored" in ckpt.notes
    assert "members ignored: README" in ckpt.notes
    assert sorted(ckpt.tensors) == ["b", "w", "wt"]


def test_tar_missing_member(tmp_path: Path) -> None:
    members = _members(tmp_path)
    del members["tensors"]
    _expect(write_tar(tmp_path / "m.pt", members), MissingRecordError, "'tensors'", "without")


@pytest.mark.parametrize("link_type", [tarfile.SYMTYPE, tarfile.LNKTYPE])
def test_tar_link_member_refused(tmp_path: Path, link_type: bytes) -> None:
    members = _members(tmp_path)
    path = tmp_path / "l.pt"
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for name in ("sys_info", "pickle", "tensors"):
            info = tarfile.TarInfo(name)
            info.size = len(members[name])
            tar.addfile(info, io.BytesIO(members[name]))
        link = tarfile.TarInfo("storages")
        link.type, link.linkname = link_type, "/etc/passwd"
        tar.addfile(link)
    _expect(path, UnsafeArchiveMemberError, "'storages'", "link")


def test_tar_member_climbing_out_refused(tmp_path: Path) -> None:
    members = {**_members(tmp_path), "../../evil": b"x"}
    _expect(write_tar(tmp_path / "e.pt", members), UnsafeArchiveMemberError, "'..'")


def _hostile(canary: Path) -> bytes:
    """A pickle that would create `canary` if anything ran it."""
    cmd = f"touch {canary}"
    return (
        b"\x80\x02cposix\nsystem\nq\x00X" + struct.pack("<I", len(cmd)) + cmd.encode() + b"\x85R."
    )


def test_tar_hostile_object_pickle_never_runs(tmp_path: Path) -> None:
    canary = tmp_path / "canary"
    members = {**_members(tmp_path), "pickle": _hostile(canary)}
    path = write_tar(tmp_path / "evil.pt", members)
    _expect(path, UnsafePickleError, "'pickle'", "posix.system", strict=True)
    # not strict: the top-level object is the call, refused as torch refuses it (issue 11)
    _expect(path, PickleError, "'pickle'", "top-level object is built by calling posix.system")
    assert not canary.exists()


@pytest.mark.parametrize("member", ["tensors", "storages"])
def test_tar_hostile_record_pickle_never_runs(tmp_path: Path, member: str) -> None:
    canary = tmp_path / "canary"
    members = _members(tmp_path)
    first, second = _record_ends(members[member])
    members[member] = members[member][:first] + _hostile(canary) + members[member][second:]
    path = write_tar(tmp_path / "evil.pt", members)
    _expect(path, UnsafePickleError, f"'{member}/", "posix.system", strict=True)
    _expect(path, PickleError, f"'{member}/record 0'", "posix.system")
    assert not canary.exists()


def test_tar_scan_of_a_clean_file_is_clean(tmp_path: Path) -> None:
    report = scan(write_tar(tmp_path / "ok.pt", _members(tmp_path)))
    assert {f.severity for f in report.findings} == {"info"}
    keys = {f.key for f in report.findings if f.code == "global-safe"}
    assert keys == {"tensors", "storages"}  # tensor types and storage classes, one line each


def test_tar_scan_sees_every_pickle(tmp_path: Path) -> None:
    canary = tmp_path / "canary"
    members = _members(tmp_path)
    records = _tensor_records(members)
    # a payload in the last tensor record: after raw metadata, past a plain pickle walk
    _write_tensor_records(members, records, raw={len(records) - 1: _hostile(canary)})
    path = write_tar(tmp_path / "evil.pt", members)
    refs = torch_legacy.scan(path)
    assert {"posix.system", "torch.FloatStorage", "torch.LongStorage"} <= {g.qualname for g in refs}
    raw = path.read_bytes()
    assert all(raw[g.position : g.position + 1] == b"c" for g in refs)  # GLOBAL, file offsets
    report = scan(path)
    dangerous = [
        (f.key, f.details["name"]) for f in report.findings if f.code.endswith("dangerous")
    ]
    assert dangerous == [("tensors", "system")]
    assert not canary.exists()


def test_tar_scan_walks_a_record_the_safe_reader_refuses(tmp_path: Path) -> None:
    members = _members(tmp_path)
    # EXT1 code 1 (the copyreg extension registry), called: never in a torch record
    _write_tensor_records(members, _tensor_records(members), raw={0: b"\x80\x02\x82\x01)R."})
    path = write_tar(tmp_path / "ext.pt", members)
    with pytest.raises(PickleError, match=r"'tensors/tensor record 0'.*extension registry"):
        torch_legacy.scan(path)  # the library helper cannot list it: an error, not a skip
    report = scan(path)
    found = {(f.code, f.key) for f in report.findings}
    assert ("pickle-malformed", "tensors") in found
    assert ("global-unknown", "tensors") in found
