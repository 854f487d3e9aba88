"""`scan()`: what would loading this checkpoint import, and is its container well-formed?

A scan reports; it needs nothing to be loadable, and it never loads anything. Files are mapped,
not read: zip and tar containers are walked in place by the validating readers in their collect
mode (`zipfile_safe.scan_directory`, `tar_safe.scan_members`: every structural problem becomes a
finding instead of ending the scan), and compressed content (`tar.gz`, deflated members) is
inflated into an unnamed temporary file, up to a size limit. Every pickle is walked by the
restricted unpickler's listing mode (`unpickler.scan_pickle`: opcodes are read, nothing is
imported or called), legacy streams as torch.load reads them (`torch_legacy.scan_stream`), torch
< 0.4 tar records by following their layout (`torch_tar.member_pickles`). Each global is
classified by `scan_policy`: safe (what torch, numpy and torch.distributed.checkpoint write),
dangerous (a deny-list of code-running modules and callables), or unknown (everything else: not
safe, `strict` fails on it).
"""

from __future__ import annotations

import gzip
import io
import mmap
import os
import struct
import tempfile
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .errors import CheckpointError, OffsetError
from .findings import ERROR, INFO, WARNING, Finding, Report
from .formats import safetensors, tar_safe, torch_legacy, zipfile_safe
from .formats.problems import Problem
from .formats.torch_tar import RECORD_MEMBERS, member_pickles
from .formats.unpickler import GlobalRef, scan_pickle
from .reader import is_remote
from .scan_policy import DANGEROUS, SAFE, UNKNOWN, classify, python3_names
from .sources import Slices, Source

MAX_NESTING = 6  # archives inside archives
# A deflated pickle is inflated into memory to be walked; torch's own data.pkl is kilobytes to
# megabytes (the readers allow 1 GiB: torch_zip.MAX_PICKLE_BYTES).
PICKLE_LIMIT = 1 << 30
# Compressed content (a tar.gz, a deflated archive member) is inflated to a temporary file; past
# this many bytes the scan stops there with a `scan-limit` error (a gzip bomb costs no more).
SPOOL_LIMIT = 16 << 30

# Severity of each structural problem the archive readers report (formats.problems codes).
PROBLEM_SEVERITY = {
    "zip-malformed": ERROR,
    "zip-duplicate-member": ERROR,
    "zip-overlap": ERROR,
    "zip-name-mismatch": ERROR,
    "zip-size-beyond-file": ERROR,
    "zip-member-unreadable": ERROR,
    "zip-crc-mismatch": ERROR,
    "tar-link": ERROR,
    "tar-special-member": ERROR,
    "tar-traversal": ERROR,
    "tar-duplicate-member": ERROR,
    "tar-malformed": ERROR,
    "tar-size-beyond-file": ERROR,
    "tar-truncated": WARNING,  # no end-of-archive block: every member was still read
}
_ARCHIVES = ("zip", "tar", "gzip")


@dataclass(frozen=True)
class Blob:
    """A byte range [base, base + size) of a file: the file itself, or a member read in place.

    `data` is the file mapped (or bytes): what the pickle walker reads, touching only the pages
    of the pickle. `reads` slices the same bytes with pread: archive headers, CRCs and inflating
    stream through it without mapping gigabytes of records into the process."""

    file: str  # the path the user gave (what findings name)
    where: str  # location inside it: "" for the file itself, "model_weights.ckpt/archive/data.pkl"
    data: Any
    reads: Any
    base: int
    size: int
    depth: int = 0

    @property
    def end(self) -> int:
        return self.base + self.size

    def head(self, n: int = 512) -> bytes:
        return bytes(self.reads[self.base : self.base + min(n, self.size)])

    def buffer(self) -> Any:
        """`data` as a buffer for the pickle walkers: as is when mapped; for a remote file, a
        zero-filled buffer (pages untouched stay unallocated) holding this blob's bytes at their
        offsets, so positions in findings stay absolute."""
        if not isinstance(self.data, Slices):
            return self.data
        out = bytearray(self.end)
        out[self.base : self.end] = self.data[self.base : self.end]
        return out

    def child(self, name: str, offset: int, size: int) -> Blob:
        """The member `name` at [offset, offset + size) of this blob (offset absolute)."""
        where = _join(self.where, name)
        return Blob(self.file, where, self.data, self.reads, offset, size, self.depth + 1)

    def stream(self) -> io.BufferedReader:
        return io.BufferedReader(_View(self.reads, self.base, self.size), 64 << 10)


class _View(io.RawIOBase):
    """A blob as a read-only seekable file (what tar_safe and the record walker read)."""

    def __init__(self, data: Any, base: int, size: int) -> None:
        self.data, self.base, self.size, self.pos = data, base, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, pos: int, whence: int = 0) -> int:
        self.pos = max(0, {0: 0, 1: self.pos, 2: self.size}[whence] + pos)
        return self.pos

    def tell(self) -> int:
        return self.pos

    def readinto(self, b: Any) -> int:
        n = max(0, min(len(b), self.size - self.pos))
        b[:n] = self.data[self.base + self.pos : self.base + self.pos + n]
        self.pos += n
        return n


class _Pread:
    """Slices of an open file, read with pread (nothing mapped)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def __getitem__(self, span: slice) -> bytes:
        return os.pread(self.fd, max(0, span.stop - span.start), span.start)


@dataclass
class GlobalUse:
    file: str
    where: str
    module: str
    name: str
    verdict: str
    reason: str
    opcodes: list[str]
    positions: list[int]


@dataclass
class ScanResult(Report):
    globals: list[GlobalUse] = field(default_factory=list)


class _Scanner:
    def __init__(self, result: ScanResult, verify_crc: bool, spool_limit: int) -> None:
        self.result = result
        self.verify_crc = verify_crc
        self.spool_limit = spool_limit

    def add(
        self,
        code: str,
        severity: str,
        blob: Blob,
        message: str,
        key: str | None = None,
        **details: Any,
    ) -> None:
        self.result.findings.append(
            Finding(
                code,
                severity,
                blob.file,
                key if key is not None else (blob.where or None),
                message,
                details,
            )
        )

    def problems(self, blob: Blob, problems: list[Problem]) -> None:
        for p in problems:
            key = _join(blob.where, p.key) if p.key else None
            self.add(p.code, PROBLEM_SEVERITY[p.code], blob, p.message, key=key)

    # dispatch ---------------------------------------------------------------------------------
    def blob(self, blob: Blob, *, top: bool) -> None:
        if blob.depth > MAX_NESTING:
            self.add(
                "nesting-too-deep",
                ERROR,
                blob,
                f"archives nested more than {MAX_NESTING} deep: not scanned",
            )
            return
        kind = sniff(blob.head(), blob.where or blob.file)
        if kind is None and top:
            kind = "pickle"  # torch.load treats any non-zip file as a legacy pickle stream
        handler = {
            "zip": self.zip,
            "tar": self.tar,
            "gzip": self.gzip,
            "safetensors": self.safetensors,
            "pickle": self.pickle_stream,
            "distcp": self.distcp,
        }.get(kind or "")
        if handler is None:
            self.add("not-scanned", INFO, blob, "not a checkpoint, archive or pickle: not scanned")
            return
        self.result.checked += 1
        handler(blob)

    # pickles ----------------------------------------------------------------------------------
    def pickle_stream(self, blob: Blob) -> None:
        """Consecutive pickles, as torch's legacy loader reads up to five of them."""
        scans = torch_legacy.scan_stream(blob.buffer(), path=blob.file, offset=blob.base,
                                         end=blob.end)
        for index, found in enumerate(scans):
            if found.error is not None and not found.globals:
                if index == 0:  # after the last pickle: raw storage bytes, harmless to pickle
                    self.add(
                        "not-scanned",
                        WARNING,
                        blob,
                        f"neither an archive nor a pickle ({found.error.what}): not scanned",
                    )
                break
            key = f"{blob.where or 'pickle'}[{index}]" if index else (blob.where or None)
            self.globals(blob, key, found.globals)
            if found.error is not None:
                self.add("pickle-malformed", WARNING, blob, _malformed(found.error), key=key)
        if blob.depth == 0 and zipfile_safe.looks_like_zip(blob.reads, blob.base, blob.size):
            self.add(
                "pickle-zip-polyglot",
                ERROR,
                blob,
                "file is a pickle that also parses as a zip archive: torch.load runs the pickle, "
                "zip-based scanners see the archive",
            )

    def one_pickle(self, blob: Blob, key: str) -> None:
        found = scan_pickle(blob.buffer(), path=blob.file, offset=blob.base, end=blob.end, key=key)
        self.result.checked += 1
        self.globals(blob, key, found.globals)
        if found.error is not None:
            self.add("pickle-malformed", WARNING, blob, _malformed(found.error), key=key)

    def distcp(self, blob: Blob) -> None:
        """A DCP data file: raw tensor bytes with torch.save'd objects (each a zip whose
        data.pkl is a pickle) at offsets only .metadata knows. Every embedded data.pkl is
        found by its local zip header and walked where it starts."""
        for offset, name in _local_headers(blob):
            head = blob.reads[offset + 26 : offset + 30]
            if not name.endswith(".pkl") or len(head) < 4:
                continue
            name_len, extra_len = struct.unpack("<HH", head)
            start = offset + 30 + name_len + extra_len
            at = f"@{offset - blob.base}/{name}"
            self.one_pickle(replace(blob, base=start, size=blob.end - start), _join(blob.where, at))

    # zip ------------------------------------------------------------------------------------------
    def zip(self, blob: Blob) -> None:
        listing = zipfile_safe.scan_directory(
            blob.reads, blob.base, blob.size, where=blob.file, verify_crc=self.verify_crc
        )
        self.problems(blob, listing.problems)
        members = listing.members
        first = min((m.header_offset for m in members), default=blob.base)
        if first > blob.base:
            self.add(
                "zip-prefix-data",
                WARNING,
                blob,
                f"{first - blob.base} bytes before the first member",
            )
        root = members[0].name.split("/", 1)[0] if members else ""
        for m in members:
            key = _join(blob.where, m.name)
            if m.method != zipfile_safe.STORED:
                self.add(
                    "zip-compressed-record",
                    WARNING,
                    blob,
                    f"record is compressed ({m.compression}); torch writes stored records",
                    key=key,
                )
            if m.name.endswith(".pkl"):
                if m.name != f"{root}/data.pkl" and not m.name.endswith("constants.pkl"):
                    self.add(
                        "zip-odd-pickle",
                        WARNING,
                        blob,
                        f"pickle outside '{root}/data.pkl'",
                        key=key,
                    )
                self._zip_pickle(blob, m, key)
            elif m.size and sniff(zipfile_safe.member_head(blob.reads, m), m.name) in _ARCHIVES:
                self._zip_nested(blob, m)

    def _zip_pickle(self, blob: Blob, m: zipfile_safe.ZipMember, key: str) -> None:
        if m.method == zipfile_safe.STORED:
            return self.one_pickle(blob.child(m.name, m.data_offset, m.size), key)
        if m.size > PICKLE_LIMIT:
            self.add(
                "scan-limit",
                ERROR,
                blob,
                f"pickle inflates to {m.size} bytes, over the {PICKLE_LIMIT}-byte limit: "
                "not scanned",
                key=key,
            )
            return None
        try:
            data = zipfile_safe.member_data(blob.reads, m, PICKLE_LIMIT, where=blob.file)
        except CheckpointError as e:
            self.add("zip-member-unreadable", ERROR, blob, e.what, key=key)
            return None
        return self.one_pickle(Blob(blob.file, key, data, data, 0, len(data), blob.depth + 1), key)

    def _zip_nested(self, blob: Blob, m: zipfile_safe.ZipMember) -> None:
        if m.method == zipfile_safe.STORED:
            return self.blob(blob.child(m.name, m.data_offset, m.size), top=False)
        chunks = zipfile_safe.member_chunks(blob.reads, m, where=blob.file)
        return self._spooled(blob, m.name, chunks, m.size)

    # tar ------------------------------------------------------------------------------------------
    def tar(self, blob: Blob) -> None:
        listing = tar_safe.scan_members(blob.stream(), blob.size, blob.file)
        self.problems(blob, listing.problems)
        for m in listing.members:
            if m.kind != "file":
                continue
            child = blob.child(m.name, blob.base + m.offset, m.size)
            if m.key in RECORD_MEMBERS and self.torch_tar_records(child, m.key):
                continue
            self.blob(child, top=False)

    def torch_tar_records(self, blob: Blob, name: str) -> bool:
        """A `tensors`/`storages` member of a torch < 0.4 tar: pickles between raw bytes, found
        by following the layout (a plain walk stops at the first raw bytes). False: not one."""
        walked = member_pickles(blob.stream(), name, blob.size, blob.file)
        if not walked.spans:
            return False
        self.result.checked += 1
        # one finding per global per member (a record per tensor); positions in the member
        refs = [replace(g, position=g.position + blob.base) for g in walked.globals]
        if walked.error:
            self.add("pickle-malformed", WARNING, blob, walked.error)
            # what the safe reader refused may still load elsewhere: list its globals too
            found = scan_pickle(
                blob.buffer(), path=blob.file, offset=blob.base + walked.stop, end=blob.end
            )
            refs += found.globals
        self.globals(blob, blob.where, refs)
        return True

    def gzip(self, blob: Blob) -> None:
        """A gzip stream (a `tar.gz` .nemo): inflated to a temporary file, scanned there under
        the same name (the file is the archive, its members keep their keys)."""
        self._spooled(blob, "", _gunzip(blob.stream()), None)

    def _spooled(self, blob: Blob, name: str, chunks: Iterator[bytes], size: int | None) -> None:
        """Compressed content inflated into an unnamed temporary file (never to its own name on
        disk), mapped and scanned in place; at most `spool_limit` bytes of it."""
        key = _join(blob.where, name) or None
        if size is not None and size > self.spool_limit:
            return self._over_limit(blob, key, size)
        with tempfile.TemporaryFile() as tmp:
            written = 0
            try:
                for chunk in chunks:
                    written += len(chunk)
                    if written > self.spool_limit:
                        return self._over_limit(blob, key, None)
                    tmp.write(chunk)
            except (CheckpointError, OSError, EOFError, zlib.error) as e:
                what = e.what if isinstance(e, CheckpointError) else f"{type(e).__name__}: {e}"
                code = "zip-member-unreadable" if name else "gzip-malformed"
                self.add(code, ERROR, blob, f"cannot inflate: {what}", key=key)
                return None
            if written == 0:
                self.add("not-scanned", INFO, blob, "compressed content is empty", key=key)
                return None
            tmp.flush()
            with mmap.mmap(tmp.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
                inflated = Blob(
                    blob.file, key or "", mapped, _Pread(tmp.fileno()), 0, written, blob.depth + 1
                )
                self.blob(inflated, top=False)
        return None

    def _over_limit(self, blob: Blob, key: str | None, size: int | None) -> None:
        amount = f"{size} bytes" if size is not None else f"more than {self.spool_limit} bytes"
        self.add(
            "scan-limit",
            ERROR,
            blob,
            f"compressed content inflates to {amount}, over the {self.spool_limit}-byte limit "
            "for inflating it: not scanned (scan(..., spool_limit=) raises it)",
            key=key,
        )

    def globals(self, blob: Blob, key: str | None, refs: list[GlobalRef]) -> None:
        """One finding per global (however often and however spelt); positions in refs are
        offsets in blob.data."""
        seen: dict[tuple[str, str], GlobalUse] = {}
        for r in refs:
            ident = python3_names(r.module, r.name)  # one entry per global however it is spelt
            use = seen.get(ident)
            if use is None:
                verdict, reason = classify(r.module, r.name)
                if r.module == "?":
                    verdict, reason = DANGEROUS, "STACK_GLOBAL operands computed at load time"
                if r.opcode.startswith("EXT"):
                    verdict, reason = UNKNOWN, "copyreg extension code: resolved at load time"
                use = GlobalUse(blob.file, key or "", *ident, verdict, reason, [], [])
                if ident != (r.module, r.name):
                    use.reason += f"; written as {r.module}.{r.name}"
                seen[ident] = use
            if r.opcode not in use.opcodes:
                use.opcodes.append(r.opcode)
            use.positions.append(r.position - blob.base)  # in the blob
        for use in seen.values():
            self.result.globals.append(use)
            severity = {SAFE: INFO, UNKNOWN: WARNING, DANGEROUS: ERROR}[use.verdict]
            self.add(
                f"global-{use.verdict}",
                severity,
                blob,
                f"imports {use.module}.{use.name}: {use.verdict} ({use.reason})",
                key=key,
                module=use.module,
                name=use.name,
                opcodes=use.opcodes,
                positions=use.positions[:20],
                count=len(use.positions),
            )

    # safetensors ----------------------------------------------------------------------------
    def safetensors(self, blob: Blob) -> None:
        """The header through the readers' own parser (the C++ core: what `open` accepts, scan
        accepts); a fault is a finding under its error class. Scan adds what only it looks for:
        padding other than spaces, and what trailing bytes hide (a polyglot)."""
        (n,) = struct.unpack("<Q", blob.head(8).ljust(8, b"\0"))
        first = bytes(
            blob.reads[
                blob.base : blob.base + min(8 + n, blob.size, 9 + safetensors.MAX_HEADER_SIZE)
            ]
        )
        try:
            safetensors.parse_header(blob.file, first, blob.size)
        except CheckpointError as e:
            trailing = self._safetensors_slack(blob, first, e)
            if not trailing:
                code = "safetensors-offsets" if isinstance(e, OffsetError) else "safetensors-header"
                self.add(code, ERROR, blob, e.what, key=e.key, kind=type(e).__name__)
            return
        # sound: only what scan alone looks for is left
        if first[8:].rstrip(b" ") != first[8:].strip() or b"\x00" in first[8:]:
            self.add(
                "safetensors-header",
                ERROR,
                blob,
                "header has content besides the JSON object and space padding: parsers may "
                "read it differently",
            )

    def _safetensors_slack(self, blob: Blob, first: bytes, error: CheckpointError) -> bool:
        """Trailing bytes after the last tensor (the core's OffsetError), with what they look
        like; False when the fault is another one."""
        if not isinstance(error, OffsetError) or error.key is not None:
            return False
        try:  # where the tensors end: the header is sound JSON (the core parsed it)
            entries = safetensors.parse_json_object(blob.file, first[8:], "header")
            cursor = max(
                (int(v["data_offsets"][1]) for k, v in entries.items() if k != "__metadata__"),
                default=0,
            )
        except (CheckpointError, KeyError, TypeError, ValueError, IndexError):
            return False
        data_start = len(first)
        slack = blob.size - data_start - cursor
        if slack <= 0:
            return False
        tail = bytes(blob.reads[blob.end - slack : blob.end - slack + 16])
        hint = (
            " (looks like a zip archive)"
            if tail.startswith(b"PK")
            else (" (looks like a pickle)" if tail[:1] == b"\x80" else "")
        )
        self.add(
            "safetensors-slack",
            ERROR,
            blob,
            f"{slack} bytes after the last tensor that no header entry accounts for{hint}: "
            "a polyglot hides there",
            kind=type(error).__name__,
        )
        return True


def _malformed(error: CheckpointError) -> str:
    return f"malformed pickle: {error.what}"


def _join(where: str, name: str) -> str:
    return f"{where}/{name}" if where and name else where or name


def _gunzip(f: io.BufferedReader) -> Iterator[bytes]:
    with gzip.GzipFile(fileobj=f) as stream:
        while chunk := stream.read(8 << 20):
            yield chunk


def _local_headers(blob: Blob) -> Iterator[tuple[int, str]]:
    """(offset in the file, member name) of every zip local header in the blob, in chunks."""
    chunk, overlap, pos = 16 * 2**20, 64 * 1024, blob.base
    seen: set[int] = set()
    while pos < blob.end:
        data = bytes(blob.reads[pos : min(pos + chunk + overlap, blob.end)])
        i = data.find(b"PK\x03\x04")
        while i != -1 and len(data) - i >= 30:
            name_len = struct.unpack("<H", data[i + 26 : i + 28])[0]
            if pos + i not in seen:
                seen.add(pos + i)
                yield pos + i, data[i + 30 : i + 30 + name_len].decode("utf-8", "replace")
            i = data.find(b"PK\x03\x04", i + 4)
        pos += chunk


PICKLE_SUFFIXES = (".pkl", ".pickle", ".pt", ".pth", ".ckpt", ".bin", ".th", ".metadata", ".p")


def sniff(head: bytes, name: str) -> str | None:
    """What a blob is, from its first bytes (and its name for protocol-0/1 pickles); zip and
    safetensors by the readers' own tests, so `scan` and `open` recognise a file alike."""
    if name.endswith(".distcp"):
        return "distcp"
    if zipfile_safe.is_zip_head(head):
        return "zip"
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    if tar_safe.is_tar_head(head):
        return "tar"
    if safetensors.looks_like(name, head):
        return "safetensors"
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "pickle"
    if name.lower().endswith(PICKLE_SUFFIXES) or Path(name).name == ".metadata":
        return "pickle"
    return None


# --- Public entry point -------------------------------------------------------------------------


def scan(
    paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    *,
    strict: bool = False,
    verify_crc: bool = True,
    spool_limit: int = SPOOL_LIMIT,
) -> ScanResult:
    """Scan files or folders; never raises for bad content (that is a finding).

    `spool_limit`: bytes of compressed content (tar.gz, deflated members) inflated to a
    temporary file to be scanned; past it a `scan-limit` error says what was not scanned.
    Raises `CheckpointError` only when a path does not exist.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    items = [os.fspath(p) for p in paths]
    result = ScanResult("scan", items, strict=strict)
    scanner = _Scanner(result, verify_crc, spool_limit)
    for item in items:
        if is_remote(item):
            _scan_remote(scanner, item)
            continue
        path = Path(item)
        if not path.exists():
            raise CheckpointError(item, "no such file or folder")
        if not path.is_dir():
            _scan_file(scanner, path, item, top=True)
            _read_as_ls_does(scanner, path, item)
            continue
        folders, files = _walk(path)
        if not files:
            scanner.add(
                "not-scanned",
                WARNING,
                Blob(item, "", b"", b"", 0, 0),
                "folder holds no file: nothing was scanned",
            )
        for file in files:
            _scan_file(scanner, file, str(file), top=False)
        read_whole = [f for f in folders if _read_as_ls_does(scanner, f, str(f))]
        for file in files:  # a file of a folder checkpoint (a .distcp, a shard) was read with it
            if not any(folder in file.parents for folder in read_whole):
                _read_as_ls_does(scanner, file, str(file))
    return result


def _walk(top: Path) -> tuple[list[Path], list[Path]]:
    """Folders and files under `top`, sorted; iterative (any depth), links to folders not
    followed."""
    folders, files, stack = [], [], [top]
    while stack:
        folder = stack.pop()
        folders.append(folder)
        with os.scandir(folder) as entries:
            for e in entries:
                if e.is_dir(follow_symlinks=False):
                    stack.append(Path(e.path))
                elif e.is_file():
                    files.append(Path(e.path))
    return sorted(folders), sorted(files)


def _read_as_ls_does(scanner: _Scanner, path: Path, label: str) -> bool:
    """A checkpoint the readers refuse (`ckpt ls` would fail on it) is an error finding: what
    torch or the readers cannot load is never a clean pass. Files that are no checkpoint on
    their own (a config, a README) are left to the structural scan. True when `path` is one."""
    from .reader import open_checkpoint, pick_reader

    try:
        pick_reader(path)
    except CheckpointError:
        return False
    try:
        open_checkpoint(path)
    except CheckpointError as e:
        blob = Blob(label, "", b"", b"", 0, 0)
        scanner.add("unreadable", ERROR, blob, f"the readers refuse it: {e.what}", key=e.key)
    return True


def _scan_remote(scanner: _Scanner, url: str) -> None:
    """A remote file (`inspector.remote`), scanned through range reads as a local one is
    through its map, then read as `ckpt ls` would; a folder at a URL (listed by its store,
    `inspector.remote_folder`), every file under it, then the folder read as `ckpt ls` would."""
    from .remote import RemoteFile
    from .remote_folder import may_be_folder, open_folder

    folder = open_folder(url) if may_be_folder(url) else None
    if folder is None or not folder.is_dir():
        src = RemoteFile(url)
        _scan_remote_file(scanner, src, top=True)
        _read_url_as_ls_does(scanner, url, src.name)
        return
    files = list(_walk_remote(folder))
    if not files:
        scanner.add("not-scanned", WARNING, Blob(str(folder), "", b"", b"", 0, 0),
                    "folder holds no file: nothing was scanned")
    for file in files:
        _scan_remote_file(scanner, file.open_source(), top=False)
    _read_url_as_ls_does(scanner, url, str(folder))


def _walk_remote(folder: Any) -> Iterator[Any]:
    """The files under a folder at a URL (`remote_folder.RemotePath`), in name order."""
    for child in folder.iterdir():
        if child.is_dir():
            yield from _walk_remote(child)
        else:
            yield child


def _scan_remote_file(scanner: _Scanner, src: Source, *, top: bool) -> None:
    if src.size == 0:
        scanner.add("not-scanned", WARNING if top else INFO, Blob(src.name, "", b"", b"", 0, 0),
                    "file is empty")
        return
    view = Slices(src)
    scanner.blob(Blob(src.name, "", view, view, 0, src.size), top=top)


def _read_url_as_ls_does(scanner: _Scanner, url: str, label: str) -> None:
    from .reader import open_checkpoint

    try:
        open_checkpoint(url).close()
    except CheckpointError as e:
        blob = Blob(label, "", b"", b"", 0, 0)
        scanner.add("unreadable", ERROR, blob, f"the readers refuse it: {e.what}", key=e.key)


def _scan_file(scanner: _Scanner, file: Path, label: str, *, top: bool) -> None:
    with open(file, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            blob = Blob(label, "", b"", b"", 0, 0)
            scanner.add("not-scanned", WARNING if top else INFO, blob, "file is empty")
            return
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            scanner.blob(Blob(label, "", data, _Pread(f.fileno()), 0, size), top=top)
