"""Tar headers read without extracting anything: ustar, PAX and GNU long names.

Every member is checked before anyone uses the archive: links, device files, absolute paths and
`..` components are refused (UnsafeArchiveMemberError), sizes are checked against the file, and
an archive that stops before its end-of-archive block is reported as truncated. Data is never
copied out: callers read a member in place at `Member.offset`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ..errors import ArchiveError, DuplicateKeyError, TruncatedFileError, UnsafeArchiveMemberError

BLOCK = 512
MAX_EXTENDED_HEADER = 1 << 20  # PAX records and GNU long names are small; refuse huge ones

# typeflag -> member kind, for the members a checkpoint may hold.
KINDS = {b"0": "file", b"\0": "file", b"7": "file", b"5": "dir"}
# typeflag -> what it is, for members that are refused outright.
UNSAFE = {
    b"1": "hard link",
    b"2": "symbolic link",
    b"3": "character device",
    b"4": "block device",
    b"6": "FIFO",
}
# typeflags that describe the next member rather than being one.
PAX_LOCAL, PAX_GLOBAL, GNU_LONGNAME, GNU_LONGLINK = b"x", b"g", b"L", b"K"
EXTENDED = (PAX_LOCAL, PAX_GLOBAL, GNU_LONGNAME, GNU_LONGLINK)

POSIX_MAGIC = b"ustar\x0000"


@dataclass(frozen=True)
class Member:
    name: str  # as stored: "./model_config.yaml"
    kind: str  # "file" or "dir"
    offset: int  # absolute offset of the member's data in the tar file
    size: int

    @property
    def key(self) -> str:
        """The name without leading "./" and trailing "/": "model_config.yaml", "" for "."."""
        parts = [p for p in self.name.split("/") if p not in ("", ".")]
        return "/".join(parts)


@dataclass(frozen=True)
class _Header:
    name: str
    flag: bytes
    size: int
    linkname: str


def read_members(path: Path) -> list[Member]:
    """Every member of an uncompressed tar, checked; no data is read except extended headers."""
    label = os.fspath(path)
    members: list[Member] = []
    seen: set[str] = set()
    with open(path, "rb") as f:
        file_size = os.fstat(f.fileno()).st_size
        for member in _iter_members(f, label, file_size):
            if member.key in seen and member.kind == "file":
                raise DuplicateKeyError(label, "tar member appears twice", key=member.name)
            seen.add(member.key)
            members.append(member)
    return members


def read_member(path: Path, member: Member, limit: int) -> bytes:
    """The bytes of a (small) member, refused above `limit` bytes."""
    if member.size > limit:
        raise ArchiveError(
            path, f"member is {member.size} bytes, over the {limit}-byte cap", key=member.name
        )
    with open(path, "rb") as f:
        f.seek(member.offset)
        data = f.read(member.size)
    if len(data) != member.size:
        raise TruncatedFileError(path, "archive ends inside this member", key=member.name)
    return data


def _iter_members(f: BinaryIO, label: str, file_size: int) -> Iterator[Member]:
    pos = 0
    pending: dict[str, str] = {}  # PAX / GNU overrides for the next member
    global_pax: dict[str, str] = {}
    while True:
        block = _read_block(f, label, pos, file_size)
        if block == bytes(BLOCK):
            return  # end-of-archive marker
        header = _parse_header(label, block, pos)
        overrides = {**global_pax, **pending}
        size = _pax_size(label, header, overrides) if header.flag not in EXTENDED else header.size
        data_at = pos + BLOCK
        name = overrides.get("path", header.name) if header.flag not in EXTENDED else header.name
        if data_at + size > file_size:
            raise TruncatedFileError(
                label,
                f"member data [{data_at}, {data_at + size}) runs past the end of the archive "
                f"({file_size} bytes)",
                key=name,
            )
        if header.flag in EXTENDED:
            _extended(f, label, header, data_at, pending, global_pax)
        else:
            pending = {}
            yield _member(label, header, name, data_at, size)
        pos = data_at + _padded(size)


def _read_block(f: BinaryIO, label: str, pos: int, file_size: int) -> bytes:
    if pos >= file_size:
        raise TruncatedFileError(
            label, f"archive ends at {file_size} without its end-of-archive block"
        )
    f.seek(pos)
    block = f.read(BLOCK)
    if len(block) < BLOCK:
        raise TruncatedFileError(label, f"archive ends inside the tar header at offset {pos}")
    return block


def _parse_header(label: str, block: bytes, pos: int) -> _Header:
    stored = _number(label, block[148:156], pos, "checksum")
    unsigned = sum(block[:148]) + 8 * 0x20 + sum(block[156:])
    signed = unsigned - 2 * sum(b for b in block[:148] + block[156:] if b > 127)
    if stored not in (unsigned, signed):
        raise ArchiveError(
            label, f"tar header at offset {pos} has a bad checksum (not a tar file, or corrupt)"
        )
    name = _text(block[0:100])
    if block[257:265] == POSIX_MAGIC and block[345] != 0:
        name = f"{_text(block[345:500])}/{name}"
    return _Header(
        name, block[156:157], _number(label, block[124:136], pos, "size"), _text(block[157:257])
    )


def _number(label: str, field: bytes, pos: int, what: str) -> int:
    if field[0] & 0x80:  # GNU base-256, used for sizes over 8 GiB
        if field[0] == 0xFF:
            raise ArchiveError(label, f"tar header at offset {pos} has a negative {what}")
        return int.from_bytes(bytes([field[0] & 0x7F]) + field[1:], "big")
    digits = field.replace(b"\0", b" ").strip()
    try:
        return int(digits, 8) if digits else 0
    except ValueError:
        raise ArchiveError(
            label, f"tar header at offset {pos} has a malformed {what} field {field!r}"
        ) from None


def _text(field: bytes) -> str:
    return field.split(b"\0", 1)[0].decode("utf-8", "replace")


def _padded(size: int) -> int:
    return -(-size // BLOCK) * BLOCK


def _pax_size(label: str, header: _Header, overrides: dict[str, str]) -> int:
    if "size" not in overrides:
        return header.size
    try:
        size = int(overrides["size"])
    except ValueError:
        size = -1
    if size < 0:
        raise ArchiveError(label, f"PAX size {overrides['size']!r} is not a size", key=header.name)
    return size


def _extended(
    f: BinaryIO,
    label: str,
    header: _Header,
    at: int,
    pending: dict[str, str],
    global_pax: dict[str, str],
) -> None:
    if header.size > MAX_EXTENDED_HEADER:
        raise ArchiveError(
            label, f"extended header of {header.size} bytes at offset {at - BLOCK} is too large"
        )
    f.seek(at)
    data = f.read(header.size)
    if header.flag == GNU_LONGNAME:
        pending["path"] = _text(data)
    elif header.flag == GNU_LONGLINK:
        pending["linkpath"] = _text(data)
    else:
        records = _pax_records(label, data, at - BLOCK)
        (pending if header.flag == PAX_LOCAL else global_pax).update(records)


def _pax_records(label: str, data: bytes, pos: int) -> dict[str, str]:
    """Parse "LEN key=value\\n" records (LEN counts the whole record)."""
    records: dict[str, str] = {}
    i = 0
    while i < len(data) and data[i] != 0:
        space = data.find(b" ", i)
        try:
            length = int(data[i:space]) if space > i else 0
        except ValueError:
            length = 0
        record = data[space + 1 : i + length]
        if (
            length <= 0
            or i + length > len(data)
            or not record.endswith(b"\n")
            or b"=" not in record
        ):
            raise ArchiveError(label, f"malformed PAX record in the header at offset {pos}")
        key, value = record[:-1].split(b"=", 1)
        records[key.decode("utf-8", "replace")] = value.decode("utf-8", "replace")
        i += length
    return records


def _member(label: str, header: _Header, name: str, offset: int, size: int) -> Member:
    if header.flag in UNSAFE:
        raise UnsafeArchiveMemberError(
            label, f"tar member is a {UNSAFE[header.flag]}: refused", key=name
        )
    kind = KINDS.get(header.flag)
    if kind is None:
        raise ArchiveError(label, f"unsupported tar member type {header.flag!r}", key=name)
    check_member_name(label, name)
    return Member(name, kind, offset, size)


def check_member_name(label: str, name: str) -> None:
    """Refuse a name that could land outside a destination folder if it were extracted."""
    parts = name.replace("\\", "/").split("/")
    if not name or name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise UnsafeArchiveMemberError(
            label, "tar member has an absolute or empty path: refused", key=name
        )
    if ".." in parts:
        raise UnsafeArchiveMemberError(
            label, "tar member path climbs out with '..': refused", key=name
        )
