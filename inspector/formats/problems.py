"""Problems a validating archive reader finds, raised at once or collected (for `ckpt scan`).

zipfile_safe and tar_safe run every structural check through `Checks.fail`. Readers use the
default, which raises the error at the first problem. `ckpt scan` collects instead: each problem
is kept under its finding code and the reader goes on wherever the archive still makes sense, so
that one scan reports every overlap, duplicate, link and bad size, not only the first.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import CheckpointError


@dataclass(frozen=True)
class Problem:
    code: str  # the finding code `ckpt scan` reports, e.g. "zip-overlap", "tar-link"
    error: CheckpointError  # what a reader raises for it

    @property
    def key(self) -> str | None:
        return self.error.key

    @property
    def message(self) -> str:
        return self.error.what


@dataclass
class Checks:
    collect: bool = False
    problems: list[Problem] = field(default_factory=list)

    def fail(self, code: str, error: CheckpointError) -> None:
        """Raise `error`, or (collecting) record it; the caller then skips what it concerns."""
        if not self.collect:
            raise error
        self.problems.append(Problem(code, error))
