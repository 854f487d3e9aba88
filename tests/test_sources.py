"""The byte-source interface (inspector.sources): one contract, checked against every source, and
the plug-in point: checkpoints read, listed and hashed from bytes that never touch the disk."""

from __future__ import annotations

import ast
import builtins
import contextlib
import io
import mmap
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from numpy.testing import assert_array_equal
from safetensors.torch import save as st_save

import inspector
from inspector import hashing
from inspector.errors import TruncatedFileError, UnsupportedFormatError
from inspector.sources import BytesSource, LocalFile, Slices, Source, opened, sliceable, stream

DATA = bytes(range(256)) * 40 + b"needle" + bytes(300)  # 10,546 bytes: crosses pages

Make = Callable[[Path, bytes], Source]


def _local(tmp_path: Path, data: bytes) -> Source:
    path = tmp_path / "blob.bin"
    path.write_bytes(data)
    return LocalFile(path)


def _in_memory(tmp_path: Path, data: bytes) -> Source:
    return BytesSource(bytearray(data), "blob.bin")  # a writable buffer: views stay read-only


SOURCES = {"local-file": _local, "bytes": _in_memory}


@pytest.fixture(params=sorted(SOURCES))
def source(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Source]:
    src = SOURCES[request.param](tmp_path, DATA)
    yield src
    src.close()


# The contract -------------------------------------------------------------------------------------


def test_a_source_is_named_and_sized(source: Source) -> None:
    assert isinstance(source, Source)
    assert source.name.endswith("blob.bin")
    assert source.size == len(DATA)


@pytest.mark.parametrize(("offset", "length"), [(0, 0), (0, 8), (4000, 5000), (len(DATA) - 1, 1)])
def test_read_gives_exactly_the_range(source: Source, offset: int, length: int) -> None:
    got = source.read(offset, length)
    assert type(got) is bytes
    assert got == DATA[offset : offset + length]


@pytest.mark.parametrize(("offset", "length"), [(len(DATA) - 3, 4), (len(DATA) + 1, 0), (-1, 2)])
def test_read_outside_is_an_error_naming_source_and_range(
    source: Source, offset: int, length: int
) -> None:
    with pytest.raises(TruncatedFileError) as e:
        source.read(offset, length)
    assert e.value.path == source.name
    assert f"[{offset}, {offset + length})" in str(e.value)


def test_view_gives_the_range_read_only_or_none(source: Source) -> None:
    view = source.view(100, 9000)
    if view is None:  # a source that cannot map: callers read instead
        return
    assert view.readonly
    assert bytes(view) == DATA[100:9100]
    with pytest.raises(TruncatedFileError):
        source.view(len(DATA) - 1, 2)
    view.release()


def test_released_bytes_read_again_the_same(source: Source) -> None:
    view = source.view(0, len(DATA))
    source.release(0, len(DATA))  # pages dropped: they fault back in from the file
    if view is not None:
        assert bytes(view) == DATA
        view.release()
    assert source.read(0, len(DATA)) == DATA


def test_identity_starts_with_the_size_or_is_none(source: Source) -> None:
    ident = source.identity()
    assert ident is None or ident[0] == len(DATA)
    assert source.identity() == ident  # unchanged bytes: the same identity


def test_only_a_file_map_is_flagged_as_one(source: Source) -> None:
    # The hashing core drops the pages of views flagged so: never for bytes in memory.
    assert source.is_file_map is isinstance(source, LocalFile)


def test_sliceable_slices_and_searches_like_bytes(source: Source) -> None:
    for data in (sliceable(source), Slices(source)):
        assert len(data) == len(DATA)
        assert data[5] == DATA[5]
        assert bytes(data[10:20]) == DATA[10:20]
        assert data.find(b"needle") == DATA.find(b"needle")
        assert data.find(b"needle", 0, 10000) == -1
        assert data.find(b"absent") == -1


def test_stream_reads_like_a_file(source: Source) -> None:
    f = stream(source)
    f.seek(10_000)
    assert f.read(100) == DATA[10_000:10_100]
    f.seek(-4, io.SEEK_END)
    assert f.read(100) == DATA[-4:]  # short at the end only
    assert f.read(1) == b""


# LocalFile -------------------------------------------------------------------------------------


def test_local_identity_changes_when_the_file_is_written(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(DATA)
    with LocalFile(path) as src:
        before = src.identity()
        with path.open("ab") as f:
            f.write(b"more")
        after = src.identity()
    assert before[0] == len(DATA)
    assert after[0] == len(DATA) + 4
    assert after != before


def test_local_read_of_a_file_that_shrank_names_the_missing_bytes(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(DATA)
    with LocalFile(path) as src:
        os.truncate(path, 1000)
        with pytest.raises(TruncatedFileError, match=r"ends at byte 1000, inside .*changed since"):
            src.read(500, 2000)


def test_opened_closes_what_it_opened_only(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(DATA)
    with opened(path) as src:
        assert isinstance(src, LocalFile)
        assert src.read(0, 4) == DATA[:4]
    with pytest.raises(OSError, match="Bad file descriptor"):
        src.read(0, 4)  # closed on leaving
    given = BytesSource(DATA, "given")
    with opened(given) as src:
        assert src is given
    assert given.read(0, 4) == DATA[:4]


def test_a_missing_file_or_a_folder_is_an_os_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        LocalFile(tmp_path / "absent")
    with pytest.raises(IsADirectoryError):
        LocalFile(tmp_path)


# The plug-in point: checkpoints from bytes, no disk ---------------------------------------------


def _tensors() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    return {"enc.w": torch.randn(4, 3, generator=g), "enc.b": torch.arange(5, dtype=torch.int64)}


def _torch_bytes(legacy: bool) -> bytes:
    buf = io.BytesIO()
    torch.save(_tensors(), buf, _use_new_zipfile_serialization=not legacy)
    return buf.getvalue()


FILES = {
    "model.safetensors": lambda: st_save(_tensors()),
    "model.pt": lambda: _torch_bytes(legacy=False),
    "legacy.pt": lambda: _torch_bytes(legacy=True),
}
FORMATS = {"model.safetensors": "safetensors", "model.pt": "torch-zip", "legacy.pt": "torch-legacy"}


@contextlib.contextmanager
def _no_disk() -> Iterator[None]:
    """Any attempt to open, stat or map a file in the block fails the test."""
    inspector.formats.reader_modules()  # imported before the disk goes away

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"touched the disk: {args[:1]}")

    with pytest.MonkeyPatch.context() as m:
        for module, name in ((builtins, "open"), (io, "open"), (os, "open"), (os, "stat"),
                             (mmap, "mmap")):
            m.setattr(module, name, refuse)
        yield


@pytest.mark.parametrize("name", sorted(FILES))
def test_a_checkpoint_reads_lists_and_hashes_from_bytes_alone(name: str, tmp_path: Path) -> None:
    data = FILES[name]()
    path = tmp_path / name
    path.write_bytes(data)
    with inspector.open(path) as on_disk:
        expected = {n: str(d) for n, d in hashing.hash_tensors(on_disk).items()}
    src, want = BytesSource(data, name), _tensors()["enc.w"].numpy()
    with _no_disk():
        ckpt = inspector.open(src)
        assert ckpt.format == FORMATS[name]
        assert sorted(ckpt) == ["enc.b", "enc.w"]
        assert {t.storage.source.path for t in ckpt.values()} == {name}  # named by the source
        assert_array_equal(ckpt.array("enc.w"), want)
        assert {n: str(d) for n, d in hashing.hash_tensors(ckpt).items()} == expected
        # Bytes in memory are not a file map: the core must not drop their pages.
        assert not any(hashing._job(ckpt, t)[-1] for t in ckpt.values())
        ckpt.close()
    assert src.read(0, 4) == data[:4]  # the caller's source stays open


def test_a_local_file_is_hashed_as_a_file_map(tmp_path: Path, monkeypatch) -> None:
    """The core drops the pages of a local file's storages as it hashes them (from
    CORE_RELEASE_BYTES on; smaller ones, which share pages, go with their batch)."""
    path = tmp_path / "model.safetensors"
    path.write_bytes(FILES["model.safetensors"]())
    with inspector.open(path) as ckpt:
        assert not any(hashing._job(ckpt, t)[-1] for t in ckpt.values())  # all small
        monkeypatch.setattr(hashing, "CORE_RELEASE_BYTES", 0)
        assert all(hashing._job(ckpt, t)[-1] for t in ckpt.values())
        assert isinstance(ckpt.source(str(path)), LocalFile)


def test_bytes_no_reader_takes_are_refused_by_name() -> None:
    with pytest.raises(UnsupportedFormatError, match=r"notes\.txt: not a checkpoint"):
        inspector.open(BytesSource(b"just some text\n", "notes.txt"))


# Readers reach bytes through the interface only --------------------------------------------------

PACKAGE = Path(inspector.__file__).parent
# Calls that open, map or read files, by the name called.
FILE_ACCESS = {"open", "fdopen", "mmap", "pread", "read_bytes", "read_text"}
# (module, call) pairs that stay, and why.
ALLOWED = {
    ("formats/nemo.py", "fdopen"): "writes the expanded copy of a tar.gz .nemo into the cache",
}


def _file_calls(path: Path) -> Iterator[str]:
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call):
            f = node.func
            name = getattr(f, "id", None) or getattr(f, "attr", "")
            if name in FILE_ACCESS:
                yield name


def test_no_reader_opens_or_maps_files_itself() -> None:
    modules = [*sorted((PACKAGE / "formats").glob("*.py")), PACKAGE / "model.py"]
    found = {
        (p.relative_to(PACKAGE).as_posix(), call) for p in modules for call in _file_calls(p)
    }
    assert found == set(ALLOWED)
    sources = {call for call in _file_calls(PACKAGE / "sources.py")}
    assert {"open", "mmap", "pread"} <= sources  # the one place that does (the test can fail)
