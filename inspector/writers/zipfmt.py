"""The zip layout torch writes (PyTorchStreamWriter over miniz), and where a record's CRC lives.

What torch.save emits, byte for byte: each record is stored (no compression) with general flags
0x0808 (data descriptor + UTF-8 names), a zero CRC and sizes in the local header, an "FB" extra
field of 'Z' padding that puts the record's data on a 64-byte boundary, and a data descriptor
(`PK\\x07\\x08`, CRC, sizes) after the data. The central directory repeats the CRC; a zip64 end
record and locator always precede the classic end record. Records of 4 GiB or more carry zip64
extra fields, as miniz writes them.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from ..errors import ArchiveError

ALIGNMENT = 64
ZIP64_LIMIT = 0xFFFFFFFF  # a size or offset at or above this needs zip64 fields
_MARK32 = 0xFFFFFFFF  # the 32-bit field value that says "see the zip64 extra field"
_FLAGS = 0x0808
_LOCAL = struct.Struct("<IHHHHHIIIHH")
_CENTRAL = struct.Struct("<IHHHHHHIIIHHHHHII")
_LOCAL_SIG, _CENTRAL_SIG, _DESC_SIG = 0x04034B50, 0x02014B50, 0x08074B50
_EOCD_SIG, _EOCD64_SIG, _LOC64_SIG = 0x06054B50, 0x06064B50, 0x07064B50
_ZIP64_ID, _PAD_ID = 0x0001, 0x4246  # "FB": torch's padding extra field


@dataclass
class ZipRecord:
    """One record of a zip being written: name, size, and where its data lands."""

    name: str
    size: int
    header_offset: int = 0
    data_offset: int = 0
    crc: int = 0

    @property
    def zip64(self) -> bool:
        return self.size >= ZIP64_LIMIT


def local_header(rec: ZipRecord) -> bytes:
    """Local header + padding for `rec` at `rec.header_offset`; sets `rec.data_offset`."""
    name = rec.name.encode("utf-8")
    zip64 = struct.pack("<HHQQ", _ZIP64_ID, 16, 0, 0) if rec.zip64 else b""
    start = rec.header_offset + _LOCAL.size + len(name) + len(zip64)
    pad = ALIGNMENT - (start + 4) % ALIGNMENT
    pad = 0 if pad == ALIGNMENT else pad
    extra = zip64 + struct.pack("<HH", _PAD_ID, pad) + b"Z" * pad
    sizes = _MARK32 if rec.zip64 else 0
    head = _LOCAL.pack(_LOCAL_SIG, 0, _FLAGS, 0, 0, 0, 0, sizes, sizes, len(name), len(extra))
    rec.data_offset = start + 4 + pad
    return head + name + extra


def data_descriptor(rec: ZipRecord) -> bytes:
    if rec.zip64:
        return struct.pack("<IIQQ", _DESC_SIG, rec.crc, rec.size, rec.size)
    return struct.pack("<IIII", _DESC_SIG, rec.crc, rec.size, rec.size)


def descriptor_size(rec: ZipRecord) -> int:
    return 24 if rec.zip64 else 16


def central_directory(records: list[ZipRecord], cd_offset: int) -> bytes:
    """Central directory + zip64 end record + locator + end record, as torch writes them."""
    parts = []
    for rec in records:
        name = rec.name.encode("utf-8")
        big = [v for v in (rec.size, rec.size) if rec.zip64] + (
            [rec.header_offset] if rec.header_offset >= ZIP64_LIMIT else []
        )
        extra = struct.pack(f"<HH{len(big)}Q", _ZIP64_ID, 8 * len(big), *big) if big else b""
        size32 = _MARK32 if rec.zip64 else rec.size
        off32 = _MARK32 if rec.header_offset >= ZIP64_LIMIT else rec.header_offset
        parts.append(
            _CENTRAL.pack(_CENTRAL_SIG, 0, 0, _FLAGS, 0, 0, 0, rec.crc, size32, size32,
                          len(name), len(extra), 0, 0, 0, 0, off32) + name + extra
        )
    cd = b"".join(parts)
    n, end64 = len(records), cd_offset + len(cd)
    eocd64 = struct.pack("<IQHHIIQQQQ", _EOCD64_SIG, 44, 0x031E, 45, 0, 0, n, n, len(cd), cd_offset)
    locator = struct.pack("<IIQI", _LOC64_SIG, 0, end64, 1)
    eocd = struct.pack("<IHHHHIIH", _EOCD_SIG, 0, 0, min(n, 0xFFFF), min(n, 0xFFFF),
                       min(len(cd), _MARK32), min(cd_offset, _MARK32), 0)
    return cd + eocd64 + locator + eocd


# -- reading a zip's directory to patch CRCs in place -------------------------------------------


@dataclass(frozen=True)
class CrcSlots:
    """Absolute file offsets holding one record's CRC-32 (each a 4-byte little-endian field)."""

    name: str
    data_offset: int
    size: int
    offsets: tuple[int, ...]


def crc_slots(data: memoryview | bytes, base: int, label: str) -> dict[str, CrcSlots]:
    """For each stored record of the zip occupying `data` (which starts at file offset `base`):
    where its CRC is written. `data` is the whole zip (a memory map of it)."""
    end = _find_eocd(data, label)
    count, _cd_size, cd_offset = _directory_extent(data, end, label)
    slots: dict[str, CrcSlots] = {}
    pos = cd_offset
    for _ in range(count):
        if pos + _CENTRAL.size > len(data):
            raise ArchiveError(label, "zip central directory runs past the end of the archive")
        f = _CENTRAL.unpack_from(data, pos)
        if f[0] != _CENTRAL_SIG:
            raise ArchiveError(label, f"bad central directory entry at zip offset {pos}")
        flags, method, size, nlen, xlen, clen = f[3], f[4], f[9], f[10], f[11], f[12]
        name = bytes(data[pos + 46 : pos + 46 + nlen]).decode("utf-8", "replace")
        extra = bytes(data[pos + 46 + nlen : pos + 46 + nlen + xlen])
        size, header = _zip64_values(extra, size, f[8], f[16])
        if method == 0:  # compressed records are never patched in place
            data_off, local_crc = _local(data, header, label, name)
            offs = [base + pos + 16]
            if flags & 0x8:
                desc = data_off + size
                sig = struct.unpack_from("<I", data, desc)[0] if desc + 4 <= len(data) else 0
                offs.append(base + desc + (4 if sig == _DESC_SIG else 0))
            if not flags & 0x8 or local_crc:
                offs.append(base + header + 14)
            slots[name] = CrcSlots(name, base + data_off, size, tuple(offs))
        pos += 46 + nlen + xlen + clen
    return slots


def _find_eocd(data: memoryview | bytes, label: str) -> int:
    lo = max(0, len(data) - 22 - 0xFFFF)
    tail = bytes(data[lo:])
    at = tail.rfind(struct.pack("<I", _EOCD_SIG))
    if at < 0:
        raise ArchiveError(label, "no zip end-of-central-directory record")
    return lo + at


def _directory_extent(data: memoryview | bytes, end: int, label: str) -> tuple[int, int, int]:
    f = struct.unpack_from("<IHHHHIIH", data, end)
    count, cd_size, cd_offset = f[4], f[5], f[6]
    loc = end - 20
    if loc >= 0 and struct.unpack_from("<I", data, loc)[0] == _LOC64_SIG:
        e64 = struct.unpack_from("<Q", data, loc + 8)[0]
        if e64 + 56 > len(data) or struct.unpack_from("<I", data, e64)[0] != _EOCD64_SIG:
            raise ArchiveError(label, "zip64 end record missing where the locator points")
        g = struct.unpack_from("<IQHHIIQQQQ", data, e64)
        count, cd_size, cd_offset = g[7], g[8], g[9]
    if cd_offset + cd_size > len(data):
        raise ArchiveError(label, "zip central directory lies beyond the end of the archive")
    return count, cd_size, cd_offset


def _zip64_values(extra: bytes, size: int, csize: int, header: int) -> tuple[int, int]:
    pos = 0
    while pos + 4 <= len(extra):
        tag, n = struct.unpack_from("<HH", extra, pos)
        if tag == _ZIP64_ID:
            vals = list(struct.unpack_from(f"<{n // 8}Q", extra, pos + 4))
            if size == _MARK32 and vals:
                size = vals.pop(0)
            if csize == _MARK32 and vals:
                vals.pop(0)
            if header == _MARK32 and vals:
                header = vals.pop(0)
        pos += 4 + n
    return size, header


def _local(data: memoryview | bytes, header: int, label: str, name: str) -> tuple[int, int]:
    if header + _LOCAL.size > len(data):
        raise ArchiveError(label, "local header lies beyond the end of the archive", key=name)
    f = _LOCAL.unpack_from(data, header)
    if f[0] != _LOCAL_SIG:
        raise ArchiveError(label, f"bad local header at zip offset {header}", key=name)
    return header + _LOCAL.size + f[9] + f[10], f[6]
