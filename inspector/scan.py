"""`scan()`: what would loading this checkpoint import, and is its container well-formed?

A scan reports; it needs nothing to be loadable. It walks zip and tar containers itself (never
extracting, never calling `pickle.load`), lists every global each pickle inside would import by
walking its opcodes (nothing runs), and classifies each global as safe (what torch, numpy and
torch.distributed.checkpoint write), dangerous (a deny-list of code-running modules and
callables), or unknown (everything else: not safe, `strict` fails on it). Structural findings
cover the tricks that make two parsers see different files: duplicated or overlapping zip
members, CRC mismatches, compressed records, sizes beyond the file, pickle/zip polyglots, tar
links and path traversal, and bytes a safetensors header does not account for.
"""

from __future__ import annotations

import io
import itertools
import json
import os
import pickletools
import re
import struct
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from . import dtypes
from .findings import ERROR, INFO, WARNING, Finding, Report
from .scan_policy import DANGEROUS, SAFE, UNKNOWN, classify, python3_names

# --- Pickle opcode walk -------------------------------------------------------------------------


@dataclass(frozen=True)
class GlobalRef:
    module: str
    name: str
    opcode: str
    position: int


_MARK = object()
_UNKNOWN = object()
_MAX_LEGACY_PICKLES = 5  # torch's legacy format: magic, protocol, sys_info, object, storage keys
_TORCH_TAR_RECORDS = ("tensors", "storages")  # torch < 0.4 tar members: pickles + raw bytes


class _Walk:
    """Simulates the unpickler's stack with opaque values, enough to resolve STACK_GLOBAL
    operands pushed directly, through DUP or through the memo. Executes nothing."""

    def __init__(self, f: IO[bytes]) -> None:
        self.f = f
        self.stack: list[Any] = []
        self.memo: dict[int, Any] = {}
        self.refs: list[GlobalRef] = []

    def run(self) -> None:
        for op, arg, pos in pickletools.genops(self.f):
            handler = _HANDLERS.get(op.name)
            if handler is not None:
                handler(self, op, arg, pos or 0)
            else:
                self.generic(op, arg)

    def pop(self) -> Any:
        return self.stack.pop() if self.stack else _UNKNOWN

    def pop_mark(self) -> None:
        while self.stack:
            if self.stack.pop() is _MARK:
                return

    def generic(self, op: pickletools.OpcodeInfo, arg: Any) -> None:
        before = op.stack_before
        if pickletools.markobject in before:
            self.pop_mark()
            for _ in range(before.index(pickletools.markobject)):
                self.pop()
        else:
            for _ in before:
                self.pop()
        if op.arg is not None and not before and len(op.stack_after) == 1:
            self.stack.append(arg)  # a literal: string, number
        else:
            self.stack.extend(_UNKNOWN for _ in op.stack_after)

    def raw_pair(self, pos: int) -> tuple[str, str]:
        """GLOBAL/INST operands read from the raw bytes: genops joins them with a space, which
        loses whitespace hidden inside a module name."""
        here = self.f.tell()
        self.f.seek(pos + 1)
        module = self.f.readline()[:-1].decode("utf-8", "replace")
        name = self.f.readline()[:-1].decode("utf-8", "replace")
        self.f.seek(here)
        return module, name

    def add(self, module: Any, name: Any, opcode: str, pos: int) -> None:
        if not isinstance(module, str) or not isinstance(name, str):
            module, name = "?", "?"  # operands computed at load time: cannot be checked
        self.refs.append(GlobalRef(module, name, opcode, pos))


def _on_mark(w: _Walk, op: Any, arg: Any, pos: int) -> None:
    w.stack.append(_MARK)


def _on_put(w: _Walk, op: Any, arg: Any, pos: int) -> None:
    w.memo[arg] = w.stack[-1] if w.stack else _UNKNOWN


def _on_memoize(w: _Walk, op: Any, arg: Any, pos: int) -> None:
    w.memo[len(w.memo)] = w.stack[-1] if w.stack else _UNKNOWN


def _on_get(w: _Walk, op: Any, arg: Any, pos: int) -> None:
    w.stack.append(w.memo.get(arg, _UNKNOWN))


def _on_dup(w: _Walk, op: Any, arg: Any, pos: int) -> None:
    w.stack.append(w.stack[-1] if w.stack else _UNKNOWN)


def _on_global(w: _Walk, op: Any, arg: Any, pos: int) -> None:
    w.add(*w.raw_pair(pos), op.name, pos)
    w.stack.append(_UNKNOWN)


def _on_inst(w: _Walk, op: Any, arg: Any, pos: int) -> None:
    w.add(*w.raw_pair(pos), op.name, pos)
    w.pop_mark()
    w.stack.append(_UNKNOWN)


def _on_stack_global(w: _Walk, op: Any, arg: Any, pos: int) -> None:
    name = w.pop()
    module = w.pop()
    w.add(module, name, op.name, pos)
    w.stack.append(_UNKNOWN)


def _on_ext(w: _Walk, op: Any, arg: Any, pos: int) -> None:
    w.refs.append(GlobalRef("copyreg", f"_extension_registry[{arg}]", op.name, pos))
    w.stack.append(_UNKNOWN)


_HANDLERS = {
    "MARK": _on_mark,
    "PUT": _on_put,
    "BINPUT": _on_put,
    "LONG_BINPUT": _on_put,
    "MEMOIZE": _on_memoize,
    "GET": _on_get,
    "BINGET": _on_get,
    "LONG_BINGET": _on_get,
    "DUP": _on_dup,
    "GLOBAL": _on_global,
    "INST": _on_inst,
    "STACK_GLOBAL": _on_stack_global,
    "EXT1": _on_ext,
    "EXT2": _on_ext,
    "EXT4": _on_ext,
}


@dataclass
class PickleWalk:
    refs: list[GlobalRef]
    end: int  # offset after STOP (or where parsing failed)
    error: str | None = None


def walk_pickle(f: IO[bytes]) -> PickleWalk:
    """The globals of the pickle starting at `f`'s position, and where it ends."""
    start = f.tell()
    w = _Walk(f)
    try:
        w.run()
    except (ValueError, EOFError, UnicodeDecodeError, struct.error) as e:
        return PickleWalk(w.refs, f.tell(), f"malformed pickle after byte {f.tell() - start}: {e}")
    return PickleWalk(w.refs, f.tell())


def _project_globals(data: bytes, path: str) -> list[GlobalRef]:
    """The safe unpickler's own global listing, when this build has it: a second, independent
    parser. Its findings are merged with the opcode walk's (a disagreement is itself a sign)."""
    try:
        from .formats.unpickler import scan_globals
    except ImportError:
        return []
    from .errors import CheckpointError

    try:
        return [
            GlobalRef(g.module, g.name, g.opcode, g.position) for g in scan_globals(data, path=path)
        ]
    except CheckpointError:
        return []  # malformed: the opcode walk reports it


# --- Blobs: byte ranges inside files, archives and archives inside archives ---------------------


class _Slice(io.RawIOBase):
    """A read-only window [offset, offset+size) of a seekable file (a member read in place)."""

    def __init__(self, f: IO[bytes], offset: int, size: int) -> None:
        self.f, self.offset, self.size, self.pos = f, offset, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, pos: int, whence: int = 0) -> int:
        base = {0: 0, 1: self.pos, 2: self.size}[whence]
        self.pos = max(0, base + pos)
        return self.pos

    def tell(self) -> int:
        return self.pos

    def readinto(self, b: Any) -> int:
        n = max(0, min(len(b), self.size - self.pos))
        self.f.seek(self.offset + self.pos)
        data = self.f.read(n)
        b[: len(data)] = data
        self.pos += len(data)
        return len(data)


@dataclass
class Blob:
    file: str  # the path the user gave (what findings name)
    where: str  # location inside it: "" for the file itself, "model_weights.ckpt/archive/data.pkl"
    f: IO[bytes]
    size: int
    depth: int = 0

    def head(self, n: int = 512) -> bytes:
        self.f.seek(0)
        return self.f.read(n)

    def child(self, name: str, f: IO[bytes], size: int) -> Blob:
        where = f"{self.where}/{name}" if self.where else name
        return Blob(self.file, where, f, size, self.depth + 1)


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
    def __init__(self, result: ScanResult, verify_crc: bool) -> None:
        self.result = result
        self.verify_crc = verify_crc

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

    # dispatch ---------------------------------------------------------------------------------
    def blob(self, blob: Blob, *, top: bool) -> None:
        if blob.depth > 6:
            self.add(
                "nesting-too-deep", ERROR, blob, "archives nested more than 6 deep: not scanned"
            )
            return
        head = blob.head()
        kind = sniff(head, blob.where or blob.file)
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
        blob.f.seek(0)
        if blob.head(4).startswith(b"PK\x03\x04"):
            return self.zip(blob)
        blob.f.seek(0)
        for index in range(_MAX_LEGACY_PICKLES):
            start = blob.f.tell()
            if start >= blob.size:
                break
            walk = walk_pickle(blob.f)
            if walk.error and not walk.refs:
                if index == 0:  # after the last pickle: raw storage bytes, harmless to pickle
                    self.add(
                        "not-scanned",
                        WARNING,
                        blob,
                        f"neither an archive nor a pickle ({walk.error}): not scanned",
                    )
                break
            key = blob.where or None
            if index:
                key = f"{blob.where or 'pickle'}[{index}]"
            refs = walk.refs + self._second_opinion(blob, start, walk.end)
            self.globals(blob, key, refs)
            if walk.error:
                self.add("pickle-malformed", WARNING, blob, walk.error, key=key)
                break
            blob.f.seek(walk.end)
        if blob.depth == 0 and _is_zip_anywhere(blob):
            self.add(
                "pickle-zip-polyglot",
                ERROR,
                blob,
                "file is a pickle that also parses as a zip archive: torch.load runs the pickle, "
                "zip-based scanners see the archive",
            )

    def distcp(self, blob: Blob) -> None:
        """A DCP data file: raw tensor bytes with torch.save'd objects (each a zip whose
        data.pkl is a pickle) at offsets only .metadata knows. Every embedded data.pkl is
        found by its local zip header and walked where it starts."""
        for offset, name in _local_headers(blob):
            if not name.endswith(".pkl"):
                continue
            blob.f.seek(offset + 26)
            name_len, extra_len = struct.unpack("<HH", blob.f.read(4))
            blob.f.seek(offset + 30 + name_len + extra_len)
            key = _join(blob.where, f"@{offset}/{name}")
            walk = walk_pickle(blob.f)
            self.result.checked += 1
            self.globals(blob, key, walk.refs)
            if walk.error:
                self.add("pickle-malformed", WARNING, blob, walk.error, key=key)

    def _second_opinion(self, blob: Blob, start: int, end: int) -> list[GlobalRef]:
        if end - start > 256 * 2**20:
            return []
        blob.f.seek(start)
        return _project_globals(blob.f.read(end - start), blob.file)

    def globals(self, blob: Blob, key: str | None, refs: list[GlobalRef]) -> None:
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
            use.positions.append(r.position)
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

    # zip ------------------------------------------------------------------------------------------
    def zip(self, blob: Blob) -> None:
        blob.f.seek(0)
        try:
            zf = zipfile.ZipFile(blob.f)  # reads the central directory only
        except (zipfile.BadZipFile, OSError, ValueError) as e:
            self.add("zip-malformed", ERROR, blob, f"zip central directory unreadable: {e}")
            return
        infos = zf.infolist()
        self._zip_structure(blob, infos)
        root = infos[0].filename.split("/", 1)[0] if infos else ""
        for info in infos:
            if info.filename.endswith(".pkl"):
                if info.filename != f"{root}/data.pkl" and not info.filename.endswith(
                    "constants.pkl"
                ):
                    self.add(
                        "zip-odd-pickle",
                        WARNING,
                        blob,
                        f"pickle outside '{root}/data.pkl'",
                        key=_join(blob.where, info.filename),
                    )
                self._zip_pickle(blob, zf, info)
            elif info.file_size and sniff(_zip_head(zf, info), info.filename) in (
                "zip",
                "tar",
                "gzip",
            ):
                self._zip_nested(blob, zf, info)

    def _zip_structure(self, blob: Blob, infos: list[zipfile.ZipInfo]) -> None:
        names: dict[str, int] = {}
        spans: list[tuple[int, int, str]] = []
        for info in infos:
            key = _join(blob.where, info.filename)
            names[info.filename] = names.get(info.filename, 0) + 1
            if names[info.filename] == 2:
                self.add(
                    "zip-duplicate-member",
                    ERROR,
                    blob,
                    "member name appears more than once (readers disagree on which copy counts)",
                    key=key,
                )
            if info.compress_type != zipfile.ZIP_STORED:
                self.add(
                    "zip-compressed-record",
                    WARNING,
                    blob,
                    f"record is compressed "
                    f"(method {info.compress_type}); torch writes stored records",
                    key=key,
                )
            span = self._local_span(blob, info, key)
            if span is not None:
                spans.append((*span, key))
        spans.sort()
        if spans and spans[0][0] > 0:
            self.add(
                "zip-prefix-data", WARNING, blob, f"{spans[0][0]} bytes before the first member"
            )
        for (_, end_a, a), (start_b, _, b) in itertools.pairwise(spans):
            if start_b < end_a:
                self.add("zip-overlap", ERROR, blob, f"member bytes overlap '{a}'", key=b)

    def _local_span(self, blob: Blob, info: zipfile.ZipInfo, key: str) -> tuple[int, int] | None:
        """[start, end) of a member's local header + data, checked against the file."""
        blob.f.seek(info.header_offset)
        local = blob.f.read(30)
        if len(local) < 30 or local[:4] != b"PK\x03\x04":
            self.add(
                "zip-size-beyond-file",
                ERROR,
                blob,
                f"local header at {info.header_offset} missing or beyond the file",
                key=key,
            )
            return None
        name_len, extra_len = struct.unpack("<HH", local[26:30])
        local_name = blob.f.read(name_len)
        if local_name.decode(
            "utf-8", "replace"
        ) != info.filename and local_name != info.orig_filename.encode("cp437", "replace"):
            self.add(
                "zip-name-mismatch",
                ERROR,
                blob,
                f"local header names it {local_name!r}: readers disagree on the member's name",
                key=key,
            )
        start = info.header_offset + 30 + name_len + extra_len
        end = start + info.compress_size
        if end > blob.size:
            self.add(
                "zip-size-beyond-file",
                ERROR,
                blob,
                f"declared {info.compress_size} bytes "
                f"at offset {start} run past the end of the file ({blob.size} bytes)",
                key=key,
            )
            return None
        if self.verify_crc and info.compress_type == zipfile.ZIP_STORED:
            crc = _crc32(blob.f, start, info.compress_size)
            if crc != info.CRC:
                self.add(
                    "zip-crc-mismatch",
                    ERROR,
                    blob,
                    f"CRC32 is {crc:08x}, directory says {info.CRC:08x}",
                    key=key,
                )
        return info.header_offset, end

    def _zip_pickle(self, blob: Blob, zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> None:
        key = _join(blob.where, info.filename)
        try:
            data = zf.read(info)  # small; inflated when compressed, CRC checked by zipfile
        except (zipfile.BadZipFile, zlib.error, OSError, EOFError, NotImplementedError) as e:
            self.add("zip-member-unreadable", ERROR, blob, f"cannot read member: {e}", key=key)
            return
        self.result.checked += 1
        child = blob.child(info.filename, io.BytesIO(data), len(data))
        walk = walk_pickle(child.f)
        refs = walk.refs + _project_globals(data[: walk.end], blob.file)
        self.globals(child, key, refs)
        if walk.error:
            self.add("pickle-malformed", WARNING, child, walk.error, key=key)

    def _zip_nested(self, blob: Blob, zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> None:
        with zf.open(info) as src:
            self._spooled(blob, info.filename, src)

    # tar ------------------------------------------------------------------------------------------
    def tar(self, blob: Blob, mode: str = "r:") -> None:
        blob.f.seek(0)
        seen: set[str] = set()
        try:
            with tarfile.open(fileobj=blob.f, mode=mode) as tf:  # type: ignore[call-overload]
                for m in tf:
                    self._tar_member(blob, tf, m, seen, in_place=(mode == "r:"))
        except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
            what = f"tar archive unreadable after {len(seen)} members: {e}"
            self.add("tar-malformed", ERROR, blob, what)

    def _tar_member(
        self, blob: Blob, tf: tarfile.TarFile, m: tarfile.TarInfo, seen: set[str], in_place: bool
    ) -> None:
        key = _join(blob.where, m.name)
        norm = m.name.removeprefix("./")
        if norm in seen:
            self.add(
                "tar-duplicate-member",
                ERROR,
                blob,
                "member name appears more than once (the later copy wins on extraction)",
                key=key,
            )
        seen.add(norm)
        if m.name.startswith(("/", "\\")) or ".." in re.split(r"[\\/]", m.name):
            self.add(
                "tar-traversal",
                ERROR,
                blob,
                "member path leaves the archive (absolute or '..')",
                key=key,
            )
        if m.issym() or m.islnk():
            self.add("tar-link", ERROR, blob, f"member is a link to {m.linkname!r}", key=key)
            return
        if not m.isfile():
            if not m.isdir():
                self.add("tar-special-member", ERROR, blob, "member is a device or fifo", key=key)
            return
        if m.offset_data + m.size > blob.size and in_place:
            self.add(
                "tar-size-beyond-file",
                ERROR,
                blob,
                f"declared {m.size} bytes run past the end of the file",
                key=key,
            )
            return
        if in_place:
            child = blob.child(m.name, _Slice(blob.f, m.offset_data, m.size), m.size)  # type: ignore[arg-type]
            if norm in _TORCH_TAR_RECORDS and self.torch_tar_records(child, norm):
                return
            self.blob(child, top=False)
        else:
            src = tf.extractfile(m)
            if src is not None:
                self._spooled(blob, m.name, src)

    def torch_tar_records(self, blob: Blob, name: str) -> bool:
        """A `tensors`/`storages` member of a torch < 0.4 tar: pickles between raw bytes, found
        by following the layout (a plain walk stops at the first raw bytes). False: not one."""
        from .formats.torch_tar import member_pickles

        walked = member_pickles(blob.f, name, blob.size, blob.file)
        if not walked.spans:
            return False
        self.result.checked += 1
        refs: list[GlobalRef] = []  # one finding per global per member (a record per tensor)
        for start, end in walked.spans:
            blob.f.seek(start)
            refs += walk_pickle(blob.f).refs + self._second_opinion(blob, start, end)
        if walked.error:
            self.add("pickle-malformed", WARNING, blob, walked.error)
            blob.f.seek(walked.stop)  # what the safe reader refused may still load elsewhere
            refs += walk_pickle(blob.f).refs
        self.globals(blob, blob.where, refs)
        return True

    def gzip(self, blob: Blob) -> None:
        self.tar(blob, mode="r:gz")

    def _spooled(self, blob: Blob, name: str, src: IO[bytes]) -> None:
        """A member of a compressed archive, inflated into a spooled temporary (never to its
        own name on disk) so that it can be walked with seeks."""
        with tempfile.SpooledTemporaryFile(max_size=64 * 2**20) as tmp:
            size = 0
            while chunk := src.read(2**20):
                tmp.write(chunk)
                size += len(chunk)
            self.blob(blob.child(name, tmp, size), top=False)

    # safetensors ----------------------------------------------------------------------------
    def safetensors(self, blob: Blob) -> None:
        blob.f.seek(0)
        (n,) = struct.unpack("<Q", blob.f.read(8))
        if 8 + n > blob.size:
            self.add(
                "safetensors-header",
                ERROR,
                blob,
                f"header length {n} runs past the end of the file",
            )
            return
        raw = blob.f.read(n)
        try:
            header = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)
        except (UnicodeDecodeError, ValueError) as e:
            self.add("safetensors-header", ERROR, blob, f"header is not valid JSON: {e}")
            return
        body = raw.rstrip(b" ")
        if not body.endswith(b"}") or body != body.strip() or b"\x00" in raw:
            self.add(
                "safetensors-header",
                ERROR,
                blob,
                "header has content besides the JSON object "
                "and space padding: parsers may read it differently",
            )
        if not isinstance(header, dict):
            self.add("safetensors-header", ERROR, blob, "header is not a JSON object")
            return
        self._safetensors_ranges(blob, header, blob.size - 8 - n)

    def _safetensors_ranges(self, blob: Blob, header: dict[str, Any], data_size: int) -> None:
        spans: list[tuple[int, int, str]] = []
        for name, entry in header.items():
            if name == "__metadata__":
                continue
            try:
                begin, end = entry["data_offsets"]
                itemsize = dtypes.BY_SAFETENSORS[entry["dtype"]].itemsize
                numel = 1
                for d in entry["shape"]:
                    numel *= int(d)
                if not (isinstance(begin, int) and isinstance(end, int) and 0 <= begin <= end):
                    raise ValueError("bad offsets")
            except (KeyError, TypeError, ValueError) as e:
                self.add("safetensors-header", ERROR, blob, f"bad tensor entry: {e}", key=name)
                continue
            if end - begin != numel * itemsize:
                self.add(
                    "safetensors-header",
                    ERROR,
                    blob,
                    f"{end - begin} bytes for {numel} elements of {itemsize} bytes",
                    key=name,
                )
            spans.append((begin, end, name))
        spans.sort()
        cursor = 0
        for begin, end, name in spans:
            if begin != cursor:
                what = (
                    "overlaps the previous tensor"
                    if begin < cursor
                    else f"leaves a gap of {begin - cursor} bytes"
                )
                self.add("safetensors-offsets", ERROR, blob, what, key=name)
            cursor = max(cursor, end)
        if cursor > data_size:
            self.add(
                "safetensors-offsets",
                ERROR,
                blob,
                f"tensors end at {cursor}, beyond the {data_size} data bytes",
            )
        elif cursor < data_size:
            blob.f.seek(blob.size - (data_size - cursor))
            tail = blob.f.read(16)
            hint = (
                " (looks like a zip archive)"
                if tail.startswith(b"PK")
                else (" (looks like a pickle)" if tail[:1] == b"\x80" else "")
            )
            self.add(
                "safetensors-slack",
                ERROR,
                blob,
                f"{data_size - cursor} bytes after the last "
                f"tensor that no header entry accounts for{hint}: a polyglot hides there",
            )


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"duplicate key {k!r}")
        out[k] = v
    return out


def _join(where: str, name: str) -> str:
    return f"{where}/{name}" if where else name


def _crc32(f: IO[bytes], start: int, length: int) -> int:
    f.seek(start)
    crc = 0
    while length > 0:
        chunk = f.read(min(length, 8 * 2**20))
        if not chunk:
            break
        crc = zlib.crc32(chunk, crc)
        length -= len(chunk)
    return crc


def _local_headers(blob: Blob) -> Iterator[tuple[int, str]]:
    """(offset, member name) of every zip local header in the blob, read in chunks."""
    chunk, overlap, pos = 16 * 2**20, 64 * 1024, 0
    seen: set[int] = set()
    while pos < blob.size:
        blob.f.seek(pos)
        data = blob.f.read(chunk + overlap)
        i = data.find(b"PK\x03\x04")
        while i != -1 and len(data) - i >= 30:
            name_len = struct.unpack("<H", data[i + 26 : i + 28])[0]
            if pos + i not in seen:
                seen.add(pos + i)
                yield pos + i, data[i + 30 : i + 30 + name_len].decode("utf-8", "replace")
            i = data.find(b"PK\x03\x04", i + 4)
        pos += chunk


def _zip_head(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    try:
        with zf.open(info) as f:
            return f.read(512)
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, NotImplementedError):
        return b""


def _is_zip_anywhere(blob: Blob) -> bool:
    blob.f.seek(0)
    try:
        return zipfile.is_zipfile(blob.f)
    except OSError:
        return False


PICKLE_SUFFIXES = (".pkl", ".pickle", ".pt", ".pth", ".ckpt", ".bin", ".th", ".metadata", ".p")


def sniff(head: bytes, name: str) -> str | None:
    """What a blob is, from its first bytes (and its name for protocol-0/1 pickles)."""
    if name.endswith(".distcp"):
        return "distcp"
    if head.startswith(b"PK\x03\x04"):
        return "zip"
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    if head[257:262] == b"ustar":
        return "tar"
    if len(head) >= 9 and head[8:9] == b"{":
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
) -> ScanResult:
    """Scan files or folders; never raises for bad content (that is a finding).

    Raises `CheckpointError` only when a path does not exist.
    """
    from .errors import CheckpointError

    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    items = [os.fspath(p) for p in paths]
    result = ScanResult("scan", items, strict=strict)
    scanner = _Scanner(result, verify_crc)
    for item in items:
        path = Path(item)
        if not path.exists():
            raise CheckpointError(item, "no such file or folder")
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in files:
            label = str(file) if path.is_dir() else item
            with open(file, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                blob = Blob(label, "", f, size)
                if size == 0:
                    scanner.add(
                        "not-scanned", INFO if path.is_dir() else WARNING, blob, "file is empty"
                    )
                    continue
                scanner.blob(blob, top=not path.is_dir())
    return result
