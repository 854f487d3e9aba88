"""Remote checkpoints: a byte source over fsspec (s3://, gs://, hf://, http(s)://).

`RemoteFile(url)` answers `read(offset, length)` with range requests through a block cache:
aligned blocks, fetched as one request per missing run, with read-ahead that grows while reads
go forward, kept in a small LRU shared by the process and keyed by URL + ETag/version (a changed
object is never served from it). Large reads bypass the cache and go out as parallel range
requests. `bytes_fetched` and `requests` count what went over the network.

fsspec and each store's filesystem (s3fs, gcsfs, huggingface_hub, aiohttp for http) are the
optional extra `ckpt-inspector[remote]`, imported only when a URL is opened. Credentials come
only from each filesystem's standard configuration (environment, profiles, HF token); names and
messages never carry them, nor a URL's query string (a presigned URL's signature).
"""

from __future__ import annotations

import bisect
import contextlib
import hashlib
import importlib
import os
import re
import struct
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import (
    FileChangedError,
    RemoteAccessError,
    RemoteError,
    RemoteNotFoundError,
    RemoteThrottledError,
)
from .sources import Identity, check_range

# scheme -> the package its fsspec filesystem needs (what a missing-package error names).
SCHEMES = {
    "s3": "s3fs",
    "gs": "gcsfs",
    "gcs": "gcsfs",
    "hf": "huggingface_hub",
    "http": "aiohttp",
    "https": "aiohttp",
}
EXTRA = "pip install 'ckpt-inspector[remote]'"

BLOCK = 256 << 10  # cache block: a header read costs one or two of these
MAX_READ_AHEAD = 16  # blocks fetched ahead at most while reads go forward (4 MiB)
CACHE_BYTES = 32 << 20  # the process's block cache (all remote files together)
LARGE = 4 << 20  # reads from this size on bypass the cache: parallel requests of CHUNK
CHUNK = 4 << 20
PARALLEL = 4  # range requests in flight for one large read
PARALLEL_SMALL = 16  # prefetched small ranges in flight
GAP = 4 << 10  # prefetched ranges closer than this are fetched as one
RETRIES = 4  # attempts after the first, with backoff, on 5xx, throttling, timeouts
BACKOFF = 0.25  # seconds before the first retry; doubles each time
TIMEOUT_ENV = "CKPT_REMOTE_TIMEOUT"  # seconds a connection or read may stall (default 60)
DISK_MAX_ENV = "CKPT_REMOTE_CACHE_MAX_BYTES"  # the disk cache's cap (default DISK_MAX)
DISK_MAX = 1 << 30
DISK_PER_FILE = 16 << 20  # blocks one opened file may add to the disk cache (headers, not data)

_URL = re.compile(r"^([a-z][a-z0-9+.-]*)://", re.IGNORECASE)


def is_url(text: object) -> bool:
    """A string naming a remote object by a scheme this module reads."""
    if not isinstance(text, str):
        return False
    m = _URL.match(text)
    return m is not None and m.group(1).lower() in SCHEMES


def public_name(url: str) -> str:
    """`url` as messages and plans may show it: no user:password@, no query string, no
    fragment (a presigned URL's signature lives in its query)."""
    m = _URL.match(url)
    if m is None:
        return url
    rest = url[m.end():]
    rest = re.split(r"[?#]", rest, maxsplit=1)[0]
    host, sep, path = rest.partition("/")
    host = host.rpartition("@")[2]
    return f"{m.group(1)}://{host}{sep}{path}"


def redact(text: str) -> str:
    """Every URL in `text` shown by `public_name` (for messages of the stores' libraries)."""
    return re.sub(r"[a-z][a-z0-9+.-]*://[^\s'\"<>]+", lambda m: public_name(m.group(0)), text,
                  flags=re.IGNORECASE)


if TYPE_CHECKING:
    _ConcretePath = Path
else:
    _ConcretePath = type(Path())  # PosixPath or WindowsPath: Path itself is not subclassable


class URLPath(_ConcretePath):
    """A checkpoint's `path` when it is a URL: `name` and `suffix` as for a path, and `str()` /
    `os.fspath()` give the URL itself (a plain Path would fold `https://` into `https:/`)."""

    _url: str

    def __new__(cls, url: str) -> URLPath:
        self = super().__new__(cls, url)
        self._url = url
        return self

    def __str__(self) -> str:
        return self._url

    def __fspath__(self) -> str:
        return self._url

    def __repr__(self) -> str:
        return f"URLPath({self._url!r})"


# The process's block cache: (url, version, block index) -> bytes, least recently used out first.
_cache: OrderedDict[tuple[str, str, int], bytes] = OrderedDict()
_cache_lock = threading.Lock()
_cache_bytes = 0


Buffer = bytes | bytearray  # a prefetched span: bytearray when filled piece by piece


def _cache_get(key: tuple[str, str, int]) -> bytes | None:
    with _cache_lock:
        data = _cache.get(key)
        if data is not None:
            _cache.move_to_end(key)
        return data


def _cache_peek(key: tuple[str, str, int]) -> bool:
    with _cache_lock:
        return key in _cache


def _merged(spans: list[tuple[int, int]], gap: int) -> list[tuple[int, int]]:
    """Sorted (offset, length) spans with those less than `gap` apart joined into one."""
    out: list[tuple[int, int]] = []
    for o, n in spans:
        if out and o <= out[-1][0] + out[-1][1] + gap:
            lo = out[-1][0]
            out[-1] = (lo, max(out[-1][1], o + n - lo))
        else:
            out.append((o, n))
    return out


def _cache_put(key: tuple[str, str, int], data: bytes) -> None:
    global _cache_bytes
    with _cache_lock:
        if key in _cache:
            return
        _cache[key] = data
        _cache_bytes += len(data)
        while _cache_bytes > CACHE_BYTES and _cache:
            _, old = _cache.popitem(last=False)
            _cache_bytes -= len(old)


def clear_cache() -> None:
    """Forget every cached block (tests; a long-lived process that wants its memory back)."""
    global _cache_bytes
    with _cache_lock:
        _cache.clear()
        _cache_bytes = 0


class DiskBlocks:
    """Blocks of one remote object version on disk: `<cache>/remote/<key>/<block index>`, the
    key a hash of the URL (without secrets), its ETag/version and size, so a changed object gets
    a new folder and is never served stale. Bounded: at most `DISK_PER_FILE` bytes added per
    opened file, and the whole cache trimmed to `CKPT_REMOTE_CACHE_MAX_BYTES` (least recently
    used blocks first) when a file is opened. Files are written under a temporary name and
    renamed: readers never see half a block."""

    def __init__(self, root: Path, name: str, version: str, size: int):
        key = hashlib.sha256(f"{name}\0{version}\0{size}".encode()).hexdigest()[:32]
        self.root = root
        self.folder = root / key
        self.added = 0
        trim(root, _disk_max())

    def get(self, index: int | str) -> bytes | None:
        path = self.folder / str(index)
        try:
            data = path.read_bytes()
            os.utime(path)  # recently used: kept longest
        except OSError:
            return None
        return data

    def put(self, index: int, data: bytes) -> None:
        self._write(str(index), data)

    def get_spans(self, asked: list[tuple[int, int]]) -> list[tuple[int, bytes]] | None:
        """The spans fetched for the prefetch of exactly `asked` ranges, when on disk."""
        data = self.get(_spans_name(asked))
        if data is None or len(data) < 8:
            return None
        (n,) = struct.unpack_from("<Q", data)
        table = struct.unpack_from(f"<{2 * n}Q", data, 8)
        out, pos = [], 8 + 16 * n
        for i in range(n):
            offset, length = table[2 * i], table[2 * i + 1]
            out.append((offset, data[pos : pos + length]))
            pos += length
        return out if pos == len(data) else None

    def put_spans(self, asked: list[tuple[int, int]], spans: Sequence[tuple[int, Buffer]]) -> None:
        table = [v for offset, data in spans for v in (offset, len(data))]
        head = struct.pack(f"<Q{len(table)}Q", len(spans), *table)
        self._write(_spans_name(asked), head + b"".join(d for _, d in spans))

    def _write(self, name: str, data: bytes) -> None:
        if self.added + len(data) > DISK_PER_FILE:
            return
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=f".{name}.", suffix=".part")
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, self.folder / name)
            self.added += len(data)
        except OSError:
            return  # a full or read-only cache only costs speed


def _spans_name(asked: list[tuple[int, int]]) -> str:
    return "spans-" + hashlib.sha256(repr(asked).encode()).hexdigest()[:24]


def trim(root: Path, limit: int) -> None:
    """Remove the least recently used blocks under `root` until at most `limit` bytes stay."""
    try:
        blocks = [(st.st_mtime_ns, st.st_size, p) for p in root.glob("*/*")
                  if not p.name.endswith(".part") for st in [p.stat()]]
    except OSError:
        return
    total = sum(size for _, size, _ in blocks)
    for _, size, path in sorted(blocks):
        if total <= limit:
            return
        with contextlib.suppress(OSError):
            path.unlink()
            total -= size


def _disk_max() -> int:
    value = os.environ.get(DISK_MAX_ENV, "")
    return int(value) if value.strip().isdigit() else DISK_MAX


class RemoteFile:
    """A remote object as a byte source: range reads through the block cache (see above);
    `cache_dir`: also keep the blocks on disk there (`DiskBlocks`), for the next process."""

    is_file_map = False

    def __init__(self, url: str, *, cache_dir: str | os.PathLike[str] | None = None,
                 known: tuple[Any, str, dict[str, Any]] | None = None):
        """`known`: (filesystem, path in it, info) when a folder listing already gave them."""
        self.url = url
        self.name = public_name(url)
        self.bytes_fetched = 0
        self.requests = 0
        self._lock = threading.Lock()
        self._next = -1  # where the last read ended: a read starting there is sequential
        self._ahead = 1  # blocks to fetch ahead on the next sequential miss
        self._pinned: dict[int, Buffer] = {}  # prefetched ranges by offset (see prefetch)
        self._pinned_at: list[int] = []
        if known is not None:
            self._fs, self._path, info = known
        else:
            self._fs, self._path = _filesystem(url, self.name)
            info = self._call(lambda: self._fs.info(self._path), "read its size")
            self.requests += 1
        size = info.get("size")
        if not isinstance(size, int) or size < 0:
            raise RemoteError(self.name, "the store gives no size for it (range reads need one)")
        self.size = size
        self.version = _version(info)
        self._range_kwargs = _range_kwargs(self._fs, self.version)
        # On disk only when the store names the version: else a change could not be seen.
        self._disk = (DiskBlocks(Path(cache_dir) / "remote", self.name, self.version, size)
                      if cache_dir is not None and self.version else None)

    # Source -------------------------------------------------------------------------------------
    def read(self, offset: int, length: int) -> bytes:
        check_range(self.name, self.size, offset, length)
        if length == 0:
            return b""
        if length >= LARGE:
            return self._read_parallel(offset, length)
        pinned = self._from_pinned(offset, length)
        if pinned is not None:
            return pinned
        first, last = offset // BLOCK, (offset + length - 1) // BLOCK
        blocks = self._blocks(first, last, sequential=offset == self._next)
        self._next = offset + length
        data = b"".join(blocks)
        start = offset - first * BLOCK
        return data[start : start + length]

    def view(self, offset: int, length: int) -> memoryview | None:
        """A view of prefetched bytes (no copy), else None: callers read."""
        check_range(self.name, self.size, offset, length)
        with self._lock:
            at = bisect.bisect_right(self._pinned_at, offset) - 1
            if at < 0:
                return None
            start = self._pinned_at[at]
            data = self._pinned[start]
        if offset + length > start + len(data):
            return None
        return memoryview(data)[offset - start : offset - start + length]

    def release(self, offset: int, length: int) -> None:
        """Prefetched spans holding any of these bytes are dropped (views taken stay valid);
        cached blocks age out of the LRU."""
        with self._lock:
            gone = [o for o in self._pinned
                    if o < offset + length and offset < o + len(self._pinned[o])]
            for o in gone:
                del self._pinned[o]
            if gone:
                self._pinned_at = sorted(self._pinned)

    def identity(self) -> Identity:
        """(size, ETag/version), asked of the store again (one request): FileChangedError when
        the object is no longer the one opened, whose bytes the cache and the listing hold."""
        info = self._call(lambda: self._fs.info(self._path), "read its size")
        self.requests += 1
        now = (info.get("size"), _version(info))
        if now != (self.size, self.version):
            raise FileChangedError(
                self.name, f"the object changed since it was opened (size {self.size:,} -> "
                           f"{now[0]:,}, version {self.version} -> {now[1]}): open it again")
        return now

    def close(self) -> None:
        return None  # the filesystem's sessions are fsspec's (shared, closed at exit)

    def __enter__(self) -> RemoteFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RemoteFile({self.name!r})"

    def prefetch(self, ranges: list[tuple[int, int]]) -> None:
        """Fetch (offset, length) ranges about to be read one by one (a zip's local headers),
        PARALLEL_SMALL requests in flight, neighbours merged into one request; later reads
        inside them are served from memory. Ranges already cached are skipped."""
        asked = sorted(ranges)
        saved = self._disk.get_spans(asked) if self._disk is not None else None
        if saved is not None:
            self._pin(saved)
            return
        spans = _merged(sorted(r for r in asked if r[1] > 0 and not self._cached(*r)), GAP)
        spans = [(o, min(n, self.size - o)) for o, n in spans if 0 <= o < self.size]
        if not spans:
            return
        # Long spans (a hashing batch's tensors) go out as CHUNK pieces, all in parallel.
        # Each piece is copied into its span's buffer as it arrives, then dropped.
        bufs = [bytearray(n) for _, n in spans]
        with ThreadPoolExecutor(PARALLEL_SMALL) as pool:
            pending = [(i, a, pool.submit(self._fetch, o + a, min(CHUNK, n - a)))
                       for i, (o, n) in enumerate(spans) for a in range(0, n, CHUNK)]
            try:
                for k, (i, a, future) in enumerate(pending):
                    piece = future.result()
                    bufs[i][a : a + len(piece)] = piece
                    pending[k] = (i, a, None)  # type: ignore[assignment]
            except BaseException:  # an error or Ctrl-C: the queued requests are not sent
                pool.shutdown(wait=False, cancel_futures=True)
                raise
        got = [(o, bytes(b) if n < CHUNK else b) for (o, n), b in zip(spans, bufs, strict=True)]
        self._pin(got)
        if self._disk is not None and sum(n for _, n in spans) <= DISK_PER_FILE:
            self._disk.put_spans(asked, got)

    def _pin(self, spans: Sequence[tuple[int, Buffer]]) -> None:
        """Keep prefetched spans; one held before inside a new span goes (`view` looks at the
        nearest span starting before a read: a zip's local header, pinned while listing, would
        hide the hashing batch that covers it, and every tensor would be fetched twice)."""
        with self._lock:
            held = self._pinned_at  # sorted starts, before these spans
            for o, data in spans:
                end = o + len(data)
                for s in held[bisect.bisect_left(held, o) : bisect.bisect_left(held, end)]:
                    old = self._pinned.get(s)
                    if old is not None and s + len(old) <= end:
                        del self._pinned[s]
                self._pinned[o] = data
            self._pinned_at = sorted(self._pinned)

    def _cached(self, offset: int, length: int) -> bool:
        return self._from_pinned(offset, length) is not None or all(
            _cache_peek((self.url, self.version, i))
            for i in range(offset // BLOCK, (offset + length - 1) // BLOCK + 1)
        )

    def _from_pinned(self, offset: int, length: int) -> bytes | None:
        found = self.view(offset, length) if length else None
        return None if found is None else bytes(found)

    # Streaming ----------------------------------------------------------------------------------
    def chunks(self, offset: int, length: int, size: int | None = None) -> Iterator[bytes]:
        """Bytes [offset, offset + length) in pieces of `size` (CHUNK), PARALLEL requests in
        flight: memory stays at a few pieces however long the range."""
        check_range(self.name, self.size, offset, length)
        size = size or CHUNK
        spans = [(o, min(size, offset + length - o)) for o in range(offset, offset + length, size)]
        with ThreadPoolExecutor(PARALLEL) as pool:
            pending = [pool.submit(self._fetch, o, n) for o, n in spans[:PARALLEL]]
            for i in range(len(spans)):
                data = pending[i].result()
                pending[i] = None  # type: ignore[call-overload]
                if i + PARALLEL < len(spans):
                    pending.append(pool.submit(self._fetch, *spans[i + PARALLEL]))
                yield data

    # Internals ----------------------------------------------------------------------------------
    def _blocks(self, first: int, last: int, *, sequential: bool) -> list[bytes]:
        found: dict[int, bytes] = {}
        for i in range(first, last + 1):
            data = _cache_get((self.url, self.version, i))
            if data is None and self._disk is not None:
                data = self._disk.get(i)
                if data is not None:
                    _cache_put((self.url, self.version, i), data)
            if data is not None:
                found[i] = data
        missing = [i for i in range(first, last + 1) if i not in found]
        if missing:
            end_block = (self.size - 1) // BLOCK
            ahead = self._ahead if sequential else 0
            self._ahead = min(MAX_READ_AHEAD, self._ahead * 2) if sequential else 1
            lo, hi = missing[0], min(end_block, missing[-1] + ahead)
            data = self._fetch(lo * BLOCK, min(self.size, (hi + 1) * BLOCK) - lo * BLOCK)
            for i in range(lo, hi + 1):
                block = data[(i - lo) * BLOCK : (i - lo + 1) * BLOCK]
                _cache_put((self.url, self.version, i), block)
                if self._disk is not None:
                    self._disk.put(i, block)
                if first <= i <= last:
                    found[i] = block
        return [found[i] for i in range(first, last + 1)]

    def _read_parallel(self, offset: int, length: int) -> bytes:
        out = bytearray(length)
        pos = 0
        for piece in self.chunks(offset, length):
            out[pos : pos + len(piece)] = piece
            pos += len(piece)
        return bytes(out)

    def _fetch(self, offset: int, length: int) -> bytes:
        """One range request (retried): exactly bytes [offset, offset + length)."""
        data = self._call(
            lambda: self._fs.cat_file(self._path, start=offset, end=offset + length,
                                      **self._range_kwargs),
            f"read bytes [{offset}, {offset + length})",
        )
        with self._lock:
            self.requests += 1
            self.bytes_fetched += len(data)
        if len(data) != length:
            raise RemoteError(
                self.name,
                f"asked for bytes [{offset}, {offset + length}), got {len(data)} bytes: the "
                "server does not honour range requests, or the object changed",
            )
        return bytes(data)

    def _call(self, fn: Callable[[], Any], what: str) -> Any:
        return _call(fn, self.name, what)


def _call(fn: Callable[[], Any], name: str, what: str) -> Any:
    """`fn()`, retried with backoff on 5xx, throttling, timeouts and lost connections; any
    other failure (and the last retry's) as a RemoteError naming the URL."""
    for attempt in range(RETRIES + 1):
        try:
            return fn()
        except Exception as e:  # the stores' libraries raise many kinds: classified here
            error = _classify(e, name, what)
            if error is not None:
                raise error from None
            if attempt == RETRIES:
                raise _generic(e, name, what) from None
            time.sleep(BACKOFF * 2**attempt)
    raise AssertionError("unreachable")


def _filesystem(url: str, name: str) -> tuple[Any, str]:
    """The fsspec filesystem and the path inside it for `url`, or a RemoteError naming what to
    install."""
    scheme = url.split("://", 1)[0].lower()
    needs = SCHEMES[scheme]
    try:
        import fsspec
    except ImportError:
        raise RemoteError(name, f"reading URLs needs fsspec: {EXTRA}") from None
    try:
        importlib.import_module(needs)
        fs, path = fsspec.core.url_to_fs(url, **_options(scheme))
        return fs, path
    except ImportError:
        raise RemoteError(
            name, f"{scheme}:// URLs need {needs} ({EXTRA}, or pip install {needs})"
        ) from None


def _timeout() -> float:
    value = os.environ.get(TIMEOUT_ENV, "60")
    try:
        return float(value)
    except ValueError:
        raise RemoteError(None, f"{TIMEOUT_ENV}={value!r} is not a number of seconds") from None


def _options(scheme: str) -> dict[str, Any]:
    """Timeouts per store (credentials are the store's own configuration, never set here)."""
    seconds = _timeout()
    if scheme in ("http", "https"):
        import aiohttp

        timeout = aiohttp.ClientTimeout(sock_connect=seconds, sock_read=seconds)
        return {"client_kwargs": {"timeout": timeout}}
    if scheme == "s3":
        return {"config_kwargs": {"connect_timeout": seconds, "read_timeout": seconds}}
    return {}


def _version(info: dict[str, Any]) -> str:
    """What changes when the object does: version id, generation, ETag, blob id (or '')."""
    for key in ("VersionId", "version_id", "generation", "ETag", "etag", "blob_id",
                "Last-Modified", "LastModified", "mtime"):
        value = info.get(key)
        if value:
            return str(value)
    return ""


def _range_kwargs(fs: Any, version: str) -> dict[str, Any]:
    """http: every range request carries If-Match with the ETag, so a changed object answers
    412 instead of mixing two versions' bytes. hf: HfFileSystem's cat_file reads through a
    buffered file whose default read-ahead cache fetches 5 MiB past every range asked: no cache."""
    if type(fs).__name__ == "HTTPFileSystem" and version.startswith(('"', 'W/"')):
        return {"headers": {"If-Match": version}}
    if type(fs).__name__ == "HfFileSystem":
        return {"cache_type": "none"}
    return {}


def _statuses(e: BaseException) -> Iterator[int]:
    """HTTP statuses carried by `e` or the errors it came from (aiohttp, botocore, ...)."""
    seen: set[int] = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        status = getattr(e, "status", None) or getattr(e, "status_code", None)
        if isinstance(status, int):
            yield status
        # gcsfs: HttpError carries `code`; a 403 is a bare OSError("Forbidden: <url>...")
        if type(e).__name__ == "HttpError" and isinstance(getattr(e, "code", None), int):
            yield e.code  # type: ignore[attr-defined]
        if type(e) is OSError and str(e).startswith("Forbidden: "):
            yield 403
        response = getattr(e, "response", None)
        if isinstance(response, dict):
            code = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if isinstance(code, int):
                yield code
        elif response is not None and isinstance(getattr(response, "status_code", None), int):
            yield response.status_code
        e = e.__cause__ or e.__context__  # type: ignore[assignment]


_TRANSIENT_NAMES = ("Timeout", "ServerDisconnected", "ClientConnect", "ClientPayload",
                    "ConnectionReset", "ReadTimeout", "EndpointConnection")


def _classify(e: Exception, name: str, what: str) -> RemoteError | FileChangedError | None:
    """The error to raise for `e` at once (404, 403, 412), or None when it is worth retrying
    (5xx, throttling, timeouts, lost connections); a final failure is `_generic`'s."""
    statuses = list(_statuses(e))
    chain = {type(x).__name__ for x in _causes(e)}
    transient = isinstance(e, (TimeoutError, ConnectionError)) or any(
        t in n for n in chain for t in _TRANSIENT_NAMES
    )
    if 412 in statuses:
        return FileChangedError(name, "the object changed while it was read (its ETag moved)")
    if any(s in (401, 403) for s in statuses) or (
        isinstance(e, PermissionError) and not statuses and not transient
    ):
        return RemoteAccessError(
            name, "access denied (403): check the credentials in the store's standard "
                  "configuration (environment, profile, token)")
    # fsspec's HTTP filesystem reports any failure to reach a URL as FileNotFoundError: a
    # refused connection is not a 404
    if 404 in statuses or (isinstance(e, FileNotFoundError) and not statuses and not transient):
        return RemoteNotFoundError(name, "not found (404)")
    if transient or any(s == 429 or s >= 500 for s in statuses):
        return None
    return _generic(e, name, what)


def _generic(e: Exception, name: str, what: str) -> RemoteError:
    statuses = list(_statuses(e))
    if any(s in (429, 503) for s in statuses):
        return RemoteThrottledError(
            name, f"the store is throttling requests ({statuses[0]}); gave up after {RETRIES} "
                  "retries: try again later")
    root = list(_causes(e))[-1]  # the first failure: "Cannot connect to host ...", not "url"
    detail = redact(str(root)) or type(root).__name__
    if statuses:
        detail = f"HTTP {statuses[0]}: {detail}"
    return RemoteError(name, f"cannot {what}: {detail}")


def _causes(e: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    x: BaseException | None = e
    while x is not None and id(x) not in seen:
        seen.add(id(x))
        yield x
        x = x.__cause__ or x.__context__


__all__ = [
    "EXTRA",
    "SCHEMES",
    "RemoteFile",
    "URLPath",
    "clear_cache",
    "is_url",
    "public_name",
    "redact",
]
