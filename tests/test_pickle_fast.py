"""The C++ fast path for torch.save's data.pkl (formats.pickle_fast) against the Python machine:
random state dicts saved by torch at every protocol give the identical tree; hostile or broken
streams fall back and are refused by the Python machine as before; `ckpt ls` says the same with
the fast path on or off."""

from __future__ import annotations

import io
import json
import pickle
import struct
import sys
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from subproc import child_env, ckpt
from torch_helpers import ALL_DTYPES, sample

import inspector
from inspector.errors import PickleError, ShapeError, UnsafePickleError
from inspector.formats import ReadOptions, pickle_fast, torch_zip
from inspector.formats.unpickler import MAX_DEPTH, load

sys.path.insert(0, str(Path(__file__).resolve().parent / "fuzz"))
import fuzz_pickle_fast as harness

pytestmark = pytest.mark.filterwarnings("ignore:ComplexHalf support is experimental:UserWarning")
PROTOCOLS = (2, 3, 4, 5)
EVIL = b"\x80\x02cos\nsystem\nX\x02\x00\x00\x00lsq\x00\x85R."  # os.system("ls")
ON, OFF = child_env(**{pickle_fast.ENV: "1"}), child_env(**{pickle_fast.ENV: "0"})


def data_pkl(obj: Any, protocol: int) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf, pickle_protocol=protocol)
    with zipfile.ZipFile(buf) as z:
        return z.read(next(n for n in z.namelist() if n.endswith("data.pkl")))


# -- random state dicts ----------------------------------------------------------------------------
@st.composite
def tensors(draw: st.DrawFn, pool: list[torch.Tensor]) -> torch.Tensor:
    if pool and draw(st.booleans()):  # shared: the same tensor, or a view of its storage
        base = draw(st.sampled_from(pool))
        if base.dim() and base.shape[0] > 1 and draw(st.booleans()):
            return base[1:] if draw(st.booleans()) else base.narrow(0, 1, 1)
        return base
    dtype = draw(st.sampled_from(ALL_DTYPES))
    shape = tuple(draw(st.lists(st.integers(0, 4), max_size=3)))
    t = sample(dtype, shape, seed=draw(st.integers(0, 9)))
    if t.dim() == 2 and draw(st.booleans()):
        t = t.t()  # strides (1, n)
    if t.dim() == 1 and t.shape[0] > 2 and draw(st.booleans()):
        t = t[1::2]  # an offset and a stride
    kind = draw(st.sampled_from(["plain", "parameter", "grad"]))
    floating = dtype.is_floating_point or dtype.is_complex
    if kind == "parameter":
        t = torch.nn.Parameter(t, requires_grad=floating and draw(st.booleans()))
    elif kind == "grad" and dtype in (torch.float32, torch.float64):
        t = t.clone().requires_grad_(True)
    pool.append(t)
    return t


def leaves(pool: list[torch.Tensor]) -> st.SearchStrategy[Any]:
    return st.one_of(
        tensors(pool),
        st.integers(-(1 << 70), 1 << 70),
        st.floats(allow_nan=False),
        st.text(max_size=8),
        st.booleans(),
        st.none(),
    )


def trees(pool: list[torch.Tensor]) -> st.SearchStrategy[Any]:
    keys = st.text(max_size=6)
    return st.recursive(
        leaves(pool),
        lambda kids: st.one_of(
            st.dictionaries(keys, kids, max_size=4),
            st.dictionaries(keys, kids, max_size=4).map(OrderedDict),
            st.lists(kids, max_size=4),
            st.lists(kids, max_size=3).map(tuple),
        ),
        max_leaves=12,
    )


@st.composite
def checkpoints(draw: st.DrawFn) -> tuple[Any, int]:
    pool: list[torch.Tensor] = []
    state = OrderedDict(draw(st.dictionaries(st.text(max_size=6), trees(pool), max_size=5)))
    if draw(st.booleans()):  # what Module.state_dict() carries
        state._metadata = OrderedDict({"": {"version": 1}})  # type: ignore[attr-defined]
    return {"state_dict": state, "epoch": draw(st.integers(0, 9))}, draw(st.sampled_from(PROTOCOLS))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(checkpoints())
def test_fast_path_builds_the_python_machines_tree(case: tuple[Any, int]) -> None:
    obj, protocol = case
    declined = "the fast path declined a torch.save stream"
    assert harness.check_torch(data_pkl(obj, protocol)), declined


def test_a_real_module_at_every_protocol() -> None:
    module = torch.nn.Sequential(
        torch.nn.Linear(4, 3), torch.nn.LayerNorm(3), torch.nn.Embedding(5, 2)
    )
    for protocol in PROTOCOLS:
        assert harness.check_torch(
            data_pkl({"model": module.state_dict(), "opt": {"step": 3}}, protocol))


def test_the_fuzz_corpus_agrees() -> None:
    """Every seed and finding of every harness: the fast path declines or agrees, never crashes;
    the torch.save seeds it reads."""
    fuzz = Path(harness.__file__).parent
    files = [f for f in sorted(fuzz.glob("*/*/*")) if f.is_file()]
    read = {f.name for f in files if harness.check(f.read_bytes())}
    assert {f.name for f in (fuzz / "corpus" / "pickle_fast").iterdir()} <= read


# -- hostile and broken streams: the fast path declines, the Python machine refuses as before -----
def _refused_alike(
    data: bytes, error: type[Exception] = PickleError, match: str | None = None
) -> None:
    handled, _ = pickle_fast.try_load(data, harness.Storages().load)
    assert not handled
    assert not harness.check(data)
    with pytest.raises(error, match=match):
        load(data, path="x.pkl", persistent_load=harness.Storages().load, strict=True)


def test_values_pushed_again_and_again_build_the_same_tree() -> None:
    """The fast path keeps one node for None, the booleans, the empty tuple and each int below
    1024, however often they are pushed (a shape's ints, an offset, a flag per tensor): the tree
    is still the Python machine's, at every place one stands, memoized or not, as a key, in a
    tuple, beside ints just past the shared range and negative ones."""
    leaves = [0, 1, 2, 255, 256, 1023, 1024, 1025, -1, -1024, None, True, False, (), (0,), (0, 0)]
    obj = {
        "rows": [list(leaves) for _ in range(3)],
        "keys": {k: k for k in leaves if k is not None},
        "nested": ((), ((), ()), [(), (1, ())]),
        "w": [torch.zeros(2, 3), torch.ones(2, 3), torch.zeros(1023), torch.zeros(1024, 1)],
    }
    for protocol in PROTOCOLS:
        assert harness.check_torch(data_pkl(obj, protocol))
        plain = {k: v for k, v in obj.items() if k != "w"}
        assert harness.check_records(pickle.dumps(plain, protocol=protocol))


def test_deep_nesting_falls_back_and_is_refused() -> None:
    n = MAX_DEPTH + 10
    _refused_alike(b"\x80\x02" + b"]" * n + b"a" * (n - 1) + b".", match="nested deeper")
    _refused_alike(b"\x80\x02" + b"(" * n + b".", match="nested MARKs")


def test_a_shared_tree_too_large_to_expand_falls_back_and_is_refused() -> None:
    # 30 levels of [x, x]: 2**30 entries when expanded
    body = b"\x80\x02N" + b"q\x00h\x00\x86" * 30 + b"."
    _refused_alike(body, match="expands past")


def test_truncated_streams_fall_back_and_are_refused() -> None:
    data = data_pkl({"w": torch.ones(2), "p": torch.nn.Parameter(torch.zeros(3))}, 2)
    for end in range(0, len(data) - 1, 7):
        _refused_alike(data[:end])


def test_a_global_outside_the_subset_falls_back() -> None:
    evil = EVIL
    _refused_alike(evil, UnsafePickleError, "os.system")
    # without strict, the Python machine shows it as a record, as before
    assert load(evil, path="x.pkl").kind == "unsupported-global"


def test_a_far_memo_index_falls_back_to_the_python_machine() -> None:
    """The Python machine takes any memo index; the fast path only dense ones."""
    far = struct.pack("<I", 0xFFFFFFF0)
    data = b"\x80\x02K\x07r" + far + b"0j" + far + b"."
    assert not pickle_fast.try_load(data, harness.Storages().load)[0]
    assert not harness.check(data)
    assert load(data, path="x.pkl") == 7


def test_a_view_past_its_storage_falls_back_and_the_python_machine_says_why() -> None:
    data = data_pkl({"w": torch.ones(4)}, 2)
    bad = data.replace(b"K\x04\x85", b"K\x09\x85", 1)  # shape (9,) on 4 elements
    assert bad != data
    _refused_alike(bad, ShapeError, "reaches byte")


@pytest.mark.parametrize(
    ("hooks", "match"),
    [(b"X\x01\x00\x00\x00\xff", "UnicodeDecodeError"), (b"}(]Nu", "unhashable")],
    ids=["text-not-utf8", "unhashable-key"],
)
def test_a_bad_value_the_tree_drops_is_still_refused(hooks: bytes, match: str) -> None:
    """The Python machine builds every value, also a parameter's hooks that the tree drops: a
    string it cannot decode or a dict key it cannot hash there is refused, so the fast path
    must not accept it."""
    data = data_pkl({"p": torch.nn.Parameter(torch.zeros(3))}, 2)
    assert data.count(b"\x88h\x0b)R") == 1  # the parameter's hooks: OrderedDict()
    _refused_alike(data.replace(b"\x88h\x0b)R", b"\x88" + hooks), match=match)


# -- through the reader and the CLI ----------------------------------------------------------------
def test_the_reader_uses_the_fast_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "m.pt"
    torch.save({"model": torch.nn.Linear(3, 2).state_dict()}, path)

    def no_python_machine(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the Python machine ran")

    monkeypatch.setattr(torch_zip, "Unpickler", no_python_machine)
    monkeypatch.setenv(pickle_fast.ENV, "1")
    assert sorted(inspector.open(path)) == ["bias", "weight"]
    monkeypatch.setenv(pickle_fast.ENV, "0")
    with pytest.raises(AssertionError, match="Python machine ran"):
        torch_zip.read(path, ReadOptions())


def test_the_reader_falls_back_with_the_same_notes(tmp_path: Path) -> None:
    """bytes in a protocol-2 pickle (_codecs.encode) are outside the subset: the Python machine
    reads the file, storages and notes as with the fast path off."""
    path = tmp_path / "m.pt"
    torch.save({"w": torch.ones(2), "blob": b"\x00\x01"}, path, pickle_protocol=2)
    got = torch_zip.read(path, ReadOptions())
    assert got.tree["blob"] == b"\x00\x01"
    assert got.tree["w"].shape == (2,)


def _with_data_pkl(src: Path, dst: Path, data: bytes) -> Path:
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            new = data if info.filename.endswith("data.pkl") else zin.read(info)
            zout.writestr(info.filename, new)
    return dst


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_ckpt_ls_is_the_same_with_the_fast_path_off(tmp_path: Path, protocol: int) -> None:
    path = tmp_path / "m.pt"
    module = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.LayerNorm(2))
    torch.save({"model": module.state_dict(), "tied": module[0].weight, "step": 3}, path,
               pickle_protocol=protocol)
    fast = ckpt("ls", "--json", str(path), env=ON)
    slow = ckpt("ls", "--json", str(path), env=OFF)
    assert fast.returncode == slow.returncode == 0, fast.stderr
    assert json.loads(fast.stdout) == json.loads(slow.stdout)


def test_ckpt_ls_refuses_a_hostile_pickle_alike(tmp_path: Path) -> None:
    good = tmp_path / "good.pt"
    torch.save({"w": torch.ones(2)}, good)
    evil = _with_data_pkl(good, tmp_path / "evil.pt", EVIL)
    fast = ckpt("ls", str(evil), env=ON)
    slow = ckpt("ls", str(evil), env=OFF)
    assert fast.returncode == slow.returncode != 0
    assert fast.stderr == slow.stderr
    assert "os.system" in fast.stderr
    deep = _with_data_pkl(good, tmp_path / "deep.pt", b"\x80\x02" + b"]" * 300 + b"a" * 299 + b".")
    fast, slow = ckpt("ls", str(deep), env=ON), ckpt("ls", str(deep), env=OFF)
    assert fast.returncode == slow.returncode != 0
    assert fast.stderr == slow.stderr
    assert "nested deeper" in fast.stderr


# -- storages made in the core (torch_zip._StorageTable.stored_records) ---------------------------
def _read_both(path: Path) -> tuple[Any, Any]:
    """torch_zip.read with the fast path (storages made in the core) and with the Python machine
    (every storage through persistent_load); an error is compared as its text."""
    from unittest import mock

    def read() -> Any:
        try:
            got = torch_zip.read(path, ReadOptions())
        except Exception as e:  # the error itself is what is compared
            return type(e), str(e)
        return got.tree, got.metadata, got.notes

    fast = read()
    with mock.patch.object(pickle_fast, "enabled", return_value=False):
        slow = read()
    return fast, slow


def _saved_and_read(obj: Any, protocol: int) -> tuple[Any, Any, bool]:
    """`_read_both` of `obj` saved by torch, and whether the fast read went through columns."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.pt"
        torch.save(obj, path, pickle_protocol=protocol)
        return *_read_both(path), _columns_read(path)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(checkpoints())
def test_storages_made_in_the_core_are_persistent_loads(case: tuple[Any, int]) -> None:
    fast, slow, _ = _saved_and_read(*case)
    assert fast == slow


@st.composite
def state_dicts(draw: st.DrawFn) -> tuple[Any, int]:
    """What torch.save(model.state_dict()) writes: a dict or OrderedDict of tensors only (shared,
    views, parameters, every dtype), `_metadata` or not."""
    pool: list[torch.Tensor] = []
    state: Any = draw(st.dictionaries(st.text(max_size=6), tensors(pool), max_size=6))
    if draw(st.booleans()):
        state = OrderedDict(state)
        if draw(st.booleans()):
            state._metadata = OrderedDict({"": {"version": 1}, "m": {"version": 2, "x": [1]}})
    return state, draw(st.sampled_from(PROTOCOLS))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(state_dicts())
def test_a_state_dict_read_in_columns_is_the_python_machines_tree(case: tuple[Any, int]) -> None:
    """The same tree object for object (types, sharing, an OrderedDict's attributes), metadata
    and notes."""
    obj, protocol = case
    (tree, *rest), (slow_tree, *slow_rest), columns = _saved_and_read(obj, protocol)
    assert columns
    harness.assert_same(tree, slow_tree, {}, {})
    assert rest == slow_rest
    if isinstance(obj, OrderedDict) and hasattr(obj, "_metadata"):
        assert tree.attrs == {"_metadata": obj._metadata}


def _columns_read(path: Path) -> bool:
    """True when torch_zip read `path` through StateColumns."""
    from unittest import mock

    seen: list[Any] = []
    real = pickle_fast.tree

    def tree(value: Any) -> Any:
        seen.append(value)
        return real(value)

    with mock.patch.object(pickle_fast, "tree", tree):
        torch_zip.read(path, ReadOptions())
    return isinstance(seen[0], pickle_fast.StateColumns)


def test_a_state_dict_in_columns_shares_what_the_stream_shares(tmp_path: Path) -> None:
    """A tensor under two keys is one object, tied tensors one storage; the columns are built
    once."""
    w = torch.arange(6.0)
    path = tmp_path / "m.pt"
    torch.save({"a": w, "b": w, "c": w[2:], "d": torch.ones(2, dtype=torch.int64)}, path)
    assert _columns_read(path)
    tree = torch_zip.read(path, ReadOptions()).tree
    assert tree["a"] is tree["b"]
    assert tree["c"].storage is tree["a"].storage
    assert (tree["c"].storage_offset, tree["d"].dtype) == (2, "int64")
    data = zipfile.ZipFile(path).read("m/data.pkl")
    table = torch_zip._StorageTable(torch_zip.read_directory(str(path)), "m/", "little", "")
    handled, columns = pickle_fast.try_load(data, table.load, table.stored_records(), columns=True)
    assert handled
    assert isinstance(columns, pickle_fast.StateColumns)
    assert pickle_fast.tree(columns) == tree
    with pytest.raises(ValueError, match="built already"):
        columns.build()


def test_a_state_dict_with_a_tensor_in_its_attributes_is_a_tree(tmp_path: Path) -> None:
    """An OrderedDict whose BUILD state holds a tensor: not a state dict's columns, the tree."""
    state = OrderedDict({"a": torch.ones(2)})
    state.extra = torch.zeros(3)  # type: ignore[attr-defined]
    path = tmp_path / "m.pt"
    torch.save(state, path)
    assert not _columns_read(path)
    fast, slow = _read_both(path)
    assert fast == slow
    assert fast[0].attrs["extra"].shape == (3,)


def _rewritten(src: Path, dst: Path, change: Any) -> Path:
    """`src` rewritten member by member: change(info, data) -> (data, compress) or None (left
    out)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            changed = change(info, zin.read(info))
            if changed is not None:
                data, compress = changed
                zout.writestr(info.filename, data, compress_type=compress)
    return dst


@pytest.mark.parametrize("case", ["deflated", "short", "missing", "device"])
def test_storages_the_core_leaves_to_persistent_load(tmp_path: Path, case: str) -> None:
    """A deflated, short or missing record, and a storage saved on another device: made or
    refused by persistent_load exactly as with the fast path off."""
    src = tmp_path / "m.pt"
    torch.save({"a": torch.arange(6.0), "b": torch.ones(3, dtype=torch.int64)}, src)

    def change(info: zipfile.ZipInfo, data: bytes) -> tuple[bytes, int] | None:
        record = "/data/" in info.filename and not info.filename.endswith("serialization_id")
        first = record and info.filename.endswith("/data/0")
        if case == "deflated" and first:
            return data, zipfile.ZIP_DEFLATED
        if case == "short" and first:
            return data[:8], zipfile.ZIP_STORED
        if case == "missing" and first:
            return None
        if case == "device" and info.filename.endswith("data.pkl"):
            return data.replace(b"\x03\x00\x00\x00cpu", b"\x03\x00\x00\x00xpu"), zipfile.ZIP_STORED
        return data, zipfile.ZIP_STORED

    fast, slow = _read_both(_rewritten(src, tmp_path / f"{case}.pt", change))
    assert fast == slow
    if case in ("deflated", "device"):
        tree, _, notes = fast
        assert tree["a"].shape == (6,)
        assert any(("deflated" if case == "deflated" else "xpu") in n for n in notes)
    else:
        assert fast[0] is not tuple
        assert "data/0" in fast[1]


def test_plain_storages_need_no_persistent_load(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "m.pt"
    torch.save({"a": torch.arange(6.0), "b": torch.ones(3, dtype=torch.int64)}, path)

    def no_call(self: Any, pid: Any) -> None:
        raise AssertionError("persistent_load ran")

    monkeypatch.setattr(torch_zip._StorageTable, "load", no_call)
    got = torch_zip.read(path, ReadOptions())
    assert got.tree["b"].storage.source.length == 24
    assert got.tree["a"].storage.key == "m/data/0"
