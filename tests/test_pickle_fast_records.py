"""The fast path's records mode (formats.pickle_fast.try_load_records): a torch.distributed
checkpoint's `.metadata` is a pickle of torch's data classes (NEWOBJ + BUILD), torch.Size calls
and a pathlib path. Read by the compiled path, it is the tree the Python machine builds, field
by field and with the same sharing; what the Python machine refuses, the fast path declines;
the DCP reader and `ckpt ls` say the same with the fast path on or off."""

from __future__ import annotations

import json
import pickle
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import torch
import torch.distributed.checkpoint as dcp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from subproc import child_env, ckpt

import inspector
from inspector.formats import pickle_fast
from inspector.formats.unpickler import load

sys.path.insert(0, str(Path(__file__).resolve().parent / "fuzz"))
import fuzz_pickle_fast as harness

pytestmark = pytest.mark.filterwarnings("ignore:torch.distributed is disabled:UserWarning")
ON, OFF = child_env(**{pickle_fast.ENV: "1"}), child_env(**{pickle_fast.ENV: "0"})

# Data classes in a module under torch's name (the fast path takes torch's globals at any
# protocol), shaped like DCP's: a frozen key class, a mutable value class, a container.
MODULE = types.ModuleType("torch._inspector_records_test")


@dataclass(frozen=True)
class Index:
    fqn: str
    offset: Any = None
    index: int | None = None


@dataclass
class Info:
    relative_path: str
    offset: int
    length: int


@dataclass
class Meta:
    entries: dict[Any, Any] = field(default_factory=dict)
    extra: Any = None


for _cls in (Index, Info, Meta):
    _cls.__module__ = MODULE.__name__
    setattr(MODULE, _cls.__name__, _cls)
sys.modules[MODULE.__name__] = MODULE

LEAVES = st.one_of(
    st.integers(-(1 << 70), 1 << 70), st.text(max_size=6), st.booleans(), st.none(),
    st.floats(allow_nan=False), st.binary(max_size=4),
    st.lists(st.integers(0, 9), max_size=3).map(torch.Size),
    st.builds(PurePosixPath, st.sampled_from(["/", "/tmp", "a/b"])),
)


def values() -> st.SearchStrategy[Any]:
    return st.recursive(
        LEAVES,
        lambda kids: st.one_of(
            st.lists(kids, max_size=3), st.lists(kids, max_size=3).map(tuple),
            st.dictionaries(st.text(max_size=4), kids, max_size=3),
            st.builds(Info, st.text(max_size=4), st.integers(0, 99), st.integers(0, 99)),
            st.builds(Meta, st.dictionaries(keys(), kids, max_size=3), kids),
        ),
        max_leaves=10,
    )


def keys() -> st.SearchStrategy[Any]:
    offsets = st.one_of(st.none(), st.lists(st.integers(0, 9), max_size=3).map(torch.Size))
    return st.one_of(st.text(max_size=4), st.builds(Index, st.text(max_size=4), offsets,
                                                     st.one_of(st.none(), st.integers(0, 3))))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.builds(Meta, st.dictionaries(keys(), values(), max_size=4), values()),
       st.sampled_from([2, 3, 4, 5]))
def test_records_are_the_python_machines_tree(meta: Meta, protocol: int) -> None:
    data = pickle.dumps(meta, protocol=protocol)
    handled = harness.check_records(data)
    if protocol >= 3:  # at 2, a name outside torch (pathlib) is the Python machine's to rename
        assert handled, pickle_fast.try_load_records(data)[1]


def test_a_shared_record_stays_shared() -> None:
    info = Info("__0_0.distcp", 0, 8)
    data = pickle.dumps(Meta({Index("w"): info, Index("b"): info}, [info]), protocol=4)
    handled, tree = pickle_fast.try_load_records(data)
    assert handled
    first, second = tree.state["entries"].values()
    assert first is second is tree.state["extra"][0]
    assert harness.check_records(data)


def test_a_call_outside_the_allow_list_is_a_record_and_never_runs() -> None:
    # os.system("true") at protocol 4: STACK_GLOBAL, REDUCE
    data = (b"\x80\x04\x8c\x02os\x94\x8c\x06system\x94\x93\x94\x8c\x04true\x94\x85\x94R\x94.")
    handled, tree = pickle_fast.try_load_records(data)
    assert handled
    assert (tree.cls, tree.kind, tree.args) == ("os.system", "unsupported-global", ("true",))
    assert tree == load(data, path="x.pkl", strict=False)


@pytest.mark.parametrize("case", ["second-build", "build-after-key", "persistent-id", "bad-size"])
def test_what_the_fast_path_leaves_to_the_python_machine(case: str) -> None:
    body = {
        # an object BUILT twice: the Python machine merges or replaces, the fast path declines
        "second-build": b"\x8c\x1dtorch._inspector_records_test\x8c\x04Info\x93)\x81}b}b",
        # BUILD after the object was used as a dict key (its hash would change)
        "build-after-key": b"}\x8c\x1dtorch._inspector_records_test\x8c\x05Index\x93)\x81"
                           b"\x94K\x01sh\x00}b0",
        "persistent-id": b"\x8c\x03pid\x94Q",
        # torch.Size(-1): the builder refuses it; the Python machine says why
        "bad-size": b"\x8c\x05torch\x8c\x04Size\x93J\xff\xff\xff\xff\x85\x85R",
    }[case]
    data = b"\x80\x04" + body + b"."
    assert not pickle_fast.try_load_records(data)[0]
    harness.check_records(data)  # no disagreement, whatever the Python machine says


def _training_state() -> dict[str, Any]:
    g = torch.Generator().manual_seed(3)
    return {
        "model": {"enc.weight": torch.randn(6, 4, generator=g),
                  "enc.bias": torch.randn(4, generator=g).to(torch.bfloat16),
                  "ids": torch.arange(5)},
        "optim": {"state": {"enc.weight": {"step": torch.tensor(3.0),
                                           "exp_avg": torch.zeros(6, 4)}},
                  "param_groups": [{"lr": 0.1, "params": ["enc.weight"]}]},
        "step": 7,
        "name": "run",
    }


def test_a_real_dcp_metadata_is_read_by_the_fast_path(tmp_path: Path) -> None:
    dcp.save(_training_state(), checkpoint_id=str(tmp_path))
    data = (tmp_path / ".metadata").read_bytes()
    handled, fast = pickle_fast.try_load_records(data)
    assert handled, fast
    assert harness.check_records(data)
    assert fast.cls == "torch.distributed.checkpoint.metadata.Metadata"


def test_the_dcp_reader_uses_it_and_ls_is_the_same_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dcp.save(_training_state(), checkpoint_id=str(tmp_path))

    def no_python_machine(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the Python machine ran")

    from inspector.formats import unpickler

    monkeypatch.setattr(unpickler, "load", no_python_machine)
    monkeypatch.setenv(pickle_fast.ENV, "1")
    opened = inspector.open(tmp_path)
    assert sorted(opened) == ["enc.bias", "enc.weight", "ids"]
    monkeypatch.undo()
    on = ckpt("ls", "--json", str(tmp_path), env=ON)
    off = ckpt("ls", "--json", str(tmp_path), env=OFF)
    assert on.returncode == off.returncode == 0, on.stderr
    assert json.loads(on.stdout) == json.loads(off.stdout)


def test_the_binding_checks_its_types_argument() -> None:
    from inspector._native import core
    from inspector.formats.pickle_build import AttrDict
    from inspector.model import Storage, TensorInfo

    with pytest.raises(TypeError, match="types"):
        core.load_torch_pickle(b"\x80\x02ctorch\nFloatStorage\n.", None,
                               (1, Storage, TensorInfo, AttrDict), lambda name: None)


# -- the DCP columns (read_dcp_metadata): the same specs as the tree, or declined ------------------
def _saved_metadata(tmp_path: Path) -> bytes:
    dcp.save(_training_state(), checkpoint_id=str(tmp_path))
    return (tmp_path / ".metadata").read_bytes()


def test_the_columns_say_what_the_tree_says(tmp_path: Path) -> None:
    data = _saved_metadata(tmp_path)
    assert pickle_fast.read_dcp_metadata(data)[0]
    assert harness.check_dcp_columns(data)  # equal to the reader's own reading of the tree


def _rewritten(data: bytes, change: Any) -> bytes:
    """The .metadata unpickled by torch's own classes (test side only), changed, pickled again."""
    meta = pickle.loads(data)
    change(meta)
    return pickle.dumps(meta, protocol=4)


def _with_transforms(meta: Any) -> None:
    info = next(iter(meta.storage_data.values()))
    info.transform_descriptors = ["zstd"]


def _with_chunks_in_a_tuple(meta: Any) -> None:
    entry = next(e for e in meta.state_dict_metadata.values() if hasattr(e, "chunks"))
    entry.chunks = tuple(entry.chunks)


def _with_an_unknown_entry(meta: Any) -> None:
    meta.state_dict_metadata["odd"] = PurePosixPath("/x")


@pytest.mark.parametrize("change", [_with_transforms, _with_chunks_in_a_tuple,
                                    _with_an_unknown_entry])
def test_what_the_columns_decline_the_reader_judges_from_the_tree(
    tmp_path: Path, change: Any
) -> None:
    folder = tmp_path / "ck"
    data = _rewritten(_saved_metadata(folder), change)
    (folder / ".metadata").write_bytes(data)
    handled, why = pickle_fast.read_dcp_metadata(data)
    assert not handled
    assert isinstance(why, str)
    harness.check_dcp_columns(data)
    on = ckpt("ls", "--json", str(folder), env=ON)
    off = ckpt("ls", "--json", str(folder), env=OFF)
    assert on.returncode == off.returncode, on.stderr
    assert on.stdout == off.stdout
    assert on.stderr == off.stderr
