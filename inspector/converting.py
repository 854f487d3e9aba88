"""Convert a checkpoint to another format: every tensor unchanged, the write verified by digest.

    report = inspector.convert("dcp_folder/", "model.safetensors")
    print(report.to_text())

The output holds the input's tensors (and, for formats that keep a container, its tree) under
the same names; nothing is mapped or renamed (that is `ckpt map` / `apply`). It is written like
every output: to a temporary sibling, streamed with flat memory, re-opened and hashed, and
renamed into place only when every tensor's digest equals the input's.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import humanize
from .applying import guard_globals, output_root, output_size, writer_options
from .errors import WriteError
from .hashing import hash_tensors
from .io.atomic import atomic_path, start_writeback
from .model import Checkpoint
from .reader import open_checkpoint
from .writers import choose_format, writer
from .writers.build import build_output
from .writers.verify import mismatches, written_digests

Progress = Callable[[int, int], None]


@dataclass
class Conversion:
    source: str
    output: str
    source_format: str
    format: str
    tensors: int = 0
    nbytes: int = 0  # the tensors' logical bytes
    bytes_written: int = 0
    verified: int = 0  # tensors whose digest in the output equals the input's
    mismatches: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_text(self) -> str:
        lines = [f"converted {self.source} ({self.source_format}) -> {self.output} "
                 f"({self.format}): {self.tensors} tensors, {humanize.nbytes(self.nbytes)}, "
                 f"{humanize.nbytes(self.bytes_written)} written in {self.seconds:.2f} s",
                 f"verified: OK: {self.verified} tensors match the input by content digest"]
        return "\n".join(lines + [f"note: {n}" for n in self.notes])

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)


def convert(
    checkpoint: Checkpoint | str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    format: str | None = None,
    threads: int | None = None,
    progress: Progress | None = None,
    keep_unknown_globals: bool = False,
    shards: int = 1,
) -> Conversion:
    """Write `checkpoint` (a path, `PATH::ROOT`, or an open Checkpoint) to `out` in `format`
    (default: by the output's suffix). `shards`: the rank files of a DCP output.
    WriteError, nothing written, when the output does not verify."""
    started = time.monotonic()
    ckpt = checkpoint if isinstance(checkpoint, Checkpoint) else open_checkpoint(checkpoint)
    fmt = choose_format(out, ckpt.format, format)
    spec, mod = writer(fmt)
    options = writer_options(spec, fmt, shards, str(out))
    report = Conversion(ckpt.label, str(out), ckpt.format, fmt, len(ckpt),
                        sum(t.nbytes for t in ckpt.values()))
    if spec.pickles:
        _, report.notes = guard_globals(ckpt, str(out), keep_unknown_globals)
    inputs = [*ckpt.files, *([str(ckpt.path)] if ckpt.path is not None else [])]
    with atomic_path(out, inputs, folder=spec.folder) as tmp, start_writeback(tmp):
        output = build_output(ckpt, {})
        output.keep_unknown_globals = keep_unknown_globals
        if spec.folder:
            tmp.mkdir(exist_ok=True)
        getattr(mod, spec.function)(output, tmp, threads=threads, progress=progress, **options)
        report.bytes_written = output_size(tmp)
        _verify(ckpt, tmp, output_root(ckpt, fmt), report, threads)
        if report.mismatches:
            raise WriteError(f"{out}: verification failed, nothing written: "
                             + "; ".join(report.mismatches[:5]))
    report.seconds = time.monotonic() - started
    return report


def _verify(ckpt: Checkpoint, path: Path, root: Any, report: Conversion,
            threads: int | None) -> None:
    expected = hash_tensors(ckpt, threads=threads)
    got, missing = written_digests(path, root, expected, threads)
    report.mismatches += mismatches(expected, got, missing)
    report.verified += sum(got[n] == expected[n] for n in got)
