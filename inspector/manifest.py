"""Shape manifests: the names, dtypes, shapes (and optionally content digests) a checkpoint must
have, as a small YAML file to commit next to the code. `ckpt ls --manifest` writes one;
`ckpt check CKPT --manifest shapes.yaml` gates against it.

    version: 1
    source: model.pt
    optional: ['decoder.*']          # globs of tensors that may be absent
    tensors:
      "encoder.layers.0.weight": {dtype: float32, shape: [256, 80], digest: "ckh1:..."}
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from . import dtypes, yamlload
from .errors import CheckpointError
from .model import Checkpoint

VERSION = 1


@dataclass(frozen=True)
class TensorSpec:
    dtype: str
    shape: tuple[int, ...]
    digest: str | None = None


@dataclass
class Manifest:
    tensors: dict[str, TensorSpec]
    optional: list[str] = field(default_factory=list)
    source: str | None = None
    path: str | None = None


def write_manifest(
    ckpt: Checkpoint,
    *,
    digests: Mapping[str, Any] | None = None,
    optional: list[str] | None = None,
) -> str:
    """The manifest of `ckpt` as YAML text; `digests` ({name: Digest or str}) adds digests."""
    lines = [
        "# ckpt shape manifest: gate with `ckpt check CHECKPOINT --manifest THIS_FILE`",
        f"version: {VERSION}",
        f"source: {json.dumps(ckpt.label)}",
        f"optional: {json.dumps(list(optional or []))}",
        "tensors:" if len(ckpt) else "tensors: {}",
    ]
    for name, t in ckpt.items():
        fields = f"dtype: {t.dtype}, shape: {json.dumps(list(t.shape))}"
        if digests is not None and name in digests:
            fields += f", digest: {json.dumps(str(digests[name]))}"
        lines.append(f"  {json.dumps(name)}: {{{fields}}}")
    return "\n".join(lines) + "\n"


def load_manifest(path: str | os.PathLike[str]) -> Manifest:
    """Read and validate a manifest; `CheckpointError` naming the file and entry when bad."""
    p = Path(path)
    try:
        data = yamlload.load(p.read_text(encoding="utf-8"))
    except OSError as e:
        raise CheckpointError(p, f"cannot read manifest: {e.strerror or e}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise CheckpointError(p, f"not valid YAML: {e}") from None
    return parse_manifest(data, where=str(p))


def parse_manifest(data: Any, *, where: str = "manifest") -> Manifest:
    if not isinstance(data, dict) or not isinstance(data.get("tensors"), dict):
        raise CheckpointError(where, "a manifest is a mapping with a 'tensors' mapping")
    if data.get("version", VERSION) != VERSION:
        raise CheckpointError(where, f"manifest version {data.get('version')!r} is not supported")
    optional = data.get("optional") or []
    if not isinstance(optional, list) or not all(isinstance(g, str) for g in optional):
        raise CheckpointError(where, "'optional' must be a list of glob patterns")
    tensors = {str(name): _spec(where, str(name), entry) for name, entry in data["tensors"].items()}
    source = data.get("source")
    return Manifest(tensors, optional, str(source) if source is not None else None, where)


def _spec(where: str, name: str, entry: Any) -> TensorSpec:
    if not isinstance(entry, dict):
        raise CheckpointError(where, "entry must be a mapping {dtype, shape[, digest]}", key=name)
    dtype, shape, digest = entry.get("dtype"), entry.get("shape"), entry.get("digest")
    if not isinstance(dtype, str) or dtype not in dtypes.DTYPES:
        raise CheckpointError(where, f"unknown dtype {dtype!r}", key=name)
    if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise CheckpointError(where, "shape must be a list of non-negative integers", key=name)
    if digest is not None and not isinstance(digest, str):
        raise CheckpointError(where, "digest must be a string like 'ckh1:<32 hex>'", key=name)
    return TensorSpec(dtype, tuple(shape), digest)
