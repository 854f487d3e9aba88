"""What `ckpt hash` prints: the manifest of a checkpoint's digests, as a dict (`--json`) or text.

One place for both outputs, so that every command that hashes (`ckpt hash`, the distributed
`python -m inspector.distributed hash`) prints the same bytes for the same checkpoint.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TextIO

from .hashing import Digest, checkpoint_digest
from .model import Checkpoint


def hash_manifest(ckpt: Checkpoint, digests: Mapping[str, Digest]) -> dict[str, Any]:
    """The `ckpt hash --json` document: path, format, checkpoint digest, and one entry per tensor
    in the order of `digests` (the checkpoint's order when they come from `hash_tensors`)."""
    return {
        "path": str(ckpt.path) if ckpt.path else None,
        "format": ckpt.format,
        "digest": str(checkpoint_digest(digests)),
        "tensors": [
            {"name": n, "dtype": ckpt[n].dtype, "shape": list(ckpt[n].shape), "digest": str(d)}
            for n, d in digests.items()
        ],
    }


def write_json(manifest: Mapping[str, Any], out: TextIO) -> None:
    from . import jsonout  # json only for --json

    jsonout.dump(manifest, out)
    out.write("\n")


def write_text(manifest: Mapping[str, Any], out: TextIO) -> None:
    """One line per tensor (digest, name, dtype, shape), then the checkpoint digest."""
    tensors = manifest["tensors"]
    width = max((len(t["name"]) for t in tensors), default=10) + 2
    for t in tensors:
        out.write(f"{t['digest']}  {t['name']:<{width}}{t['dtype']} {list(t['shape'])}\n")
    out.write(f"{manifest['digest']}  (checkpoint: {len(tensors)} tensors)\n")
