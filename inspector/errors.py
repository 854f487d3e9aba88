"""Errors raised for bad input: one class per kind of failure.

Every message names the file, the entry or key inside it (when there is one), and what is wrong,
so that a user can act on it without a traceback. The CLI maps each class to an exit code in one
table (`inspector.cli.EXIT_CODES`): 1 for `PendingRowsError`, 2 for every other one.
"""

from __future__ import annotations

import os


class CheckpointError(Exception):
    """Base class: something about a checkpoint file (or object) is wrong or unsupported."""

    def __init__(self, path: str | os.PathLike[str] | None, what: str, *, key: str | None = None):
        self.path = os.fspath(path) if path is not None else None
        self.key = key
        self.what = what
        super().__init__(self._format())

    def _format(self) -> str:
        where = self.path if self.path is not None else "<in-memory object>"
        if self.key is not None:
            where = f"{where}: {self.key!r}"
        return f"{where}: {self.what}"


class MismatchError(CheckpointError):
    """Checkpoints that must agree tensor by tensor (averaged together) do not: a tensor missing
    from one of them, or another shape or dtype. Names the file and the tensor."""


class UnsupportedFormatError(CheckpointError):
    """No reader recognises the file (wrong magic, unknown layout)."""


class TruncatedFileError(CheckpointError):
    """The file ends before a structure it declares (header, record, member, storage)."""


class HeaderError(CheckpointError):
    """A header or index is malformed: bad JSON, bad field, size caps exceeded."""


class OffsetError(CheckpointError):
    """Declared byte ranges overlap, leave gaps, or fall outside the file."""


class DtypeError(CheckpointError):
    """A dtype name or storage type is unknown or unsupported."""


class ShapeError(CheckpointError):
    """A shape is negative, too large, or disagrees with the byte range it claims."""


class DuplicateKeyError(CheckpointError):
    """A tensor name, zip member or tar member appears twice."""


class MissingRecordError(CheckpointError):
    """A pickle references a storage record that the archive does not contain."""


class PickleError(CheckpointError):
    """A pickle stream is malformed or uses opcodes the safe reader does not accept."""


class UnsafePickleError(PickleError):
    """A pickle references a global outside the allow-list and strict mode is on."""


class ArchiveError(CheckpointError):
    """A zip or tar archive is malformed (bad directory, sizes beyond the file, bad checksum)."""


class UnsafeArchiveMemberError(ArchiveError):
    """A tar member is a link, has an absolute path, or climbs out with `..`."""


class TensorDataError(CheckpointError):
    """Tensor bytes cannot be read: range outside the storage, element count mismatch."""


class FileChangedError(TensorDataError):
    """A file was truncated, replaced or modified while its tensors were being read."""


class RemoteError(CheckpointError):
    """A remote checkpoint (s3://, gs://, hf://, http(s)://) cannot be reached or read: a
    missing optional package, a timeout, a server error after retries. Names the URL without
    credentials or query strings."""


class RemoteNotFoundError(RemoteError):
    """The remote object does not exist (HTTP 404, NoSuchKey)."""


class RemoteAccessError(RemoteError):
    """The store refused access (HTTP 401/403): credentials missing, wrong or not allowed."""


class RemoteThrottledError(RemoteError):
    """The store kept answering "slow down" (HTTP 429/503) after every retry."""


class PlanError(Exception):
    """A mapping rule or plan file is invalid; the message points at the rule or entry."""


class PendingRowsError(PlanError):
    """Applying was refused: rows that would change the output are still proposed, not approved.
    Nothing was written; not an input error (exit code 1, like a gate's violations)."""


class AmbiguousRowsError(PendingRowsError):
    """Applying proposed rows unreviewed was refused: some rows have two or more equally good
    sources and none was chosen (flag `ambiguous`). Nothing was written; exit code 1. Pick their
    sources, reject them, or pass skip_ambiguous (--skip-ambiguous) to write them at init."""


class PartialTransferError(PlanError):
    """`strict`: target tensors would keep their init with no declared reason. Nothing was
    written or loaded; exit code 1, like a gate's violations."""


class WriteError(Exception):
    """Writing an output failed; nothing was left at the destination."""


class PlotError(WriteError):
    """A plot cannot be written: matplotlib (the `plot` extra) is missing, the file's suffix is
    not one a plot is written as, or the file cannot be written."""


class RankFailedError(CheckpointError):
    """A distributed hash, verify or diff (`inspector.distributed`) failed on one rank or more.
    Every rank raises it, with the same message: the failing ranks and their errors' messages
    (which name the file, key and problem), ranks with the same message together, the first
    `SHOWN` messages. `failures`: (rank, error class name, message)."""

    SHOWN = 5

    def __init__(self, failures: list[tuple[int, str, str]], path: str | None = None,
                 key: str | None = None):
        self.failures = failures
        by_message: dict[str, list[int]] = {}
        for rank, _, message in failures:
            by_message.setdefault(message, []).append(rank)
        parts = [f"{_ranks(r)}: {m}" for m, r in list(by_message.items())[: self.SHOWN]]
        if len(by_message) > self.SHOWN:
            parts.append(f"and {len(by_message) - self.SHOWN} other errors")
        super().__init__(path, "; ".join(parts), key=key)

    def _format(self) -> str:
        return self.what


class RankLostError(ConnectionError):
    """A distributed command could not reach the other ranks: the process group could not be
    joined, or a collective failed because a rank died or did not answer within the timeout."""


def _ranks(ranks: list[int]) -> str:
    """"rank 3", "ranks 0-7", "ranks 0, 2, 5-9": runs of consecutive ranks folded."""
    runs: list[list[int]] = []
    for r in sorted(ranks):
        if runs and r == runs[-1][1] + 1:
            runs[-1][1] = r
        else:
            runs.append([r, r])
    text = ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)
    return f"rank {text}" if len(ranks) == 1 else f"ranks {text}"
