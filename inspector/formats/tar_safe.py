"""Tar headers read without extracting anything: ustar, PAX and GNU long names.

Every member is checked before anyone uses the archive: links, device files, absolute paths and
`..` components are refused (UnsafeArchiveMemberError), sizes are checked against the file, and
an archive that stops before its end-of-archive block is reported as truncated. Data is never
copied out: callers read a member in place at `Member.offset`.

`scan_members` runs the same checks in collect mode (problems.Checks) for `ckpt scan`: every
unsafe or duplicated member is reported and the walk goes on; a header that cannot be parsed, or
data beyond the archive, ends it with a problem instead of an exception.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ..errors import ArchiveError, DuplicateKeyError, TruncatedFileError, UnsafeArchiveMemberError
from ..sources import Source, name_of, opened, stream
from .problems import Checks, Problem

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
LINKS = (b"1", b"2")
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


def is_tar_head(head: bytes) -> bool:
    """A ustar/GNU tar by its first header block's magic (the readers' and scan's one test)."""
    return head[257:262] == b"ustar"


def read_members(path: Path | Source) -> list[Member]:
    """Every member of an uncompressed tar, checked; no data is read except extended headers."""
    with opened(path) as src, stream(src) as f:
        return list(_checked_members(f, src.name, src.size, Checks()))


@dataclass(frozen=True)
class TarScan:
    members: list[Member]  # files and folders whose data lie in the archive, in archive order
    problems: list[Problem]


def scan_members(f: BinaryIO, size: int, label: str) -> TarScan:
    """The tar in `f`'s bytes [0, size), checked like read_members() but collecting every
    problem under its `ckpt scan` finding code: tar-link, tar-special-member, tar-traversal
    (the member is still listed: its bytes are worth scanning), tar-duplicate-member, and,
    ending the walk, tar-malformed, tar-size-beyond-file, tar-truncated (no end-of-archive
    block)."""
    checks = Checks(collect=True)
    return TarScan(list(_checked_members(f, label, size, checks)), checks.problems)


def _checked_members(f: BinaryIO, label: str, file_size: int, checks: Checks) -> Iterator[Member]:
    seen: set[str] = set()
    for member in _iter_members(f, label, file_size, checks):
        if member.key in seen and member.kind == "file":
            checks.fail(
                "tar-duplicate-member",
                DuplicateKeyError(label, "tar member appears twice", key=member.name),
            )
        seen.add(member.key)
        yield member


def read_member(path: Path | Source, member: Member, limit: int) -> bytes:
    """The bytes of a (small) member, refused above `limit` bytes."""
    label = name_of(path)
    if member.size > limit:
        raise ArchiveError(
            label, f"member is {member.size} bytes, over the {limit}-byte cap", key=member.name
        )
    with opened(path) as src:
        if member.offset + member.size > src.size:
            raise TruncatedFileError(label, "archive ends inside this member", key=member.name)
        return src.read(member.offset, member.size)


def _iter_members(f: BinaryIO, label: str, file_size: int, checks: Checks) -> Iterator[Member]:
    pos = 0
    pending: dict[str, str] = {}  # PAX / GNU overrides for the next member
    global_pax: dict[str, str] = {}
    while True:
        block = _read_block(f, label, pos, file_size, checks)
        if block is None or block == bytes(BLOCK):
            return  # end-of-archive marker (or, collecting, an archive that ends early)
        try:
            header = _parse_header(label, block, pos)
            overrides = {**global_pax, **pending}
            extended = header.flag in EXTENDED
            size = header.size if extended else _pax_size(label, header, overrides)
        except ArchiveError as e:
            checks.fail("tar-malformed", e)
            return
        data_at = pos + BLOCK
        name = header.name if extended else overrides.get("path", header.name)
        if data_at + size > file_size:
            checks.fail(
                "tar-size-beyond-file",
                TruncatedFileError(
                    label,
                    f"member data [{data_at}, {data_at + size}) runs past the end of the "
                    f"archive ({file_size} bytes)",
                    key=name,
                ),
            )
            return
        if extended:
            try:
                _extended(f, label, header, data_at, pending, global_pax)
            except ArchiveError as e:
                checks.fail("tar-malformed", e)
                return
        else:
            link = overrides.get("linkpath", header.linkname)
            pending = {}
            member = _member(label, header, name, link, data_at, size, checks)
            if member is not None:
                yield member
        pos = data_at + _padded(size)


def _read_block(f: BinaryIO, label: str, pos: int, file_size: int, checks: Checks) -> bytes | None:
    if pos >= file_size:
        what = f"archive ends at {file_size} without its end-of-archive block"
        checks.fail("tar-truncated", TruncatedFileError(label, what))
        return None
    f.seek(pos)
    block = f.read(BLOCK)
    if len(block) < BLOCK:
        what = f"archive ends inside the tar header at offset {pos}"
        checks.fail("tar-truncated", TruncatedFileError(label, what))
        return None
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


def _member(
    label: str, header: _Header, name: str, link: str, offset: int, size: int, checks: Checks
) -> Member | None:
    """The member, or None for one that is refused (collecting: reported, then skipped)."""
    if header.flag in UNSAFE:
        what = UNSAFE[header.flag] + (f" to {link!r}" if header.flag in LINKS and link else "")
        code = "tar-link" if header.flag in LINKS else "tar-special-member"
        checks.fail(
            code, UnsafeArchiveMemberError(label, f"tar member is a {what}: refused", key=name)
        )
        return None
    kind = KINDS.get(header.flag)
    if kind is None:
        error = ArchiveError(label, f"unsupported tar member type {header.flag!r}", key=name)
        checks.fail("tar-special-member", error)
        return None
    problem = _name_problem(name)
    if problem is not None:
        checks.fail("tar-traversal", UnsafeArchiveMemberError(label, problem, key=name))
    return Member(name, kind, offset, size)


def _name_problem(name: str) -> str | None:
    parts = name.replace("\\", "/").split("/")
    if not name or name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return "tar member has an absolute or empty path: refused"
    if ".." in parts:
        return "tar member path climbs out with '..': refused"
    return None
