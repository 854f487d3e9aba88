"""A small HTTP server for the remote tests: serves a folder on 127.0.0.1, honours `Range` and
`If-Match`, sends an ETag (size + mtime), counts the body bytes and requests it served,
answers 403 for any path under /forbidden/, and under /signed/ unless the query holds `sig=ok`
(a presigned URL), serving /signed/X as X; while `Counts.fail` lists statuses, answers the next
requests with them. Started and always stopped by `serving(folder)`."""

from __future__ import annotations

import contextlib
import os
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

_RANGE = re.compile(r"bytes=(\d+)-(\d*)$")


class Counts:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.bytes = 0
        self.requests = 0
        self.gets = 0
        self.fail: list[int] = []  # statuses to answer the next requests with (a flaky store)

    def reset(self) -> None:
        with self.lock:
            self.bytes = self.requests = self.gets = 0


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        return None  # quiet

    def do_HEAD(self) -> None:
        self._answer(body=False)

    def do_GET(self) -> None:
        self._answer(body=True)

    def _answer(self, *, body: bool) -> None:
        counts = self.server.counts
        with counts.lock:
            counts.requests += 1
            counts.gets += body
            failing = counts.fail.pop(0) if counts.fail else None
        if failing is not None:
            self.send_error(failing)
            return
        path, _, query = self.path.partition("?")
        if path.startswith("/forbidden/"):
            self.send_error(403)
            return
        if path.startswith("/signed/"):
            if "sig=ok" not in query.split("&"):
                self.send_error(403)
                return
            path = path[len("/signed"):]
        file = self.server.root / path.lstrip("/")
        if not file.is_file():
            self.send_error(404)
            return
        st = file.stat()
        etag = f'"{st.st_size:x}-{st.st_mtime_ns:x}"'
        wanted = self.headers.get("If-Match")
        if wanted is not None and wanted != etag:
            self.send_error(412)
            return
        size, start, end = st.st_size, 0, st.st_size
        m = _RANGE.match(self.headers.get("Range", ""))
        self.send_response(206 if m else 200)
        if m:
            start = int(m.group(1))
            end = min(size, int(m.group(2)) + 1) if m.group(2) else size
            self.send_header("Content-Range", f"bytes {start}-{end - 1}/{size}")
        self.send_header("Content-Length", str(end - start))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("ETag", etag)
        self.end_headers()
        if not body:
            return
        with file.open("rb") as f:
            f.seek(start)
            data = f.read(end - start)
        with counts.lock:  # counted first: a client may be done before the write returns
            counts.bytes += len(data)
        self.wfile.write(data)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # 16 parallel range requests: a backlog of 5 drops SYNs (1 s retry)

    def handle_error(self, request: object, client_address: object) -> None:
        return None  # a client that hung up early (a refused or retried request): quiet

    def __init__(self, root: Path):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.root = root
        self.counts = Counts()


@contextlib.contextmanager
def serving(root: str | os.PathLike[str]) -> Iterator[tuple[str, Counts]]:
    """(base URL, counts) of a server for `root`, stopped on leaving."""
    server = _Server(Path(root))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", server.counts
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
