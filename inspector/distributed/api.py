"""`hash`, `verify` and `diff` of a checkpoint, the hashing shared out over the ranks of a
torch.distributed job (docs/distributed.md).

Each rank opens the checkpoint lazily, computes the same split (`assign`), hashes its share, and
all ranks exchange their digests and their status in one collective: every rank ends with the
whole result, or every rank raises `RankFailedError` naming the failing rank(s) and their errors.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..compare import Comparison
from ..diffing import (
    DiffResult,
    changed_pairs,
    compare_pairs,
    join_opened,
    settle_values,
    value_pairs,
)
from ..errors import CheckpointError, RankFailedError
from ..hash_report import hash_manifest
from ..hashing import Digest, hash_tensors
from ..model import Checkpoint
from ..reader import open_checkpoint
from .assign import assign, file_owners
from .group import DEFAULT_TIMEOUT, Comm, joined

_DIGEST = re.compile(r"[a-z0-9]+:[0-9a-f]{32}")


def hash(
    path: Any,
    *,
    root: str | None = None,
    group: Any = None,
    threads: int | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> dict[str, Any]:
    """The `ckpt hash --json` manifest of `path`, hashed by all ranks together; the same on
    every rank. `group`: a gloo process group (default: the caller's default group, else one
    made from torchrun's environment, else a world of one). `timeout`: seconds any rank may wait
    for the others (joining, and the exchange after hashing)."""
    with joined(group, timeout) as comm:
        ckpt, digests = _hash_shared(comm, path, root, threads)
        return hash_manifest(ckpt, digests)


@dataclass(frozen=True)
class Mismatch:
    """One tensor that does not match: `changed` (both digests), `missing` (expected only) or
    `unexpected` (in the checkpoint only)."""

    name: str
    kind: str
    expected: str | None
    actual: str | None


@dataclass(frozen=True)
class VerifyResult:
    """What `verify` found; the same on every rank. `ok`: every tensor hashed and, with an
    expectation, every digest (and the checkpoint digest) equal to it."""

    path: str | None
    digest: str
    expected: str | None  # the expected checkpoint digest; None when nothing was expected
    tensors: int
    mismatches: tuple[Mismatch, ...]
    manifest: dict[str, Any]

    @property
    def ok(self) -> bool:
        return not self.mismatches and self.expected in (None, self.digest)

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "ok": self.ok,
            "digest": self.digest,
            "expected": self.expected,
            "tensors": self.tensors,
            "mismatches": [asdict(m) for m in self.mismatches],
        }


def verify(
    path: Any,
    expected: Any = None,
    *,
    root: str | None = None,
    group: Any = None,
    threads: int | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> VerifyResult:
    """Hash `path` over the ranks and compare with `expected`: a manifest written by
    `ckpt hash --json` (its path or the parsed dict), or a checkpoint digest "ckh1:...". With
    None, only check that every tensor can be read and hashed."""
    wanted: list[tuple[str | None, dict[str, str] | None]] = []
    with joined(group, timeout) as comm:  # a bad manifest fails on every rank, in the exchange
        ckpt, digests = _hash_shared(comm, path, root, threads,
                                     lambda: wanted.append(_expected(expected)))
        manifest = hash_manifest(ckpt, digests)
        want_total, want = wanted[0]
        return VerifyResult(
            manifest["path"], manifest["digest"], want_total, len(digests),
            tuple(_mismatches(want, {n: str(d) for n, d in digests.items()})), manifest)


def diff(
    a: Any,
    b: Any,
    *,
    mapping: Any = None,
    rtol: float = 1e-5,
    atol: float = 1e-8,
    group: Any = None,
    threads: int | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> DiffResult:
    """`inspector.diff(a, b)` (values compared) with the hashing and the numeric comparison of
    changed tensors shared out over the ranks; the same result on every rank."""
    with joined(group, timeout) as comm:
        p = _hash_pairs(comm, a, b, mapping, threads)
        changed = changed_pairs(p.names_a, p.names_b, p.da, p.db)
        comparisons = _compare_shared(comm, p, changed, rtol, atol, threads)
        settle_values(p.result, p.names_a, p.names_b, p.da, p.db, comparisons)
        return p.result


@dataclass
class _Pairs:
    """Both sides of a diff, its rows (values pending), and the digests of the paired tensors."""

    ca: Checkpoint
    cb: Checkpoint
    result: DiffResult
    names_a: list[str]
    names_b: list[str]
    da: dict[str, Digest] = field(default_factory=dict)
    db: dict[str, Digest] = field(default_factory=dict)


def _hash_pairs(comm: Comm, a: Any, b: Any, mapping: Any, threads: int | None) -> _Pairs:
    """Open both sides, join their names, hash this rank's share of the pairs' tensors (the two
    sides split together), exchange: every pair's digests on every rank."""
    opened: list[_Pairs] = []

    def hash_mine() -> dict[str, Any]:
        ca, cb = open_checkpoint(a), open_checkpoint(b)
        result = join_opened(a, b, ca, cb, mapping)
        p = _Pairs(ca, cb, result, *value_pairs(result))
        opened.append(p)
        items = [(ca, n) for n in p.names_a] + [(cb, n) for n in p.names_b]
        ranks, n = _split(items, comm.size), len(p.names_a)
        da = hash_tensors(ca, _mine(p.names_a, ranks[:n], comm.rank), threads=_threads(threads))
        db = hash_tensors(cb, _mine(p.names_b, ranks[n:], comm.rank), threads=_threads(threads))
        return {"listing": _listing(items, ranks), "a": _printed(da), "b": _printed(db)}

    replies = _exchange(comm, hash_mine)
    _same_listing(replies)
    p = opened[0]
    p.da = _assembled(p.names_a, [r["a"] for r in replies], p.ca.label)
    p.db = _assembled(p.names_b, [r["b"] for r in replies], p.cb.label)
    return p


def _compare_shared(
    comm: Comm, p: _Pairs, changed: list[int], rtol: float, atol: float, threads: int | None
) -> dict[int, Comparison]:
    """The numeric comparison of the changed pairs, shared out by bytes like the hashing."""

    def compare_mine() -> dict[str, Any]:
        ranks = _split([(p.ca, p.names_a[k]) for k in changed], comm.size)
        mine = [k for k, r in zip(changed, ranks, strict=True) if r == comm.rank]
        found = compare_pairs(p.ca, p.cb, p.names_a, p.names_b, mine, rtol=rtol, atol=atol,
                              threads=_threads(threads))
        return {str(k): asdict(c) for k, c in found.items()}  # floats: JSON keeps them exact

    comparisons: dict[int, Comparison] = {}
    for reply in _exchange(comm, compare_mine):
        comparisons.update((int(k), Comparison(**c)) for k, c in reply.items())
    return comparisons


# -- sharing out and gathering ---------------------------------------------------------------------
def _hash_shared(
    comm: Comm,
    path: Any,
    root: str | None,
    threads: int | None,
    before: Callable[[], Any] | None = None,
) -> tuple[Checkpoint, dict[str, Digest]]:
    """Open `path`, hash this rank's share, exchange: the checkpoint and all its digests, in its
    order. `before` runs first on every rank (checks whose failure should stop every rank)."""
    state: dict[str, Checkpoint] = {}

    def hash_mine() -> dict[str, Any]:
        if before is not None:
            before()
        ckpt = state["ckpt"] = open_checkpoint(path, root=root)
        items = [(ckpt, n) for n in ckpt]
        ranks = _split(items, comm.size)
        digests = hash_tensors(ckpt, _mine(list(ckpt), ranks, comm.rank),
                               threads=_threads(threads))
        return {"listing": _listing(items, ranks), "digests": _printed(digests)}

    replies = _exchange(comm, hash_mine)
    _same_listing(replies)
    ckpt = state["ckpt"]
    return ckpt, _assembled(list(ckpt), [r["digests"] for r in replies], ckpt.label)


def _split(items: list[tuple[Checkpoint, str]], world: int) -> list[int]:
    """The rank of each (checkpoint, tensor name), by bytes and files (`assign`)."""
    infos = [c[n] for c, n in items]
    files = [t.storage.source.path for t in infos]
    owners = file_owners((f for f in files if f is not None), world)
    return assign([t.nbytes for t in infos],
                  [owners[f] if f is not None else None for f in files], world)


def _mine(names: list[str], ranks: list[int], rank: int) -> list[str]:
    return [n for n, r in zip(names, ranks, strict=True) if r == rank]


def _threads(threads: int | None) -> int | None:
    """Hashing threads per rank: by default the cores shared among the ranks of this node."""
    if threads is not None:
        return threads
    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)
    return max(1, (os.cpu_count() or 1) // max(local, 1))


def _listing(items: list[tuple[Checkpoint, str]], ranks: list[int]) -> str:
    """A fingerprint of what this rank opened and how it split it: ranks that disagree would
    leave tensors unhashed or hash them twice."""
    rows = [[n, c[n].dtype, list(c[n].shape), c[n].nbytes, r]
            for (c, n), r in zip(items, ranks, strict=True)]
    return hashlib.sha256(json.dumps(rows).encode()).hexdigest()


def _printed(digests: Mapping[str, Digest]) -> dict[str, str]:
    return {n: str(d) for n, d in digests.items()}


def _exchange(comm: Comm, work: Callable[[], Any]) -> list[Any]:
    """Run `work` on this rank, then exchange every rank's outcome in one collective: their
    results in rank order, or `RankFailedError` on every rank when any of them failed."""
    error: Exception | None = None
    try:
        status: dict[str, Any] = {"ok": True, "value": work()}
    except Exception as e:  # reported to every rank below, then raised on every rank
        if comm.size == 1:
            raise  # alone: the error as the single-process command raises it
        error = e
        status = {"ok": False, "kind": type(e).__name__, "message": _message(e)}
    replies = [json.loads(b) for b in comm.all_gather(json.dumps(status).encode())]
    failures = [(r, s["kind"], s["message"]) for r, s in enumerate(replies) if not s["ok"]]
    if failures:
        raise RankFailedError(failures) from error
    return [s["value"] for s in replies]


def _message(error: Exception) -> str:
    """What the single-process command would print: the message of an input error (it names
    the file, key and problem); the class too for anything else."""
    if isinstance(error, (CheckpointError, OSError)):
        return str(error)
    return f"{type(error).__name__}: {error}"


def _same_listing(replies: list[dict[str, Any]]) -> None:
    odd = [r for r, reply in enumerate(replies) if reply["listing"] != replies[0]["listing"]]
    if odd:
        raise RankFailedError([
            (r, "RankFailedError", "opened a checkpoint that differs from rank 0's (names, "
                                   "dtypes, shapes or files): every rank must see the same one")
            for r in odd])


def _assembled(names: list[str], shares: list[dict[str, str]], where: str) -> dict[str, Digest]:
    """One digest per name, in the order of `names`, from the ranks' shares: each name exactly
    once, never a partial result."""
    found: dict[str, str] = {}
    for share in shares:
        for name, digest in share.items():
            if name in found:
                raise CheckpointError(where, "hashed by two ranks", key=name)
            found[name] = digest
    missing = [n for n in names if n not in found]
    if missing or len(found) != len(names):
        raise CheckpointError(where, f"{len(missing)} tensor(s) hashed by no rank",
                              key=missing[0] if missing else None)
    return {n: Digest.parse(found[n]) for n in names}


# -- expectations ----------------------------------------------------------------------------------
def _expected(expected: Any) -> tuple[str | None, dict[str, str] | None]:
    """(checkpoint digest, {name: digest} or None) from what `verify` was given."""
    if expected is None:
        return None, None
    if isinstance(expected, str) and _DIGEST.fullmatch(expected.strip()):
        return str(Digest.parse(expected)), None
    if isinstance(expected, (str, os.PathLike)):
        where = str(expected)
        try:
            doc = json.loads(Path(expected).read_text(encoding="utf-8"))
        except OSError as e:
            raise CheckpointError(where, f"cannot read manifest: {e.strerror or e}") from None
        except (ValueError, UnicodeDecodeError) as e:
            raise CheckpointError(where, f"not a `ckpt hash --json` manifest: {e}") from None
        return _manifest_digests(doc, where)
    if isinstance(expected, Mapping):
        return _manifest_digests(expected, "expected manifest")
    raise TypeError(f"expected must be a manifest (path or dict) or a digest, not "
                    f"{type(expected).__name__}")


def _manifest_digests(doc: Any, where: str) -> tuple[str, dict[str, str]]:
    try:
        total = str(Digest.parse(doc["digest"]))
        tensors = {str(t["name"]): str(Digest.parse(t["digest"])) for t in doc["tensors"]}
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(where, f"not a `ckpt hash --json` manifest ({e})") from None
    return total, tensors


def _mismatches(want: dict[str, str] | None, got: dict[str, str]) -> list[Mismatch]:
    if want is None:
        return []
    out = [Mismatch(n, "changed", want[n], d) for n, d in got.items() if n in want and want[n] != d]
    out += [Mismatch(n, "missing", d, None) for n, d in want.items() if n not in got]
    out += [Mismatch(n, "unexpected", None, d) for n, d in got.items() if n not in want]
    return out
