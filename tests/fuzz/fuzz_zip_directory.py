"""Fuzz: the compiled zip directory walk (csrc/zip_directory.hpp) against zipfile_safe's reader,
and the compiled torch zip layout (csrc/torch_zip_layout.hpp) against torch_zip's steps.

On any bytes the compiled walk either declines (None), or returns exactly the members the
Python reader returns, and then the Python reader in collect mode finds no problem at all: it
never accepts a zip the reference would refuse or report. The layout (directory, root folder,
CRC-checked small records) likewise declines or agrees with `read_directory`, `_root_folder`
and `_small_records` run by the reference reader. `check` and `check_layout` are also what
tests/test_zip_directory.py runs.
"""

import common

with common.instrumented():
    from inspector._native import core
    from inspector.errors import CheckpointError
    from inspector.formats import torch_zip
    from inspector.formats.problems import Checks
    from inspector.formats.zipfile_safe import (
        _CENTRAL,
        CompiledMembers,
        ZipDirectory,
        ZipMember,
        _Reader,
    )
    from inspector.sources import BytesSource


def _reference(data: bytes, collect: bool) -> object:
    reader = _Reader(data, "fuzz.zip", 0, len(data), Checks(collect=collect))
    reader.fast = False
    try:
        members = reader.entries()
    except CheckpointError as e:
        return e
    return members, reader.checks.problems


def check(data: bytes) -> bool:
    """True when the compiled walk read `data` (and agreed); False when it declined."""
    reader = _Reader(data, "fuzz.zip", 0, len(data))
    try:
        count, cd_size, cd_off, cd_end = reader._end_record()
    except CheckpointError:
        return False
    if cd_off + cd_size > cd_end or count * _CENTRAL.size > cd_size:
        return False
    found = reader._compiled_entries(cd_off, cd_size, count)
    if found is None:
        return False
    assert _reference(data, False) == (found, []), "the compiled walk disagrees"
    assert _reference(data, True) == (found, []), "the compiled walk hid a problem"
    return True


def _reference_layout(data: bytes) -> object:
    reader = _Reader(data, "fuzz.zip", 0, len(data))
    reader.fast = False
    try:
        members = reader.members()
        directory = ZipDirectory("fuzz.zip", "fuzz.zip", members, BytesSource(data, "fuzz.zip"))
        root = torch_zip._root_folder(directory)
        return members, root, torch_zip._small_records(directory, root)
    except CheckpointError as e:
        return e


def check_layout(data: bytes) -> bool:
    """True when the compiled layout read `data` (and agreed); False when it declined."""
    found = core.torch_zip_layout(data, 0, len(data), torch_zip._SMALL_MEMBER, ZipMember)
    if found is None:
        return False
    table, root, small = found
    members = dict(CompiledMembers(table))  # every member made, in directory order
    reference = _reference_layout(data)
    assert not isinstance(reference, Exception), f"took a zip the reference refuses: {reference}"
    assert (members, root, small) == reference, "the compiled layout disagrees"
    assert all(table.find(name) == i for i, name in enumerate(members))
    problems = _reference(data, True)
    assert problems == (list(members.values()), []), "the compiled layout hid a problem"
    return True


def TestOneInput(data: bytes) -> None:
    if len(data) <= common.MAX_LEN:
        check(data)
        check_layout(data)


if __name__ == "__main__":
    common.main(TestOneInput)
