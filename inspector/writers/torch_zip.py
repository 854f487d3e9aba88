"""Write a torch zip checkpoint (what torch.save writes) without importing torch.

`data.pkl` comes from our own pickler; storage records are stored uncompressed, 64-byte aligned,
with their CRC-32 computed by the C++ copy in the same pass. The small records (`byteorder`,
`version`, `.format_version`, `.storage_alignment`) mirror the target's when it was a torch zip,
else today's torch defaults; `.data/serialization_id` is fresh, as torch makes one per save.
The layout is computed first, so the size is known before a byte is written (a .nemo needs it for
its tar header) and the zip can land at any offset of an open file.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from typing import Any

from .. import dtypes
from .._native import core
from ..errors import WriteError
from ..io.atomic import open_output, pwrite_all
from . import zipfmt
from .output import Output, OutStorage, OutTensor
from .pickler import UNTYPED_STORAGE, TorchPickler
from .stream import Job, Progress, run_jobs

# (record name, metadata key, default) for the small text records, in torch's order.
_HEAD_RECORDS = (
    (".format_version", "format_version", "1"),
    (".storage_alignment", "storage_alignment", "64"),
    ("byteorder", "byteorder", "little"),
)
_TAIL_RECORDS: tuple[tuple[str, str, str | None], ...] = (
    ("version", "version", "3"),
    (".data/version", "data_version", None),
)
_NEWLINE_RECORDS = {"version", ".data/version"}  # torch writes "3\n"


@dataclass
class ZipPlan:
    records: list[zipfmt.ZipRecord]
    small: dict[str, bytes]  # record name -> bytes for the non-storage records
    storages: dict[str, OutStorage]  # record name -> storage
    size: int  # the whole zip
    cd_offset: int


def plan_zip(out: Output, zip_meta: dict[str, Any] | None = None) -> ZipPlan:
    """Lay the zip out: pickle the tree, place every record. Nothing is written.

    `zip_meta` is the torch reader's metadata of the zip to mirror (root folder, version, ...);
    by default the target's own when it is a torch zip.
    """
    if zip_meta is None:
        zip_meta = out.base.metadata if out.base.format == "torch-zip" else {}
    meta = zip_meta
    root = str(meta.get("zip_root") or "archive")
    keys: dict[int, str] = {}
    storages: dict[str, OutStorage] = {}

    def persistent_id(t: OutTensor) -> tuple[str, str, str, int]:
        key = keys.get(id(t.storage))
        if key is None:
            key = keys[id(t.storage)] = str(len(keys))
            storages[f"{root}/data/{key}"] = t.storage
        cls = _storage_class(t)
        n = t.storage.nbytes if cls == UNTYPED_STORAGE else t.storage.nbytes // _itemsize(t)
        return cls, key, "cpu", n

    pickle = TorchPickler(persistent_id, label=out.base.label,
                          keep_unknown_globals=out.keep_unknown_globals).dumps(out.tree)
    small: dict[str, bytes] = {f"{root}/data.pkl": pickle}
    names = [f"{root}/data.pkl"]
    for record, key, default in _HEAD_RECORDS:
        value = meta.get(key, default if not meta else None)
        if key == "byteorder":
            value = "little"  # every storage is written little-endian
        if value is not None:
            small[f"{root}/{record}"] = str(value).encode()
            names.append(f"{root}/{record}")
    names += list(storages)
    for record, key, fallback in _TAIL_RECORDS:
        tail = meta.get(key, fallback)
        if tail is not None:
            nl = "\n" if record in _NEWLINE_RECORDS else ""
            small[f"{root}/{record}"] = f"{tail}{nl}".encode()
            names.append(f"{root}/{record}")
    sid = f"{root}/.data/serialization_id"
    small[sid] = f"{secrets.randbits(64):020d}{secrets.randbits(64):020d}".encode()
    names.append(sid)
    return _place(names, small, storages)


# Typed-storage classes torch has: torch.save writes `_rebuild_tensor_v2` with them. Tensors of
# the other dtypes (float8, uint16-64, complex32) are written as torch writes them: with an untyped
# storage and `_rebuild_tensor_v3` (torch has no `Float8_e4m3fnStorage` to load).
TYPED_STORAGES = frozenset({
    "DoubleStorage", "FloatStorage", "HalfStorage", "BFloat16Storage", "LongStorage", "IntStorage",
    "ShortStorage", "CharStorage", "ByteStorage", "BoolStorage", "ComplexFloatStorage",
    "ComplexDoubleStorage", "QInt8Storage", "QUInt8Storage", "QInt32Storage", "QUInt4x2Storage",
    "QUInt2x4Storage",
})


def _storage_class(t: OutTensor) -> str:
    d = dtypes.get(t.dtype)
    if d.storage is None:
        raise WriteError(f"{t.name}: dtype {d.name} has no torch storage class to write")
    return f"torch.{d.storage}" if d.storage in TYPED_STORAGES else UNTYPED_STORAGE


def _itemsize(t: OutTensor) -> int:
    return dtypes.get(t.dtype).itemsize


def _place(names: list[str], small: dict[str, bytes], storages: dict[str, OutStorage]) -> ZipPlan:
    records, pos = [], 0
    for name in names:
        size = len(small[name]) if name in small else storages[name].nbytes
        rec = zipfmt.ZipRecord(name, size, header_offset=pos)
        zipfmt.local_header(rec)  # sets rec.data_offset
        pos = rec.data_offset + size + zipfmt.descriptor_size(rec)
        records.append(rec)
    cd = zipfmt.central_directory(records, pos)
    return ZipPlan(records, small, storages, pos + len(cd), pos)


def write_zip(
    fd: int,
    base: int,
    plan: ZipPlan,
    *,
    threads: int | None = None,
    progress: Progress | None = None,
) -> None:
    """Write the planned zip into `fd` at offset `base` (storages through the C++ copy)."""
    jobs = storage_jobs(base, plan)
    run_jobs(fd, list(jobs.values()), threads=threads, progress=progress)
    write_records(fd, base, plan, jobs)


def storage_jobs(base: int, plan: ZipPlan) -> dict[str, Job]:
    """One job per storage record of a zip planned at `base` (several zips of one file can then
    be written by one `run_jobs` call, as a DCP rank file's chunks are)."""
    return {
        name: Job(base + rec.data_offset, plan.storages[name].producer)
        for rec in plan.records
        if (name := rec.name) in plan.storages
    }


def write_records(fd: int, base: int, plan: ZipPlan, jobs: dict[str, Job]) -> None:
    """Once `jobs` ran: the headers (with the storages' CRCs), small records and directory."""
    for rec in plan.records:
        if rec.name in jobs:
            rec.crc = jobs[rec.name].crc
        else:
            rec.crc = int(core.crc32(plan.small[rec.name]))
        pwrite_all(fd, zipfmt.local_header(rec), base + rec.header_offset)
        if rec.name in plan.small:
            pwrite_all(fd, plan.small[rec.name], base + rec.data_offset)
        pwrite_all(fd, zipfmt.data_descriptor(rec), base + rec.data_offset + rec.size)
    pwrite_all(fd, zipfmt.central_directory(plan.records, plan.cd_offset), base + plan.cd_offset)


def write(out: Output, path: str | os.PathLike[str], *, threads: int | None = None,
          progress: Progress | None = None) -> None:
    """Write `out` as a torch zip file at `path` (a temp path: the caller renames it)."""
    plan = plan_zip(out)
    fd = open_output(path)
    try:
        os.ftruncate(fd, plan.size)
        write_zip(fd, 0, plan, threads=threads, progress=progress)
    finally:
        os.close(fd)
