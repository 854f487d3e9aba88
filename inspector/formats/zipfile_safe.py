"""A validating zip reader: the central directory, and each member's absolute data offset.

stdlib `zipfile` does not expose where a member's bytes start, and it trusts sizes it reads.
This reader parses the end-of-central-directory record (zip64 included), the central directory
and every local header, and refuses: sizes or offsets outside the zip, members that overlap,
duplicate names, encryption, and compression other than stored/deflate. A zip may sit at an
offset inside a larger file (a torch checkpoint inside an uncompressed .nemo tar): offsets in
the zip are relative to its start, offsets returned here are absolute in the file.

`scan_directory` runs the same checks in collect mode (problems.Checks) for `ckpt scan`: every
problem is reported under its finding code, CRCs can be verified, and the listing keeps every
member whose bytes lie inside the zip, duplicates included.
"""

from __future__ import annotations

import itertools
import mmap
import os
import struct
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from .._native import core
from ..errors import (
    ArchiveError,
    CheckpointError,
    DuplicateKeyError,
    OffsetError,
    TruncatedFileError,
)
from ..sources import Source, opened, prefetch, sliceable
from .problems import Checks, Problem

STORED, DEFLATED = 0, 8
METHODS = {STORED: "stored", DEFLATED: "deflate"}

# sig, disk, cd disk, entries on this disk, entries, cd size, cd offset, comment length
_EOCD = struct.Struct("<4s4H2LH")
_EOCD64_LOCATOR = struct.Struct("<4sLQL")
_EOCD64 = struct.Struct("<4sQ2H2L4Q")
_CENTRAL = struct.Struct("<4s6H3L5H2L")
_LOCAL = struct.Struct("<4s5H3L2H")
_MAX_COMMENT = 0xFFFF
_U16, _U32 = 0xFFFF, 0xFFFFFFFF
_MULTIDISK = (
    "multi-disk zip (disk numbers or entry counts of the end records disagree): not supported, "
    "and torch.load refuses it (unsupported multidisk archive)"
)
FAST_ENV = "INSPECTOR_ZIP_FAST"
_CHUNK = 8 << 20  # bytes per step when a member is checked or inflated as a stream
# What the compiled walks read in place (a source's map, or bytes in memory).
COMPILED_READS = (bytes, bytearray, memoryview, mmap.mmap)


def compiled_walk() -> bool:
    """False when INSPECTOR_ZIP_FAST=0: the compiled walks are off, this module's reader (the
    reference) reads every zip."""
    return os.environ.get(FAST_ENV, "1").strip() != "0"


def is_zip_head(head: bytes) -> bool:
    """A zip archive by its first bytes (a local header): what torch.load takes for one."""
    return head.startswith(b"PK\x03\x04")


@dataclass(frozen=True, slots=True)
class ZipMember:
    name: str
    header_offset: int  # absolute offset of the local header in the file
    data_offset: int  # absolute offset of the (possibly compressed) bytes in the file
    compressed_size: int
    size: int
    method: int
    crc32: int

    @property
    def data_end(self) -> int:
        return self.data_offset + self.compressed_size

    @property
    def compression(self) -> str:
        return "" if self.method == STORED else METHODS[self.method]


class CompiledMembers(Mapping[str, ZipMember]):
    """A zip's members as the compiled core keeps them (`_core.ZipTable`, from
    `torch_zip_layout`): a ZipMember is made when one is asked for. A torch.save zip holds a
    record per storage: a million ZipMember objects were half a gigabyte, and the pickle's
    storages are looked up in the table itself (`table`)."""

    __slots__ = ("table",)

    def __init__(self, table: Any) -> None:
        self.table = table

    def __getitem__(self, name: str) -> ZipMember:
        i = self.table.find(name)
        if i < 0:
            raise KeyError(name)
        member: ZipMember = self.table.member(i)
        return member

    def __contains__(self, name: object) -> bool:
        return self.table.find(name) >= 0

    def __iter__(self) -> Iterator[str]:
        return iter(self.table.names())

    def __len__(self) -> int:
        return len(self.table)


@dataclass(frozen=True)
class ZipDirectory:
    where: str  # the file (and inner member) named in messages
    path: str  # the source's name (a local file's path)
    members: Mapping[str, ZipMember]  # a dict, or CompiledMembers
    # The source members are read from, when one was given (its owner keeps it open while
    # they are read); None: the local file at `path`, opened for each read.
    source: Source | None = None


def read_directory(
    path: str | os.PathLike[str] | Source,
    base: int = 0,
    length: int | None = None,
    *,
    where: str = "",
) -> ZipDirectory:
    """Parse and validate the zip occupying [base, base + length) of `path` (a file or a
    source)."""
    given = None if isinstance(path, (str, os.PathLike)) else path
    with opened(path) as src:
        where = where or src.name
        file_size = src.size
        if length is None:
            length = file_size - base
        if base < 0 or length < 0 or base + length > file_size:
            raise TruncatedFileError(
                where, f"zip range [{base}, {base + length}) beyond the file ({file_size} bytes)"
            )
        if file_size == 0:
            raise TruncatedFileError(where, "file is empty")
        # Mapped where the source maps: only the pages holding headers are touched.
        members = _Reader(sliceable(src), where, base, length).members()
        return ZipDirectory(where, src.name, members, given)


def read_member(directory: ZipDirectory, member: ZipMember, max_size: int) -> bytes:
    """A member's bytes (inflated when deflated), at most `max_size` of them."""
    _check_cap(directory.where, member, max_size)
    if directory.source is not None:  # the usual case, without a context manager per member
        raw = _raw_bytes(directory, directory.source, member)
    else:
        with opened(directory.path) as src:
            raw = _raw_bytes(directory, src, member)
    data = _decoded(directory.where, member, raw)
    check_crc(directory.where, member, data)
    return data


def _raw_bytes(directory: ZipDirectory, src: Source, member: ZipMember) -> bytes:
    if member.data_end > src.size:
        raise TruncatedFileError(directory.where, "member data ends early", key=member.name)
    return src.read(member.data_offset, member.compressed_size)


def check_crc(where: str, member: ZipMember, data: bytes) -> None:
    """Refuse a member whose bytes do not match the CRC-32 its directory entry records: it was
    altered after it was written (torch loads such a record without a word)."""
    crc = core.crc32(data)
    if crc != member.crc32:
        raise ArchiveError(
            where,
            f"CRC-32 is {crc:08x}, the zip directory says {member.crc32:08x}: the member was "
            "altered after it was written",
            key=member.name,
        )


def member_data(data: Any, member: ZipMember, max_size: int, *, where: str) -> bytes:
    """read_member() for a zip lying in `data` (a map or bytes of the whole file)."""
    _check_cap(where, member, max_size)
    return _decoded(where, member, bytes(data[member.data_offset : member.data_end]))


def member_chunks(data: Any, member: ZipMember, *, where: str) -> Iterator[bytes]:
    """A member's bytes as a stream of chunks (inflated when deflated), memory bounded;
    ArchiveError when they inflate to more or fewer bytes than the directory says."""
    inflater = zlib.decompressobj(-15) if member.method == DEFLATED else None
    produced = 0
    for at in range(member.data_offset, member.data_end, _CHUNK):
        chunk = bytes(data[at : min(at + _CHUNK, member.data_end)])
        while chunk:
            if inflater is None:
                out, chunk = chunk, b""
            else:
                try:
                    out = inflater.decompress(chunk, _CHUNK)
                except zlib.error as e:
                    raise ArchiveError(where, f"cannot inflate: {e}", key=member.name) from None
                chunk = inflater.unconsumed_tail
            produced += len(out)
            if produced > member.size:
                break
            if out:
                yield out
        if produced > member.size:
            break
    if produced != member.size:
        got = f"{produced}{'+' if produced > member.size else ''}"
        raise ArchiveError(
            where, f"inflates to {got} bytes, the directory says {member.size}", key=member.name
        )


def member_head(data: Any, member: ZipMember, n: int = 512) -> bytes:
    """The first `n` bytes of a member (enough to tell what it holds); b"" when they cannot
    be inflated (the CRC check of scan_directory reports that)."""
    if member.method == STORED:
        return bytes(data[member.data_offset : member.data_offset + min(n, member.size)])
    raw = bytes(data[member.data_offset : min(member.data_offset + (64 << 10), member.data_end)])
    try:
        return zlib.decompressobj(-15).decompress(raw, n)
    except zlib.error:
        return b""


def _check_cap(where: str, member: ZipMember, max_size: int) -> None:
    if member.size > max_size:
        raise ArchiveError(
            where,
            f"member of {member.size} bytes exceeds the {max_size}-byte limit for it",
            key=member.name,
        )


def _decoded(where: str, member: ZipMember, raw: bytes) -> bytes:
    if len(raw) != member.compressed_size:
        raise TruncatedFileError(where, "member data ends early", key=member.name)
    if member.method == STORED:
        return raw
    try:
        inflater = zlib.decompressobj(-15)
        data = inflater.decompress(raw, member.size + 1)
    except zlib.error as e:
        raise ArchiveError(where, f"cannot inflate: {e}", key=member.name) from None
    if len(data) != member.size:
        got = f"{len(data)}{'+' if len(data) > member.size else ''}"
        raise ArchiveError(
            where, f"inflates to {got} bytes, the directory says {member.size}", key=member.name
        )
    return data


@dataclass(frozen=True)
class ZipScan:
    members: list[ZipMember]  # directory order, duplicates included; none outside the zip
    problems: list[Problem]


def scan_directory(
    data: Any, base: int, length: int, *, where: str, verify_crc: bool = True
) -> ZipScan:
    """The zip occupying [base, base + length) of `data` (a map or bytes of the whole file),
    checked like read_directory() but collecting every problem under its `ckpt scan` finding
    code: zip-malformed (no usable directory), zip-duplicate-member, zip-overlap,
    zip-name-mismatch, zip-size-beyond-file, zip-member-unreadable (encrypted, unknown
    method), zip-crc-mismatch (with `verify_crc`: stored members in place, deflated ones
    inflated as a stream)."""
    checks = Checks(collect=True)
    reader = _Reader(data, where, base, length, checks)
    try:
        members = reader.entries()
    except CheckpointError as e:  # no end record, or a directory that cannot be walked
        checks.fail("zip-malformed", e)
        members = []
    if verify_crc:
        for m in members:
            _check_crc(data, m, where, checks)
    return ZipScan(members, checks.problems)


def looks_like_zip(data: Any, base: int, length: int) -> bool:
    """Whether [base, base + length) ends with a zip end-of-central-directory record (what
    zip readers look for first, wherever the archive starts)."""
    try:
        _Reader(data, "", base, length, Checks())._end_record()
    except CheckpointError:
        return False
    return True


def _check_crc(data: Any, member: ZipMember, where: str, checks: Checks) -> None:
    crc = 0
    try:
        for chunk in member_chunks(data, member, where=where):
            crc = zlib.crc32(chunk, crc)
    except ArchiveError as e:
        checks.fail("zip-member-unreadable", e)
        return
    if crc != member.crc32:
        checks.fail(
            "zip-crc-mismatch",
            ArchiveError(
                where, f"CRC32 is {crc:08x}, the directory says {member.crc32:08x}", key=member.name
            ),
        )


class _Reader:
    def __init__(
        self, mapped: Any, where: str, base: int, length: int, checks: Checks | None = None
    ):
        self.mapped, self.where, self.base, self.length = mapped, where, base, length
        self.checks = checks or Checks()
        self.fast = True  # the compiled walk first (False: this reader alone, the reference)

    def read(self, rel: int, n: int, what: str) -> bytes:
        if rel < 0 or n < 0 or rel + n > self.length:
            raise ArchiveError(
                self.where,
                f"{what} at [{rel}, {rel + n}) lies outside the zip ({self.length} bytes)",
            )
        return self.mapped[self.base + rel : self.base + rel + n]

    def members(self) -> dict[str, ZipMember]:
        return {m.name: m for m in self.entries()}

    def entries(self) -> list[ZipMember]:
        """Every usable member in directory order (a duplicate is a problem, then kept)."""
        count, cd_size, cd_off, cd_end = self._end_record()
        if cd_off + cd_size > cd_end or count * _CENTRAL.size > cd_size:
            raise ArchiveError(
                self.where,
                f"central directory ({count} entries, {cd_size} bytes "
                f"at {cd_off}) does not fit before its end record at {cd_end}",
            )
        fast = self._compiled_entries(cd_off, cd_size, count)
        if fast is not None:
            return fast
        cd = self.read(cd_off, cd_size, "central directory")
        prefetch(self.mapped, self._local_headers(cd, count))
        members: list[ZipMember] = []
        seen: set[str] = set()
        pos = 0
        for _ in range(count):
            member, pos = self._central_entry(cd, pos, cd_off)
            if member is None:
                continue
            if member.name in seen:
                self.checks.fail(
                    "zip-duplicate-member",
                    DuplicateKeyError(self.where, "zip member appears twice", key=member.name),
                )
            seen.add(member.name)
            members.append(member)
        _check_overlaps(self.where, members, self.checks)
        return members

    def _compiled_entries(self, cd_off: int, cd_size: int, count: int) -> list[ZipMember] | None:
        """The members as the compiled walk (csrc/zip_directory.hpp) finds them, for a mapped
        or in-memory zip with nothing to report; None otherwise: this reader then runs, and
        says what is wrong (it is the reference). `INSPECTOR_ZIP_FAST=0` turns it off."""
        if not self.fast or not compiled_walk() or not isinstance(self.mapped, COMPILED_READS):
            return None
        found: list[ZipMember] | None = core.zip_central_directory(
            self.mapped, self.base, self.length, cd_off, cd_size, count, ZipMember
        )
        return found

    def _local_headers(self, cd: bytes, count: int) -> list[tuple[int, int]]:
        """Where the local headers lie (absolute), as far as the directory parses: the ranges
        `_local_header` reads next, announced so a remote source fetches them at once."""
        out, pos = [], 0
        for _ in range(count):
            if pos + _CENTRAL.size > len(cd) or cd[pos : pos + 4] != b"PK\x01\x02":
                break
            fields = _CENTRAL.unpack_from(cd, pos)
            nlen, elen, clen, hoff = fields[10], fields[11], fields[12], fields[16]
            extra = cd[pos + _CENTRAL.size + nlen : pos + _CENTRAL.size + nlen + elen]
            hoff = _zip64_sizes(extra, fields[9], fields[8], hoff)[2]
            if hoff >= 0 and hoff + _LOCAL.size + nlen <= self.length:
                out.append((self.base + hoff, _LOCAL.size + nlen))
            pos += _CENTRAL.size + nlen + elen + clen
        return out

    def _end_record(self) -> tuple[int, int, int, int]:
        # The record ends the zip unless a comment follows it (torch writes none): its last 22
        # bytes first, which a remote file fetches alone; else the window a comment may take.
        tail_len = min(self.length, _EOCD.size)
        tail = self.read(self.length - tail_len, tail_len, "end of the zip")
        if not tail.startswith(b"PK\x05\x06") or tail_len < _EOCD.size:
            tail_len = min(self.length, _EOCD.size + _MAX_COMMENT)
            tail = self.read(self.length - tail_len, tail_len, "end of the zip")
        at = tail.rfind(b"PK\x05\x06")
        while at >= 0 and at + _EOCD.size > tail_len:
            at = tail.rfind(b"PK\x05\x06", 0, at)
        if at < 0:
            raise TruncatedFileError(
                self.where, "no end-of-central-directory record: the zip is truncated or not a zip"
            )
        eocd_rel = self.length - tail_len + at
        _, disk, cd_disk, on_disk, count, cd_size, cd_off, _ = _EOCD.unpack_from(tail, at)
        marked = _U16 in (disk, count) or _U32 in (cd_size, cd_off)
        if not marked and (disk or cd_disk or on_disk != count):
            raise ArchiveError(self.where, _MULTIDISK)
        # torch's reader (miniz) reads the zip64 records whenever their locator is there (torch
        # always writes them), so their fields must be sound as well.
        if marked or self._has_zip64_locator(eocd_rel):
            return self._zip64_end_record(eocd_rel)
        return count, cd_size, cd_off, eocd_rel

    def _has_zip64_locator(self, eocd_rel: int) -> bool:
        at = eocd_rel - _EOCD64_LOCATOR.size
        return at >= 0 and self.read(at, 4, "zip64 locator") == b"PK\x06\x07"

    def _zip64_end_record(self, eocd_rel: int) -> tuple[int, int, int, int]:
        loc_rel = eocd_rel - _EOCD64_LOCATOR.size
        sig, _, rec_off, disks = _EOCD64_LOCATOR.unpack(
            self.read(loc_rel, _EOCD64_LOCATOR.size, "zip64 locator")
        )
        if sig != b"PK\x06\x07":
            raise ArchiveError(self.where, "zip64 fields without a zip64 locator")
        rec = self.read(rec_off, _EOCD64.size, "zip64 end record")
        sig, _, _, _, disk, cd_disk, on_disk, count, cd_size, cd_off = _EOCD64.unpack(rec)
        if sig != b"PK\x06\x06" or rec_off + _EOCD64.size > loc_rel:
            raise ArchiveError(self.where, "bad zip64 end-of-central-directory record")
        if disks != 1 or disk or cd_disk or on_disk != count:
            raise ArchiveError(self.where, _MULTIDISK)
        return count, cd_size, cd_off, rec_off

    def _central_entry(self, cd: bytes, pos: int, cd_off: int) -> tuple[ZipMember | None, int]:
        """The entry at `pos` (None when a problem makes it unusable) and the next position."""
        if pos + _CENTRAL.size > len(cd):
            raise ArchiveError(self.where, "central directory entry runs past its end")
        (sig, _, _, flags, method, _, _, crc, csize, size, nlen, elen, clen, disk, _, _, hoff) = (
            _CENTRAL.unpack_from(cd, pos)
        )
        end = pos + _CENTRAL.size + nlen + elen + clen
        if sig != b"PK\x01\x02" or end > len(cd):
            raise ArchiveError(self.where, f"bad central directory entry at byte {cd_off + pos}")
        raw_name = cd[pos + _CENTRAL.size : pos + _CENTRAL.size + nlen]
        name = raw_name.decode("utf-8" if flags & 0x800 else "cp437", "replace")
        if disk:
            raise ArchiveError(self.where, f"member starts on disk {disk}: {_MULTIDISK}", key=name)
        extra = cd[pos + _CENTRAL.size + nlen : pos + _CENTRAL.size + nlen + elen]
        size, csize, hoff = _zip64_sizes(extra, size, csize, hoff)
        unreadable = self._unreadable(flags, method, csize, size)
        if unreadable:  # collecting: its other checks still run (the sizes may lie as well)
            error = ArchiveError(self.where, unreadable, key=name)
            self.checks.fail("zip-member-unreadable", error)
        data_rel = self._local_header(hoff, raw_name, name)
        if data_rel is None:
            return None, end
        if data_rel + csize > cd_off:
            self.checks.fail(
                "zip-size-beyond-file",
                ArchiveError(
                    self.where,
                    f"member data [{data_rel}, {data_rel + csize}) runs "
                    f"past the central directory ({cd_off}) or the file end",
                    key=name,
                ),
            )
            return None, end
        if unreadable:
            return None, end
        member = ZipMember(name, self.base + hoff, self.base + data_rel, csize, size, method, crc)
        return member, end

    @staticmethod
    def _unreadable(flags: int, method: int, csize: int, size: int) -> str | None:
        if flags & 0x1:
            return "member is encrypted"
        if method not in METHODS:
            return f"unsupported compression method {method}"
        if method == STORED and csize != size:
            return f"stored member with compressed size {csize} != size {size}"
        return None

    def _local_header(self, hoff: int, raw_name: bytes, name: str) -> int | None:
        """Where the member's data start (relative), None when its local header is unusable."""
        try:
            head = self.read(hoff, _LOCAL.size + len(raw_name), f"local header of {name!r}")
        except ArchiveError as e:
            self.checks.fail("zip-size-beyond-file", e)
            return None
        sig, _, _, _, _, _, _, _, _, nlen, elen = _LOCAL.unpack_from(head)
        if sig != b"PK\x03\x04":
            self.checks.fail(
                "zip-size-beyond-file",
                ArchiveError(self.where, f"no local header at byte {hoff}", key=name),
            )
            return None
        if head[_LOCAL.size :] != raw_name or nlen != len(raw_name):
            self.checks.fail(
                "zip-name-mismatch",
                ArchiveError(self.where, "local header names another member", key=name),
            )
        return hoff + _LOCAL.size + nlen + elen


def _zip64_sizes(extra: bytes, size: int, csize: int, hoff: int) -> tuple[int, int, int]:
    """Replace 0xFFFFFFFF fields by the zip64 extra field's values (in the order they appear)."""
    pos = 0
    while pos + 4 <= len(extra):
        tag, n = struct.unpack_from("<2H", extra, pos)
        body = extra[pos + 4 : pos + 4 + n]
        if tag == 0x0001:
            vals = [v[0] for v in struct.iter_unpack("<Q", body[: len(body) // 8 * 8])]
            fields = [size, csize, hoff]
            for i, v in enumerate(fields):
                if v == _U32 and vals:
                    fields[i] = vals.pop(0)
            return fields[0], fields[1], fields[2]
        pos += 4 + n
    return size, csize, hoff


def _check_overlaps(where: str, members: list[ZipMember], checks: Checks) -> None:
    ordered = sorted(members, key=lambda m: m.header_offset)
    for a, b in itertools.pairwise(ordered):
        if a.data_end > b.header_offset:
            checks.fail(
                "zip-overlap",
                OffsetError(
                    where,
                    f"member data [{a.data_offset}, {a.data_end}) overlaps member "
                    f"{b.name!r} starting at {b.header_offset}",
                    key=a.name,
                ),
            )
