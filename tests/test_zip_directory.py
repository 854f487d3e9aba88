"""The compiled zip directory walk (csrc/zip_directory.hpp) against zipfile_safe's Python reader,
the reference: on any bytes it declines or returns exactly the reference's members, and a zip
with any problem is declined, so every error still comes from the Python reader."""

from __future__ import annotations

import io
import sys
import zipfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from subproc import child_env, ckpt

import inspector
from inspector._native import core
from inspector.errors import ArchiveError, DuplicateKeyError, OffsetError
from inspector.formats import ReadOptions, torch_zip
from inspector.formats.zipfile_safe import CompiledMembers, ZipMember, read_directory
from inspector.sources import BytesSource, LocalFile

sys.path.insert(0, str(Path(__file__).parent / "fuzz"))
import fuzz_zip_directory as harness

FUZZ = Path(harness.__file__).parent
SEEDS = sorted((FUZZ / "corpus" / "zip_directory").iterdir())


def _zip(members: list[tuple[str, bytes]], method: int = zipfile.ZIP_STORED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=method) as z:
        for name, data in members:
            z.writestr(name, data)
    return buf.getvalue()


def test_the_fuzz_corpus_agrees() -> None:
    """Every seed and finding of every harness: declined or the same members; the clean seeds
    (torch checkpoints, stored, deflated, zip64 extras) are read by the compiled walk."""
    files = [f for f in sorted(FUZZ.glob("*/*/*")) if f.is_file()]
    read = {f.name for f in files if harness.check(f.read_bytes())}
    assert {"state.pt", "lightning.pt", "own-writer.pt", "stored.zip", "deflated.zip",
            "zip64.zip"} <= read
    assert not {"duplicate.zip", "non-ascii.zip"} & read


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(SEEDS), st.lists(st.tuples(st.integers(0, 1 << 16), st.integers(0, 255)),
                                        min_size=1, max_size=4))
def test_mutated_seeds_are_declined_or_agree(seed: Path, flips: list[tuple[int, int]]) -> None:
    data = bytearray(seed.read_bytes())
    for at, value in flips:
        data[at % len(data)] = value
    harness.check(bytes(data))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.text("ab/.0", min_size=1, max_size=6), st.binary(max_size=40)),
                min_size=1, max_size=6, unique_by=lambda m: m[0]),
       st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED]))
def test_written_zips_are_read_by_the_compiled_walk(
    members: list[tuple[str, bytes]], method: int
) -> None:
    assert harness.check(_zip(members, method))


def test_a_duplicate_is_declined_and_refused_by_the_reference(tmp_path: Path) -> None:
    path = tmp_path / "dup.zip"
    path.write_bytes(_zip([("a/x", b"1"), ("a/y", b"2")]).replace(b"a/y", b"a/x"))
    assert not harness.check(path.read_bytes())
    with pytest.raises(DuplicateKeyError, match="appears twice"):
        read_directory(path)


def test_overlapping_members_are_declined_and_refused(tmp_path: Path) -> None:
    data = bytearray(_zip([("a", b"1" * 8), ("b", b"2" * 8)]))
    central = data.find(b"PK\x01\x02")  # member a: stored size 8 -> 20, into b's header
    data[central + 20 : central + 28] = (20).to_bytes(4, "little") * 2
    path = tmp_path / "overlap.zip"
    path.write_bytes(bytes(data))
    assert not harness.check(bytes(data))
    with pytest.raises((OffsetError, ArchiveError)):
        read_directory(path)


# The torch zip layout: the directory, the root folder and the small records in one pass --------


def _torch_zip(tmp_path: Path) -> bytes:
    torch = pytest.importorskip("torch")
    path = tmp_path / "m.pt"
    torch.save({"w": torch.ones(2, 3), "b": torch.zeros(3)}, path)
    return path.read_bytes()


def test_the_fuzz_corpus_agrees_on_the_layout() -> None:
    """Every seed and finding: declined or the reference's layout; torch's own zips are read."""
    files = [f for f in sorted(FUZZ.glob("*/*/*")) if f.is_file()]
    read = {f.name for f in files if harness.check_layout(f.read_bytes())}
    assert {"state.pt", "lightning.pt", "own-writer.pt"} <= read
    assert "stored.zip" in read  # a/data.pkl, a/data/0
    assert not {"deflated.zip", "duplicate.zip"} & read  # a deflated small record; a duplicate


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from([s for s in SEEDS if s.suffix == ".pt"]),
       st.lists(st.tuples(st.integers(0, 1 << 16), st.integers(0, 255)), min_size=1, max_size=4))
def test_mutated_checkpoints_are_declined_or_agree_on_the_layout(
    seed: Path, flips: list[tuple[int, int]]
) -> None:
    data = bytearray(seed.read_bytes())
    for at, value in flips:
        data[at % len(data)] = value
    harness.check_layout(bytes(data))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["r/data.pkl", "r/version", "r/byteorder", "r/data/0",
                                           "r/data/1", "s/data.pkl", "r/.data/x", "data.pkl"]),
                          st.binary(max_size=40)),
                min_size=1, max_size=6, unique_by=lambda m: m[0]),
       st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED]))
def test_written_zips_agree_on_the_layout(members: list[tuple[str, bytes]], method: int) -> None:
    """Any set of members (none, one or two roots, members outside the root, deflated small
    records): declined or the reference's layout; a stored zip with one root is read."""
    names = [n for n, _ in members]
    read = harness.check_layout(_zip(members, method))
    roots = [n.removesuffix("data.pkl") for n in names if n.endswith("/data.pkl")]
    one_root = len(roots) == 1 and all(n.startswith(roots[0]) for n in names)
    assert read == (one_root and method == zipfile.ZIP_STORED)


def test_an_altered_small_record_is_declined_and_refused(tmp_path: Path) -> None:
    data = bytearray(_torch_zip(tmp_path))
    at = data.find(b"little")
    data[at : at + 6] = b"LITTLE"  # the byteorder record, its CRC left as it was
    assert not harness.check_layout(bytes(data))
    path = tmp_path / "altered.pt"
    path.write_bytes(bytes(data))
    with pytest.raises(ArchiveError, match="CRC-32"):
        torch_zip.read(path, ReadOptions())


def test_a_torch_zip_inside_a_larger_file_is_read_in_place(tmp_path: Path) -> None:
    """The layout of a zip at an offset of a file (a chunk of a DCP file): offsets absolute."""
    data = _torch_zip(tmp_path)
    padded = b"x" * 1000 + data + b"y" * 77
    small = torch_zip._SMALL_MEMBER
    found = core.torch_zip_layout(padded, 1000, len(data), small, ZipMember)
    alone = core.torch_zip_layout(data, 0, len(data), small, ZipMember)
    assert found is not None
    assert alone is not None
    assert found[1:] == alone[1:]
    assert [m.data_offset - 1000 for m in CompiledMembers(found[0]).values()] == [
        m.data_offset for m in CompiledMembers(alone[0]).values()]
    assert core.torch_zip_layout(padded, 1001, len(data), small, ZipMember) is None
    assert core.torch_zip_layout(padded, 1000, len(padded), small, ZipMember) is None


def test_ckpt_ls_is_the_same_with_the_compiled_walk_off(tmp_path: Path) -> None:
    for seed in ("state.pt", "lightning.pt", "own-writer.pt"):
        path = FUZZ / "corpus" / "zip_directory" / seed
        for flags in ([], ["--flat"], ["--json"]):
            on = ckpt("ls", *flags, str(path))
            off = ckpt("ls", *flags, str(path), env=child_env(INSPECTOR_ZIP_FAST="0"))
            assert on.returncode == off.returncode == 0, on.stderr + off.stderr
            assert on.stdout == off.stdout


def test_the_compiled_members_are_the_directory_as_a_mapping(tmp_path: Path) -> None:
    """What torch_zip keeps of a compiled layout (`CompiledMembers`, over the core's table) answers
    as read_directory's dict does: the same members in the same order, KeyError and `in` for a
    name it lacks (any object), and its names outlive the buffer they were read from."""
    data = bytearray(_torch_zip(tmp_path))
    found = core.torch_zip_layout(data, 0, len(data), torch_zip._SMALL_MEMBER, ZipMember)
    assert found is not None
    members = CompiledMembers(found[0])
    reference = read_directory(BytesSource(bytes(data), "m.pt")).members
    data[:] = b"\0" * len(data)  # the table copied what it keeps
    assert list(members) == list(reference)
    assert dict(members) == reference
    assert len(members) == len(reference)
    assert members.get("m/data/9") is None
    assert "m/data/9" not in members
    assert 3 not in members
    assert None not in members
    assert "é" not in members
    with pytest.raises(KeyError):
        members["m/data"]
    with pytest.raises(IndexError):
        found[0].member(len(reference))


def test_a_large_zip_gives_its_pages_back_once_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A zip past _RELEASE_FROM bytes releases its range once its directory and pickle are read;
    the tensors read after that are torch's."""
    torch = pytest.importorskip("torch")
    path = tmp_path / "m.pt"
    torch.save({"w": torch.arange(6.0).reshape(2, 3), "b": torch.ones(3)}, path)
    released: list[tuple[str, int, int]] = []
    real = LocalFile.release

    def spy(self: LocalFile, offset: int, length: int) -> None:
        released.append((self.name, offset, length))
        real(self, offset, length)

    monkeypatch.setattr(LocalFile, "release", spy)
    monkeypatch.setattr(torch_zip, "_RELEASE_FROM", 0)
    with inspector.open(path) as ckpt:
        assert released == [(str(path), 0, path.stat().st_size)]
        loaded = torch.load(path, weights_only=True)
        for name in ("w", "b"):
            assert (torch.from_numpy(ckpt.array(name).copy()) == loaded[name]).all()
    released.clear()
    monkeypatch.setattr(torch_zip, "_RELEASE_FROM", path.stat().st_size + 1)
    inspector.open(path).close()
    assert released == []
