"""A fake Google Cloud Storage for gcsfs: the JSON API's object metadata, object listing
(prefix, delimiter; one page) and media download with `Range`, over folders on disk, one per
bucket. Objects are the folders' files (nested paths are names with "/"); their generation is
the file's mtime in ns, so a rewritten file is a new object version. Object names under
"forbidden/" answer 403, a missing object or bucket 404, as GCS does (JSON error bodies).

    with serving({"ckpts": folder}) as (env, counts):
        # a child with child_env(**env) reads gs://ckpts/<file> through gcsfs

`env` points gcsfs at the server (STORAGE_EMULATOR_HOST) and makes it anonymous
(FSSPEC_GCS_TOKEN=anon: fsspec's config from the environment, so `url_to_fs` without options
never looks for Google credentials or a metadata server). In this process, `anonymous()` sets
the same through fsspec's config.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import os
from collections.abc import Iterator, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from unittest import mock
from urllib.parse import unquote

from range_server import Counts
from store_server import StoreHandler, StoreServer, children, files, running

FORBIDDEN = "forbidden/"


@functools.lru_cache(maxsize=256)
def _md5(path: str, size: int, mtime_ns: int) -> str:
    """base64 MD5 of a file (size and mtime in the key: a rewritten file is hashed again)."""
    return base64.b64encode(hashlib.md5(Path(path).read_bytes()).digest()).decode()


def _timestamp(ns: int) -> str:
    t = datetime.fromtimestamp(ns / 1e9, timezone.utc)
    return f"{t:%Y-%m-%dT%H:%M:%S}.{t.microsecond // 1000:03d}Z"  # gcsfs needs the fraction


def resource(bucket: str, name: str, file: Path) -> dict[str, Any]:
    """The object resource GCS answers for `file` (sizes and generations are strings there)."""
    st = file.stat()
    generation = str(st.st_mtime_ns)
    return {
        "kind": "storage#object",
        "id": f"{bucket}/{name}/{generation}",
        "name": name,
        "bucket": bucket,
        "generation": generation,
        "metageneration": "1",
        "contentType": "application/octet-stream",
        "size": str(st.st_size),
        "md5Hash": _md5(str(file), st.st_size, st.st_mtime_ns),
        "etag": base64.b64encode(f"{generation}/1".encode()).decode(),
        "timeCreated": _timestamp(st.st_mtime_ns),
        "updated": _timestamp(st.st_mtime_ns),
        "storageClass": "STANDARD",
    }


def _error(code: int, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message,
                      "errors": [{"message": message, "domain": "global", "reason": "x"}]}}


class _Handler(StoreHandler):
    def answer(self, method: str, path: str, query: dict[str, str]) -> None:
        # /storage/v1/b/B[/o[/NAME]] and /download/storage/v1/b/B/o/NAME (NAME %-encoded)
        api, sep, rest = path.partition("/storage/v1/b/")
        if not sep or api not in ("", "/download") or method == "POST":
            self.send_json(_error(400, f"not faked: {method} {path}"), 400)
            return
        bucket, _, rest = rest.partition("/")
        bucket = unquote(bucket)
        root = self.server.roots.get(bucket)
        if root is None:
            self.send_json(_error(404, "The specified bucket does not exist."), 404)
        elif rest == "":
            self.send_json({"kind": "storage#bucket", "id": bucket, "name": bucket})
        elif rest == "o":
            self._list(bucket, root, query)
        elif rest.startswith("o/"):
            media = api == "/download" or query.get("alt") == "media"
            self._object(bucket, root, unquote(rest[2:]), media=media)
        else:
            self.send_json(_error(400, f"not faked: {method} {path}"), 400)

    def _object(self, bucket: str, root: Path, name: str, *, media: bool) -> None:
        if name.startswith(FORBIDDEN):
            self.send_json(_error(403, f"anonymous caller does not have access to {name}"), 403)
            return
        file = root / name
        if not name or ".." in name.split("/") or not file.is_file():
            self.send_json(_error(404, f"No such object: {bucket}/{name}"), 404)
        elif media:
            meta = resource(bucket, name, file)
            self.send_file(file, {"ETag": meta["etag"],
                                  "X-Goog-Generation": meta["generation"],
                                  "X-Goog-Hash": f"md5={meta['md5Hash']}"})
        else:
            self.send_json(resource(bucket, name, file))

    def _list(self, bucket: str, root: Path, query: dict[str, str]) -> None:
        prefix = query.get("prefix", "")
        if prefix.startswith(FORBIDDEN):
            self.send_json(_error(403, f"anonymous caller may not list {prefix}"), 403)
            return
        found = files(root)
        if query.get("delimiter") == "/":
            names, prefixes = children(list(found), prefix)
        else:
            names, prefixes = [n for n in found if n.startswith(prefix)], []
        doc: dict[str, Any] = {"kind": "storage#objects"}
        if names:
            doc["items"] = [resource(bucket, n, found[n]) for n in names]
        if prefixes:
            doc["prefixes"] = prefixes
        self.send_json(doc)


@contextlib.contextmanager
def serving(buckets: Mapping[str, str | os.PathLike[str]]
            ) -> Iterator[tuple[dict[str, str], Counts]]:
    """(the environment a gcsfs client needs, counts) of a fake GCS holding `buckets`
    (bucket name -> folder), stopped on leaving."""
    with running(StoreServer(_Handler, buckets)) as server:
        yield {"STORAGE_EMULATOR_HOST": server.url, "FSSPEC_GCS_TOKEN": "anon"}, server.counts


@contextlib.contextmanager
def anonymous(env: Mapping[str, str]) -> Iterator[None]:
    """In this process: gcsfs at the server of `env` without credentials (fsspec read its
    FSSPEC_* environment at import, so the token goes into its config directly)."""
    import fsspec.config

    with mock.patch.dict(os.environ, {"STORAGE_EMULATOR_HOST": env["STORAGE_EMULATOR_HOST"]}), \
            mock.patch.dict(fsspec.config.conf, {"gcs": {"token": "anon"}}):
        yield
