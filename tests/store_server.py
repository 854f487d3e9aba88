"""What the fake object stores (fake_gcs, fake_hub) share: a threaded HTTP server on 127.0.0.1
over a mapping of names (a bucket, a repo) to folders, a handler with JSON and byte-range
answers that count what they serve (range_server.Counts: `gets` counts the file-content
reads), and `running(server)`, which always stops it."""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import re
import threading
from collections.abc import Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from range_server import Counts

_RANGE = re.compile(r"bytes=(\d+)-(\d*)$")


def files(root: Path) -> dict[str, Path]:
    """Every file under `root` by its relative POSIX name ("sub/dir/x.bin")."""
    return {p.relative_to(root).as_posix(): p for p in sorted(root.rglob("*")) if p.is_file()}


def children(names: list[str], prefix: str) -> tuple[list[str], list[str]]:
    """(files directly under `prefix`, the sub-folder prefixes, each ending in "/") among
    `names`; `prefix` is "" or ends in "/"."""
    direct, folders = [], set()
    for name in names:
        if name.startswith(prefix):
            head, slash, _ = name[len(prefix):].partition("/")
            if slash:
                folders.add(prefix + head + "/")
            else:
                direct.append(name)
    return direct, sorted(folders)


class StoreServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # many parallel range requests: a backlog of 5 drops SYNs

    def __init__(self, handler: type[BaseHTTPRequestHandler],
                 roots: Mapping[str, str | os.PathLike[str]]):
        super().__init__(("127.0.0.1", 0), handler)
        self.roots = {name: Path(folder) for name, folder in roots.items()}
        self.counts = Counts()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def handle_error(self, request: object, client_address: object) -> None:
        return None  # a client that hung up early: quiet


class StoreHandler(BaseHTTPRequestHandler):
    """Counts each request and answers `Counts.fail` statuses first; subclasses route
    `answer(method, path, query)` (path percent-decoded by the subclass where needed)."""

    server: StoreServer
    payload: bytes  # a POST's body
    protocol_version = "HTTP/1.1"  # keep-alive: the stores' clients pool connections

    def log_message(self, format: str, *args: object) -> None:
        return None

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        # read before answering: an unread body would be taken for the next request
        self.payload = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        counts = self.server.counts
        with counts.lock:
            counts.requests += 1
            failing = counts.fail.pop(0) if counts.fail else None
        if failing is not None:
            self.send_json({"error": {"code": failing, "message": "injected"}}, failing)
            return
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        self.answer(method, url.path, query)

    def answer(self, method: str, path: str, query: dict[str, str]) -> None:
        """Each store's own API (fake_gcs, fake_hub override it): answer the request."""
        raise NotImplementedError

    def send_json(self, doc: Any, status: int = 200,
                  headers: Mapping[str, str] | None = None) -> None:
        data = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def send_file(self, file: Path, headers: Mapping[str, str] | None = None) -> None:
        """`file`'s bytes, or the part the `Range` header asks (206 + Content-Range)."""
        size, start, end = file.stat().st_size, 0, file.stat().st_size
        m = _RANGE.match(self.headers.get("Range", ""))
        if m:
            start = int(m.group(1))
            end = min(size, int(m.group(2)) + 1) if m.group(2) else size
        if m and start >= size:
            self.send_json({"error": {"code": 416, "message": "range"}}, 416)
            return
        self.send_response(206 if m else 200)
        if m:
            self.send_header("Content-Range", f"bytes {start}-{end - 1}/{size}")
        self.send_header("Content-Length", str(end - start))
        self.send_header("Accept-Ranges", "bytes")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command == "HEAD":
            return
        with file.open("rb") as f:
            f.seek(start)
            data = f.read(end - start)
        counts = self.server.counts
        with counts.lock:  # counted first: a client may be done before the write returns
            counts.bytes += len(data)
            counts.gets += 1
        self.wfile.write(data)


@contextlib.contextmanager
def running(server: StoreServer) -> Iterator[StoreServer]:
    """`server` serving on a thread until the block is left."""
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


# .ci/run's remote-stores tier sets INSPECTOR_REMOTE_STORES=required after installing gcsfs and
# huggingface_hub: there a missing package fails the tests instead of skipping them.
STORES_REQUIRED = os.environ.get("INSPECTOR_REMOTE_STORES") == "required"


def store_packages() -> None:
    """Skip (or, in the remote-stores tier, fail) when gcsfs or huggingface_hub is missing."""
    for name in ("gcsfs", "huggingface_hub"):
        if STORES_REQUIRED:
            importlib.import_module(name)
        else:
            pytest.importorskip(name, reason=f"needs {name}: .ci/run's remote-stores tier")
