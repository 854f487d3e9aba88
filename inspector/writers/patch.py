"""Patch in place: clone the target file and overwrite only the replaced tensors' bytes.

Used when the output has the target's exact layout (same names, shapes, dtypes, same format).
The clone is a reflink when the filesystem has them (instant, shares blocks); otherwise only the
bytes that are not about to be overwritten are copied, in the kernel (`copy_file_range`), by the
same worker threads that write the replaced tensors at their byte ranges (in the kernel too when
a source tensor is copied unchanged, else by the C++ copy). Every zip record they live in gets
its CRC-32 rewritten wherever the zip keeps it (central directory, local header, data
descriptor). Inside a .nemo the inner zip sits at its tar offset; the tar needs no change.
"""

from __future__ import annotations

import bisect
import fcntl
import mmap
import os
from collections.abc import Mapping
from dataclasses import dataclass

from .._native import core
from ..errors import WriteError
from ..io.atomic import FICLONE, open_output, pwrite_all
from ..model import Checkpoint, TensorInfo
from . import zipfmt
from .build import storage_order
from .produce import FileBytes, Producer
from .stream import Job, Progress, run_jobs

_CRC_READ = 16 << 20


@dataclass(frozen=True)
class PatchTarget:
    """The one file a patch rewrites, and where its zip lies in it (none for safetensors)."""

    path: str
    zip_offset: int | None = None
    zip_size: int = 0


def patch_target(ckpt: Checkpoint) -> PatchTarget | None:
    """Where `ckpt` can be patched in place, or None (several files, compressed records, ...)."""
    files = ckpt.files
    if len(files) != 1:
        return None
    path = files[0]
    if ckpt.format == "torch-zip":
        return PatchTarget(path, 0, os.path.getsize(path))
    if ckpt.format == "safetensors":
        return PatchTarget(path)
    weights = ckpt.metadata.get("weights")
    if ckpt.format == "nemo" and isinstance(weights, dict):
        return PatchTarget(path, int(weights["offset"]), int(weights["size"]))
    return None


def patchable(t: TensorInfo) -> bool:
    return t.storage.source.patchable and t.storage.byteorder == "little" and t.numel > 0


def patch(
    ckpt: Checkpoint,
    where: PatchTarget,
    replacements: Mapping[str, Producer],
    dest: str | os.PathLike[str],
    *,
    threads: int | None = None,
    progress: Progress | None = None,
) -> str:
    """Write `dest` as a copy of the target with `replacements` written over; returns how the
    file was cloned."""
    jobs: list[Job] = []
    for name, value in replacements.items():
        t = ckpt.tensors[name]
        rng = t.byte_range
        if rng is None or not patchable(t):
            raise WriteError(f"{ckpt.label}: {name!r} cannot be patched in place")
        jobs.append(Job(rng[0], storage_order(t, value, ckpt.label)))
    jobs.sort(key=lambda j: j.offset)
    fd = open_output(dest, os.O_RDWR)
    try:
        how, gaps = _clone(where.path, fd, [(j.offset, j.offset + j.producer.nbytes) for j in jobs])
        run_jobs(fd, [*gaps, *jobs], threads=threads, progress=progress)
        if where.zip_offset is not None:
            _fix_crcs(fd, where, jobs, ckpt.label)
    finally:
        os.close(fd)
    return how


def _clone(src: str, fd: int, holes: list[tuple[int, int]]) -> tuple[str, list[Job]]:
    """Make `fd` a copy of `src`: a reflink when the filesystem can (no jobs left), else a file of
    the right size and one copy job per run of bytes outside `holes` (the ranges about to be
    overwritten), which the writer threads copy in the kernel."""
    size = os.path.getsize(src)
    with open(src, "rb") as f:
        try:
            fcntl.ioctl(fd, FICLONE, f.fileno())
            return "reflink", []
        except OSError:
            pass
    os.ftruncate(fd, size)
    gaps, pos = [], 0
    for lo, hi in [*holes, (size, size)]:
        if lo > pos:
            gaps.append(Job(pos, FileBytes(src, pos, lo - pos), need_crc=False))
        pos = max(pos, hi)
    return "copy_file_range", gaps


def _fix_crcs(fd: int, where: PatchTarget, jobs: list[Job], label: str) -> None:
    assert where.zip_offset is not None
    base = where.zip_offset
    aligned = base - base % mmap.ALLOCATIONGRANULARITY
    mm = mmap.mmap(fd, where.zip_size + base - aligned, offset=aligned, access=mmap.ACCESS_READ)
    try:
        with memoryview(mm) as whole, whole[base - aligned :] as zipview:
            slots = zipfmt.crc_slots(zipview, base, label)
    finally:
        mm.close()
    records = {s.data_offset: s for s in slots.values()}
    starts = sorted(records)
    touched: dict[int, list[Job]] = {}
    for job in jobs:
        rec = _record_of(records, starts, job)
        if rec is None:
            raise WriteError(f"{label}: patched bytes at {job.offset} lie in no zip record")
        touched.setdefault(rec.data_offset, []).append(job)
    for data_offset, rec_jobs in touched.items():
        rec = records[data_offset]
        covers = len(rec_jobs) == 1 and rec_jobs[0].offset == rec.data_offset and \
            rec_jobs[0].producer.nbytes == rec.size
        crc = rec_jobs[0].crc if covers else _crc_of(fd, rec.data_offset, rec.size)
        for off in rec.offsets:
            pwrite_all(fd, crc.to_bytes(4, "little"), off)


def _record_of(records: dict[int, zipfmt.CrcSlots], starts: list[int], job: Job
               ) -> zipfmt.CrcSlots | None:
    i = bisect.bisect_right(starts, job.offset) - 1
    if i < 0:
        return None
    rec = records[starts[i]]
    return rec if job.offset + job.producer.nbytes <= rec.data_offset + rec.size else None


def _crc_of(fd: int, offset: int, size: int) -> int:
    crc, done = 0, 0
    while done < size:
        chunk = os.pread(fd, min(_CRC_READ, size - done), offset + done)
        if not chunk:
            raise WriteError(f"file ended while re-reading a patched record at {offset}")
        crc = core.crc32(chunk, crc)
        done += len(chunk)
    return int(crc)
