"""Write a .nemo: the target's tar, member for member, with model_weights.ckpt re-written.

Every other member (config, tokenizer, artifacts), with its header and any PAX/GNU extended
headers before it, is copied byte for byte in the kernel, in the input's order; the archive's
trailing blocks too. The weights member gets the input's header with the new size and checksum.
A tar.gz .nemo (NeMo < 1.7) is read from the reader's decompressed copy and written uncompressed,
as NeMo >= 1.7 writes them. (When the layout does not change, apply patches the clone in place
instead: see patch.py.)

A .nemo whose weights are a distributed checkpoint (`model_weights/` holding `.metadata` and
`__<rank>_0.distcp` files, NeMo's `torch_dist`) is written with its weights as DCP again, in as
many rank files as it had: the DCP writer fills a temporary folder beside the output, whose files
replace the old `model_weights/` members at their place in the tar.
"""

from __future__ import annotations

import os
import re
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from ..errors import WriteError
from ..formats.tar_safe import BLOCK, Member, read_members
from ..io.atomic import copy_range, open_output, pwrite_all
from .output import Output
from .stream import Progress
from .torch_zip import ZipPlan, plan_zip, write_zip

_SIZE_FIELD, _CHKSUM_FIELD = slice(124, 136), slice(148, 156)


def tar_of(out: Output) -> Path:
    """The uncompressed tar the target was read from."""
    meta = out.base.metadata
    return Path(meta.get("expanded_to") or out.base.path or "")


def write(out: Output, path: str | os.PathLike[str], *, threads: int | None = None,
          progress: Progress | None = None) -> None:
    weights = out.base.metadata.get("weights")
    distributed = out.base.metadata.get("distributed")
    if out.base.format == "nemo" and isinstance(distributed, dict):
        _write_distributed(out, path, distributed, threads, progress)
        return
    if out.base.format != "nemo" or not isinstance(weights, dict):
        raise WriteError(
            f"{path}: a .nemo output needs a .nemo target with one model_weights.ckpt (model-"
            "parallel and distributed .nemo files are not written yet)"
        )
    remote = out.base.metadata.get("remote")
    if remote:
        raise WriteError(
            f"{remote['url']}: the target is remote, and a .nemo output copies the target's "
            "other members from its file: download it and use the local copy as the target, "
            "or write another format (--format safetensors or torch-zip)")
    tar = tar_of(out)
    members = read_members(tar)
    w = next((m for m in members if m.offset == weights["offset"]), None)
    if w is None:
        raise WriteError(f"{tar}: the weights member moved since it was read")
    plan = plan_zip(out, out.base.metadata.get("torch_metadata") or {})
    spans = _spans(members, os.path.getsize(tar))
    fd = open_output(path)
    try:
        with open(tar, "rb") as src:
            _write_tar(src.fileno(), fd, members, spans, w, plan, threads, progress)
    finally:
        os.close(fd)


def _write_distributed(out: Output, path: str | os.PathLike[str], distributed: dict[str, Any],
                       threads: int | None, progress: Progress | None) -> None:
    from . import dcp  # imported here: only this layout needs it

    folder = str(distributed.get("folder") or "model_weights/")
    tar = tar_of(out)
    members = read_members(tar)
    old = [m for m in members if m.kind == "file" and m.key.startswith(folder)]
    if not old:
        raise WriteError(f"{tar}: the {folder} members moved since it was read")
    shards = max(1, sum(bool(_RANK_FILE.fullmatch(m.key[len(folder):])) for m in old))
    spans = _spans(members, os.path.getsize(tar))
    with tempfile.TemporaryDirectory(prefix=".dcp-", dir=Path(path).parent) as parts:
        dcp.write(out, parts, threads=threads, progress=progress, shards=shards)
        new = sorted(Path(parts).iterdir(), key=lambda p: p.name)
        fd = open_output(path)
        try:
            with open(tar, "rb") as src:
                _write_tar_replacing(src.fileno(), fd, members, spans, set(map(id, old)),
                                     [(old[0].name.rsplit("/", 1)[0] + "/" + p.name, p)
                                      for p in new])
        finally:
            os.close(fd)


_RANK_FILE = re.compile(r"__\d+_0\.distcp")


def _write_tar_replacing(src: int, fd: int, members: list[Member], spans: list[tuple[int, int]],
                         drop: set[int], new: list[tuple[str, Path]]) -> None:
    """The tar with the `drop` members left out and the `new` files (name in the tar, file)
    written where the first of them stood."""
    out_pos, placed = 0, False
    for m, (start, end) in zip([*members, None], spans, strict=False):
        if m is None or id(m) not in drop:
            copy_range(src, start, fd, out_pos, end - start)
            out_pos += end - start
            continue
        if not placed:
            for name, file in new:
                out_pos = _append_member(fd, out_pos, name, file)
            placed = True
    os.ftruncate(fd, out_pos)


def _append_member(fd: int, pos: int, name: str, file: Path) -> int:
    info = tarfile.TarInfo(name)
    info.size = file.stat().st_size
    info.mode = 0o644
    header = info.tobuf(format=tarfile.GNU_FORMAT)
    pwrite_all(fd, header, pos)
    pos += len(header)
    with open(file, "rb") as f:
        copy_range(f.fileno(), 0, fd, pos, info.size)
    pos += info.size
    pad = _padded(info.size) - info.size
    pwrite_all(fd, b"\0" * pad, pos)
    return pos + pad


def _spans(members: list[Member], size: int) -> list[tuple[int, int]]:
    """[start, end) of each member's headers + data (padded); the trailer follows the last."""
    spans, pos = [], 0
    for m in members:
        end = m.offset + _padded(m.size)
        spans.append((pos, end))
        pos = end
    spans.append((pos, size))
    return spans


def _padded(n: int) -> int:
    return -(-n // BLOCK) * BLOCK


def _write_tar(src: int, fd: int, members: list[Member], spans: list[tuple[int, int]],
               weights: Member, plan: ZipPlan, threads: int | None,
               progress: Progress | None) -> None:
    out_pos = 0
    for m, (start, end) in zip([*members, None], spans, strict=False):
        if m is not weights:
            copy_range(src, start, fd, out_pos, end - start)
            out_pos += end - start
            continue
        head_start = m.offset - BLOCK
        if b" size=" in os.pread(src, head_start - start, start):
            raise WriteError(f"{m.name}: its size is in a PAX header; not re-written yet")
        copy_range(src, start, fd, out_pos, head_start - start)  # extended headers, if any
        out_pos += head_start - start
        header = bytearray(os.pread(src, BLOCK, head_start))
        pwrite_all(fd, _with_size(header, plan.size), out_pos)
        out_pos += BLOCK
        write_zip(fd, out_pos, plan, threads=threads, progress=progress)
        pad = _padded(plan.size) - plan.size
        pwrite_all(fd, b"\0" * pad, out_pos + plan.size)
        out_pos += plan.size + pad
    os.ftruncate(fd, out_pos)


def _with_size(header: bytearray, size: int) -> bytes:
    if size < 8**11:
        header[_SIZE_FIELD] = f"{size:011o}\0".encode()
    else:  # GNU base-256 for members of 8 GiB and more, as tarfile writes them
        header[_SIZE_FIELD] = bytes([0x80]) + size.to_bytes(11, "big")
    header[_CHKSUM_FIELD] = b" " * 8
    chk = sum(header)
    header[_CHKSUM_FIELD] = f"{chk:06o}\0 ".encode()
    return bytes(header)
