"""A fake Hugging Face Hub for huggingface_hub's HfFileSystem: repo info, tree listing
(recursive or not), paths-info and `resolve` downloads with `Range`, over folders on disk, one
per repo (nested paths are folders of the repo). Each repo has one commit, `commit(repo_id)`:
revision `main` and that sha are served, any other is RevisionNotFound. Files whose suffix is
not a text one are LFS files (`lfs` in listings; `X-Linked-Size`/`X-Linked-Etag` on resolve,
ETag their sha256), as on the Hub. Repos in namespace "forbidden" answer 403; a missing repo,
revision or file 404 with the Hub's X-Error-Code.

    with serving({"org/repo": folder}, tmp_path) as (env, counts):
        # a child with child_env(**env) reads hf://org/repo/<file>, hf://org/repo@main/<file>

`env`: HF_ENDPOINT (read by huggingface_hub when imported: set it before a child starts),
HF_HOME under `home` (never the user's cache or token), telemetry off, HF_HUB_OFFLINE unset
(see `child_env` below).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote

from range_server import Counts
from store_server import StoreHandler, StoreServer, children, files, running

TEXT = {".json", ".md", ".txt", ".yaml", ".yml", ".py", ".gitattributes", ""}
DATE = "2026-01-01T00:00:00.000Z"


def commit(repo_id: str) -> str:
    """The repo's one commit sha (40 hex)."""
    return hashlib.sha1(repo_id.encode()).hexdigest()


@functools.lru_cache(maxsize=256)
def _hashes(path: str, size: int, mtime_ns: int) -> tuple[str, str]:
    """(git blob sha1, sha256) of a file; size and mtime in the key: rewritten, hashed again."""
    data = Path(path).read_bytes()
    blob = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
    return blob, hashlib.sha256(data).hexdigest()


def entry(name: str, file: Path) -> dict[str, Any]:
    """A file as the tree and paths-info endpoints list it."""
    st = file.stat()
    blob, sha256 = _hashes(str(file), st.st_size, st.st_mtime_ns)
    out: dict[str, Any] = {"type": "file", "oid": blob, "size": st.st_size, "path": name}
    if file.suffix not in TEXT:
        # the git blob is the LFS pointer, not the content
        pointer = (f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\n"
                   f"size {st.st_size}\n").encode()
        out["oid"] = hashlib.sha1(b"blob %d\0" % len(pointer) + pointer).hexdigest()
        out["lfs"] = {"oid": sha256, "size": st.st_size, "pointerSize": len(pointer)}
    return out


def _folder(name: str) -> dict[str, Any]:
    return {"type": "directory", "oid": hashlib.sha1(name.encode()).hexdigest(), "size": 0,
            "path": name}


class _Handler(StoreHandler):
    def answer(self, method: str, path: str, query: dict[str, str]) -> None:
        # /api/{models,datasets}/ORG/NAME/VERB/REV/PATH, /[datasets/]ORG/NAME/resolve/REV/PATH
        parts = path.strip("/").split("/")
        api = parts[0] == "api"
        if api and parts[1:2] not in (["models"], ["datasets"]):
            return self._error(400, "", f"not faked: {method} {path}")
        parts = parts[2:] if api else parts[1:] if parts[0] == "datasets" else parts
        if len(parts) < 2:
            return self._error(400, "", "not faked")
        repo_id, rest = "/".join(map(unquote, parts[:2])), parts[2:]
        if parts[0] == "forbidden":
            return self._error(403, "", "Access to this repo is restricted")
        root = self.server.roots.get(repo_id)
        if root is None:
            return self._error(404, "RepoNotFound", "Repository not found")
        verb = rest[0] if rest else "revision"
        revision = unquote(rest[1]) if len(rest) > 1 else "main"
        if revision not in ("main", commit(repo_id)):
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        sub = unquote("/".join(rest[2:]))
        headers = {"X-Repo-Commit": commit(repo_id)}
        if not api and verb == "resolve" and method in ("GET", "HEAD"):
            return self._resolve(root, sub, headers)
        if api and verb == "revision" and method == "GET":
            return self.send_json(self._info(repo_id, root), headers=headers)
        if api and verb == "tree" and method == "GET":
            return self._tree(repo_id, root, sub, query, headers)
        if api and verb == "paths-info" and method == "POST":
            return self._paths_info(repo_id, root, headers)
        return self._error(400, "", f"not faked: {method} {path}")

    def _error(self, status: int, code: str, message: str) -> None:
        headers = {"X-Error-Message": message} | ({"X-Error-Code": code} if code else {})
        self.send_json({"error": message}, status, headers)

    def _info(self, repo_id: str, root: Path) -> dict[str, Any]:
        return {"id": repo_id, "modelId": repo_id, "sha": commit(repo_id), "private": False,
                "lastModified": DATE, "siblings": [{"rfilename": n} for n in files(root)]}

    def _resolve(self, root: Path, name: str, headers: dict[str, str]) -> None:
        file = root / name
        if not name or ".." in name.split("/") or not file.is_file():
            return self._error(404, "EntryNotFound", f"{name} does not exist")
        meta = entry(name, file)
        if "lfs" in meta:
            etag = f'"{meta["lfs"]["oid"]}"'
            headers |= {"X-Linked-Etag": etag, "X-Linked-Size": str(meta["size"])}
        else:
            etag = f'"{meta["oid"]}"'
        self.send_file(file, headers | {"ETag": etag})

    def _tree(self, repo_id: str, root: Path, sub: str, query: dict[str, str],
              headers: dict[str, str]) -> None:
        found = files(root)
        prefix = sub.strip("/") + "/" if sub.strip("/") else ""
        if prefix and not any(n.startswith(prefix) for n in found):
            return self._error(404, "EntryNotFound", f"{sub} does not exist")
        if query.get("recursive", "").lower() == "true":
            names = [n for n in found if n.startswith(prefix)]
            folders = sorted({n[:i] for n in names for i, c in enumerate(n)
                              if c == "/" and i >= len(prefix)})
        else:
            names, folders = children(list(found), prefix)
            folders = [f.rstrip("/") for f in folders]
        out = [_folder(f) for f in folders] + [entry(n, found[n]) for n in names]
        self.send_json(_expanded(out, repo_id, query.get("expand", "")), headers=headers)

    def _paths_info(self, repo_id: str, root: Path, headers: dict[str, str]) -> None:
        if self.headers.get("Content-Type", "").startswith("application/json"):
            form = {k: v if isinstance(v, list) else [str(v)]
                    for k, v in json.loads(self.payload).items()}
        else:
            form = parse_qs(self.payload.decode())
        asked, expand = form.get("paths", []), form.get("expand", [""])[-1]
        found = files(root)
        out = []
        for p in asked:
            p = p.strip("/")
            if p in found:
                out.append(entry(p, found[p]))
            elif any(n.startswith(p + "/") for n in found):
                out.append(_folder(p))
        self.send_json(_expanded(out, repo_id, expand), headers=headers)


def _expanded(entries: list[dict[str, Any]], repo_id: str, expand: str) -> list[dict[str, Any]]:
    """`entries` with their last commit when `expand` is true (the Hub's expand=True)."""
    if expand.lower() == "true":
        for e in entries:
            e["lastCommit"] = {"id": commit(repo_id), "title": "upload", "date": DATE}
    return entries


def child_env(url: str, home: str | os.PathLike[str]) -> dict[str, str]:
    """What a child needs to read hf:// from the server at `url`, nothing of the user's."""
    return {"HF_ENDPOINT": url, "HF_HOME": str(Path(home) / "hf-home"),
            "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_OFFLINE": "0", "HF_TOKEN": "",
            "HF_HUB_DISABLE_IMPLICIT_TOKEN": "1"}


@contextlib.contextmanager
def serving(repos: Mapping[str, str | os.PathLike[str]], home: str | os.PathLike[str]
            ) -> Iterator[tuple[dict[str, str], Counts]]:
    """(the environment an HfFileSystem client needs, counts) of a fake Hub holding `repos`
    (repo id -> folder), HF_HOME under `home`; stopped on leaving."""
    with running(StoreServer(_Handler, repos)) as server:
        yield child_env(server.url, home), server.counts
