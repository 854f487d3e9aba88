"""Fuzz: the compiled zip directory walk (csrc/zip_directory.hpp) against zipfile_safe's reader.

On any bytes the compiled walk either declines (None), or returns exactly the members the
Python reader returns, and then the Python reader in collect mode finds no problem at all: it
never accepts a zip the reference would refuse or report. `check` is also what
tests/test_zip_directory.py runs.
"""

import common

with common.instrumented():
    from inspector.errors import CheckpointError
    from inspector.formats.problems import Checks
    from inspector.formats.zipfile_safe import _CENTRAL, _Reader


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


def TestOneInput(data: bytes) -> None:
    if len(data) <= common.MAX_LEN:
        check(data)


if __name__ == "__main__":
    common.main(TestOneInput)
