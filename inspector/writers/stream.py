"""Run producers into an open file at given offsets: a few threads, one bounded buffer each.

Each job (a producer and where it lands) is written by one thread, chunk by chunk, with its CRC-32
chained over the chunks, so the result is the CRC a zip record needs. The copies run in the C++
core with the GIL released and `os.pwrite` releases it too, so threads overlap work and I/O.
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
from .atomic import pwrite_all
from .produce import Producer

CHUNK_BYTES = 16 << 20  # one buffer per thread; rows longer than this get a buffer of their own

Progress = Callable[[int, int], None]


@dataclass(eq=False)
class Job:
    offset: int  # absolute offset of the first byte in the output file
    producer: Producer
    crc: int = 0  # CRC-32 of the bytes written, set when the job is done


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
        for n, write in job.producer.chunks(chunk_bytes):
            if state.cancelled.is_set():
                raise _Cancelled
            target = buf if n <= len(buf) else memoryview(bytearray(n))
            c = write(target[:n])
            pwrite_all(fd, target[:n], pos)
            crc = core.crc32_combine(crc, c, n)
            pos += n
            state.advance(n)
    finally:
        job.producer.close()
    job.crc = crc


class _Cancelled(Exception):
    """Another job failed: this one stops without writing more."""
