"""Run producers into an open file at given offsets: a few threads, one bounded buffer each.

Each job (a producer and where it lands) is written by one thread, piece by piece, with its
CRC-32 chained over the pieces, so the result is the CRC a zip record needs. Bytes that are a run
of a file copied unchanged (an untouched storage, an untransformed source tensor) are copied in
the kernel with `copy_file_range` (no user-space buffer) and their CRC is computed from a map of
the piece just copied; everything else is built by the C++ core in the thread's buffer and
`pwrite`n. Both release the GIL, so threads overlap work and I/O.
Writes go through `pwrite`, not a writable memory map: a full disk then surfaces as an OSError
(ENOSPC / EFBIG) that becomes a clear `WriteError`, where a memory map would die of SIGBUS.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass

from .._native import core
from ..io.atomic import copy_range, pwrite_all
from .produce import Producer, Window

CHUNK_BYTES = 16 << 20  # one buffer per thread; rows longer than this get a buffer of their own

Progress = Callable[[int, int], None]


@dataclass(eq=False)
class Job:
    offset: int  # absolute offset of the first byte in the output file
    producer: Producer
    crc: int = 0  # CRC-32 of the bytes written, set when the job is done
    need_crc: bool = True  # False: a plain copy (a clone's gap), no CRC is computed


def default_threads() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def run_jobs(
    fd: int,
    jobs: Sequence[Job],
    *,
    threads: int | None = None,
    progress: Progress | None = None,
    chunk_bytes: int = CHUNK_BYTES,
) -> None:
    """Write every job into `fd`; on any error the others stop at their next chunk and the
    error propagates (the caller's atomic output then removes the temp file)."""
    total = sum(j.producer.nbytes for j in jobs)
    state = _State(total, progress)
    n = threads or default_threads()
    local = threading.local()

    def work(job: Job) -> None:
        buf = getattr(local, "buf", None)
        if buf is None:
            buf = local.buf = memoryview(bytearray(chunk_bytes))
        _write_job(fd, job, buf, chunk_bytes, state)

    if n == 1 or len(jobs) <= 1:
        for job in jobs:
            work(job)
        return
    with ThreadPoolExecutor(max_workers=n, thread_name_prefix="ckpt-write") as pool:
        futures = [pool.submit(work, job) for job in jobs]
        try:
            done, _ = wait(futures, return_when=FIRST_EXCEPTION)
            for f in done:
                f.result()
        except BaseException:
            state.cancelled.set()
            for f in futures:
                f.cancel()
            raise


class _State:
    def __init__(self, total: int, progress: Progress | None):
        self.total, self.done, self.progress = total, 0, progress
        self.lock = threading.Lock()
        self.cancelled = threading.Event()

    def advance(self, n: int) -> None:
        if self.progress is None:
            return
        with self.lock:
            self.done += n
            self.progress(self.done, self.total)


def _write_job(fd: int, job: Job, buf: memoryview, chunk_bytes: int, state: _State) -> None:
    crc, pos = 0, job.offset
    try:
        for seg in job.producer.segments():
            rng = seg.file_range()
            if rng is not None:
                c = _copy_in_kernel(fd, rng, seg.nbytes, pos, job.need_crc, chunk_bytes, state)
            else:
                c = _copy_chunks(fd, seg, pos, buf, chunk_bytes, state)
            crc = core.crc32_combine(crc, c, seg.nbytes)
            pos += seg.nbytes
    finally:
        job.producer.close()
    job.crc = crc


def _copy_chunks(fd: int, seg: Producer, pos: int, buf: memoryview, chunk_bytes: int,
                 state: _State) -> int:
    crc = 0
    for n, write in seg.chunks(chunk_bytes):
        if state.cancelled.is_set():
            raise _Cancelled
        target = buf if n <= len(buf) else memoryview(bytearray(n))
        c = write(target[:n])
        pwrite_all(fd, target[:n], pos)
        crc = core.crc32_combine(crc, c, n)
        pos += n
        state.advance(n)
    return crc


def _copy_in_kernel(fd: int, rng: tuple[str, int], nbytes: int, pos: int, need_crc: bool,
                    chunk_bytes: int, state: _State) -> int:
    """Copy `nbytes` of the file at `rng` to `pos` with copy_file_range, piece by piece; the CRC
    of each piece comes from a map of just that piece (the resident set stays one piece)."""
    path, offset = rng
    crc = 0
    with open(path, "rb") as src:
        for lo in range(0, nbytes, chunk_bytes):
            if state.cancelled.is_set():
                raise _Cancelled
            n = min(chunk_bytes, nbytes - lo)
            copy_range(src.fileno(), offset + lo, fd, pos + lo, n)
            if need_crc:
                crc = core.crc32_combine(crc, _crc_of_range(path, offset + lo, n), n)
            state.advance(n)
    return crc


def _crc_of_range(path: str, offset: int, nbytes: int) -> int:
    window = Window.open(path, offset, nbytes)
    try:
        with window.view(nbytes) as data:
            return int(core.crc32(data))
    finally:
        window.close()


class _Cancelled(Exception):
    """Another job failed: this one stops without writing more."""
