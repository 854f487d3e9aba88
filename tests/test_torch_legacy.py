"""The legacy (pre-1.6) torch reader against real `_use_new_zipfile_serialization=False` files."""

from __future__ import annotations

import io
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from torch_helpers import CASES, ROOTS, assert_same_tensors, save, torch_load

import inspector
from inspector.errors import UnsupportedFormatError
from inspector.formats import torch_legacy

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


def test_old_tar_layout_is_recognised_and_refused(tmp_path: Path) -> None:
    path = tmp_path / "ancient.pt"
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for name in ("sys_info", "pickle", "tensors", "storages"):
            data = pickle.dumps(0, protocol=2)
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    with pytest.raises(UnsupportedFormatError, match=r"torch < 0\.4 tar checkpoint"):
        inspector.open(path)


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
