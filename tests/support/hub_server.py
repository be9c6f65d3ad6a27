"""A local Hugging Face Hub-protocol server for tests, on 127.0.0.1 only.

Speaks enough of the Hub's HTTP API for the real `huggingface_hub` client: create-repo, refs,
paths-info, preupload, the LFS batch / upload / verify protocol, ndjson commits, tags and
resolve downloads. Faults can be injected per request (a status code, or a dropped connection
half-way through reading the request body), and every request is logged so tests can count
uploads and commits.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlparse

import yaml

from support.token_scan import HF_TEST_TOKEN

LFS_SUFFIXES = (".pte", ".bpte", ".bin")
PIPELINE_TAGS = ("image-segmentation", "image-classification", "object-detection", "depth-estimation")  # a few
LFS_MIN_BYTES = 10 * 1024 * 1024  # as the Hub: big files go to LFS whatever their name


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class StoredFile:
    size: int
    lfs_sha256: str | None  # None: a regular git file
    content: bytes | None  # regular files only; LFS content lives in the server's LFS store


@dataclass
class Repo:
    commits: dict[str, dict[str, StoredFile]] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    private: bool = False  # reads need the token too (as the Hub: 401 RepoNotFound without it)


@dataclass
class Fault:
    method: str
    path_re: str
    # an HTTP status; "drop" (close the socket mid-request); "echo" (a 400 whose body repeats the
    # request's Authorization header); "corrupt" (method "GET" on a resolve path: serve flipped bytes)
    action: int | str
    times: int = 1


class HubState:
    def __init__(self, token: str):
        self.token = token
        self.repos: dict[str, Repo] = {}
        self.lfs: dict[str, bytes] = {}
        self.faults: list[Fault] = []
        self.log: list[tuple[str, str, int]] = []
        self.lock = threading.Lock()

    def inject(self, method: str, path_re: str, action: int | str, times: int = 1) -> None:
        with self.lock:
            self.faults.append(Fault(method, path_re, action, times))

    def take_fault(self, method: str, path: str) -> Fault | None:
        with self.lock:
            for f in self.faults:
                if f.times > 0 and f.method == method and re.search(f.path_re, path):
                    f.times -= 1
                    return f
        return None

    def count(self, method: str, path_re: str, status: int | None = 200) -> int:
        return sum(
            1 for m, p, s in self.log if m == method and re.search(path_re, p) and (status is None or s == status)
        )

    def served(self, repo_id: str, rev: str, path: str) -> bytes | None:
        """The bytes `resolve/<rev>/<path>` serves (None: no such file)."""
        repo = self.repos[repo_id]
        commit = resolve_rev(repo, rev)
        f = repo.commits[commit].get(path) if commit else None
        if f is None:
            return None
        return self.lfs[f.lfs_sha256] if f.lfs_sha256 else f.content

    def tamper(self, repo_id: str, rev: str, path: str, data: bytes) -> None:
        """Replace the bytes served for `path` without telling anyone (a corrupted remote)."""
        repo = self.repos[repo_id]
        f = repo.commits[resolve_rev(repo, rev)][path]
        if f.lfs_sha256:
            self.lfs[f.lfs_sha256] = data
        else:
            f.content = data


def resolve_rev(repo: Repo, rev: str) -> str | None:
    if rev in repo.branches:
        return repo.branches[rev]
    if rev in repo.tags:
        return repo.tags[rev]
    return rev if rev in repo.commits else None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    state: HubState
    base: str

    def log_message(self, *args) -> None:  # quiet
        pass

    # --- plumbing -----------------------------------------------------------------------------
    def _send(self, status: int, body: bytes | dict | list = b"", headers: dict | None = None, head: bool = False):
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            headers = {"Content-Type": "application/json", **(headers or {})}
        # logged before the answer leaves: a client that has its answer finds the request logged
        self.state.log.append((self.command, urlparse(self.path).path, status))
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head and self.command != "HEAD":  # HEAD answers carry headers only
            self.wfile.write(body)

    def _error(self, status: int, message: str, code: str | None = None):
        headers = {"X-Error-Message": message}
        if code:
            headers["X-Error-Code"] = code
        self._send(status, {"error": message}, headers)

    def _body(self) -> bytes:
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _authorized(self) -> bool:
        if self.headers.get("Authorization") == f"Bearer {self.state.token}":
            return True
        self._error(401, "Invalid credentials in Authorization header")
        return False

    def _guarded(self, repo_id: str, parse=json.loads):
        """Read the body, check the token and the repo: (parsed body, repo), or None once an
        error answer has been sent."""
        body = parse(self._body())
        if not self._authorized():
            return None
        repo = self._repo(repo_id)
        return None if repo is None else (body, repo)

    def _repo(self, repo_id: str) -> Repo | None:
        repo = self.state.repos.get(repo_id)
        if repo is None:
            self._error(404, f"Repository Not Found for url: {self.path}", "RepoNotFound")
        elif repo.private and self.headers.get("Authorization") != f"Bearer {self.state.token}":
            self._error(401, "Repository not found", "RepoNotFound")
            return None
        return repo

    def _fault(self) -> bool:
        f = self.state.take_fault(self.command, urlparse(self.path).path)
        if f is None or f.action == "corrupt":
            self.corrupt = f is not None
            return False
        if f.action == "echo":
            self._body()
            self._error(400, f"malformed request; you sent Authorization: {self.headers.get('Authorization')}")
            return True
        if f.action == "drop":
            n = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(n // 2)  # take half the upload, then hang up
            self.state.log.append((self.command, urlparse(self.path).path, 0))
            self.close_connection = True
            self.connection.shutdown(2)
            return True
        self._body()
        self._error(int(f.action), "injected fault")
        return True

    def _dispatch(self, routes):
        if self._fault():
            return
        path = urlparse(self.path).path
        for pattern, fn in routes:
            m = re.fullmatch(pattern, path)
            if m:
                return fn(*[unquote(g) for g in m.groups()])
        self._error(404, f"no route for {self.command} {path}")

    # --- verbs --------------------------------------------------------------------------------
    def do_GET(self):
        self._dispatch(
            [
                (r"/api/models/([^/]+/[^/]+)/refs", self.refs),
                (r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", self.resolve),
            ]
        )

    def do_HEAD(self):
        self._dispatch([(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", lambda r, v, p: self.resolve(r, v, p, head=True))])

    def do_POST(self):
        self._dispatch(
            [
                (r"/api/repos/create", self.create_repo),
                (r"/api/validate-yaml", self.validate_yaml),
                (r"/api/models/([^/]+/[^/]+)/paths-info/([^/]+)", self.paths_info),
                (r"/api/models/([^/]+/[^/]+)/preupload/([^/]+)", self.preupload),
                (r"/([^/]+/[^/]+)\.git/info/lfs/objects/batch", self.lfs_batch),
                (r"/lfs/([0-9a-f]{64})/verify", self.lfs_verify),
                (r"/api/models/([^/]+/[^/]+)/commit/([^/]+)", self.commit),
                (r"/api/models/([^/]+/[^/]+)/tag/([^/]+)", self.create_tag),
            ]
        )

    def do_PUT(self):
        self._dispatch([(r"/lfs/([0-9a-f]{64})", self.lfs_put)])

    def do_DELETE(self):
        self._dispatch([(r"/api/models/([^/]+/[^/]+)/tag/([^/]+)", self.delete_tag)])

    # --- endpoints ----------------------------------------------------------------------------
    def validate_yaml(self):
        """As the Hub checks a README.md's front matter before a commit that holds it: a YAML
        mapping, known fields of the right type, a known pipeline_tag; 400 with `errors` otherwise."""
        content = json.loads(self._body())["content"]
        errors, warnings = [], []
        m = re.match(r"---\n(.*?)\n---\n", content, re.S)
        if m is None:
            warnings.append({"message": "empty or missing yaml metadata in repo card"})
        else:
            try:
                meta = yaml.safe_load(m.group(1))
            except yaml.YAMLError as e:
                meta, errors = None, [{"message": f"YAML parse error: {' '.join(str(e).split())}"}]
            if not errors and not isinstance(meta, dict):
                errors.append({"message": "metadata must be a YAML mapping"})
            elif isinstance(meta, dict):
                for key in ("license", "library_name", "pipeline_tag"):
                    if key in meta and not isinstance(meta[key], str):
                        errors.append({"message": f'"{key}" must be a string'})
                if "tags" in meta and not (
                    isinstance(meta["tags"], list) and all(isinstance(t, str) for t in meta["tags"])
                ):
                    errors.append({"message": '"tags" must be an array of strings'})
                if isinstance(meta.get("pipeline_tag"), str) and meta["pipeline_tag"] not in PIPELINE_TAGS:
                    errors.append(
                        {"message": f'"pipeline_tag" must be a valid pipeline tag, got {meta["pipeline_tag"]!r}'}
                    )
        self._send(400 if errors else 200, {"errors": errors, "warnings": warnings})

    def create_repo(self):
        payload = json.loads(self._body() or b"{}")
        if not self._authorized():
            return
        repo_id = f"{payload.get('organization')}/{payload['name']}"
        if repo_id in self.state.repos:  # the Hub answers 409 with the existing repo's url
            return self._send(
                409,
                {"error": "You already created this model repo", "url": f"{self.base}/{repo_id}"},
                {"X-Error-Message": "You already created this model repo"},
            )
        repo = Repo()
        initial = hashlib.sha1(f"init:{repo_id}".encode()).hexdigest()
        repo.commits[initial] = {}
        repo.branches["main"] = initial
        self.state.repos[repo_id] = repo
        self._send(200, {"url": f"{self.base}/{repo_id}", "name": repo_id})

    def refs(self, repo_id):
        repo = self._repo(repo_id)
        if repo is None:
            return
        ref = lambda kind, n, c: {"name": n, "ref": f"refs/{kind}/{n}", "targetCommit": c}  # noqa: E731
        self._send(
            200,
            {
                "branches": [ref("heads", n, c) for n, c in repo.branches.items()],
                "tags": [ref("tags", n, c) for n, c in repo.tags.items()],
                "converts": [],
            },
        )

    def paths_info(self, repo_id, rev):
        form = parse_qs(self._body().decode())
        repo = self._repo(repo_id)
        if repo is None:
            return
        commit = resolve_rev(repo, rev)
        if commit is None:
            return self._error(404, f"Invalid rev id: {rev}", "RevisionNotFound")
        files = repo.commits[commit]
        out = []
        for p in form.get("paths", []):
            if p in files:
                f = files[p]
                info = {
                    "type": "file",
                    "path": p,
                    "size": f.size,
                    "oid": git_blob_sha1(f.content)
                    if f.content is not None
                    else hashlib.sha1(f.lfs_sha256.encode()).hexdigest(),
                }
                if f.lfs_sha256:
                    info["lfs"] = {"oid": f.lfs_sha256, "size": f.size, "pointerSize": 134}
                out.append(info)
        self._send(200, out)

    def preupload(self, repo_id, rev):
        if (got := self._guarded(repo_id)) is None:
            return
        payload, repo = got
        files = repo.commits[resolve_rev(repo, rev) or repo.branches["main"]]
        out = []
        for f in payload["files"]:
            lfs = f["path"].endswith(LFS_SUFFIXES) or f["size"] >= LFS_MIN_BYTES
            remote = files.get(f["path"])
            oid = None
            if remote is not None:
                oid = remote.lfs_sha256 if remote.lfs_sha256 else git_blob_sha1(remote.content)
            out.append(
                {"path": f["path"], "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False, "oid": oid}
            )
        self._send(200, {"files": out, "commitOid": files and repo.branches["main"]})

    def lfs_batch(self, repo_id):
        if (got := self._guarded(repo_id)) is None:
            return
        payload, _ = got
        objects = []
        for o in payload["objects"]:
            entry = {"oid": o["oid"], "size": o["size"]}
            if o["oid"] not in self.state.lfs:
                entry["actions"] = {
                    "upload": {"href": f"{self.base}/lfs/{o['oid']}"},
                    "verify": {"href": f"{self.base}/lfs/{o['oid']}/verify"},
                }
            objects.append(entry)
        self._send(200, {"transfer": "basic", "objects": objects}, {"Content-Type": "application/vnd.git-lfs+json"})

    def lfs_put(self, oid):
        data = self._body()
        if hashlib.sha256(data).hexdigest() != oid:
            return self._error(400, "sha256 of uploaded content does not match oid")
        self.state.lfs[oid] = data
        self._send(200, b"")

    def lfs_verify(self, oid):
        payload = json.loads(self._body())
        ok = oid in self.state.lfs and len(self.state.lfs[oid]) == payload.get("size")
        self._send(200, {"ok": True}) if ok else self._error(404, "object not found")

    def commit(self, repo_id, rev):
        if (
            got := self._guarded(repo_id, lambda b: [json.loads(line) for line in b.splitlines() if line.strip()])
        ) is None:
            return
        lines, repo = got
        header = lines[0]["value"]
        head = repo.branches.get(rev)
        if head is None:
            return self._error(404, f"Invalid rev id: {rev}", "RevisionNotFound")
        if header.get("parentCommit") and header["parentCommit"] != head:
            return self._error(412, "A commit has happened since. Please refresh and try again.")
        files = dict(repo.commits[head])
        for item in lines[1:]:
            v = item["value"]
            if item["key"] == "file":
                data = base64.b64decode(v["content"])
                files[v["path"]] = StoredFile(len(data), None, data)
            elif item["key"] == "lfsFile":
                if v["oid"] not in self.state.lfs:
                    return self._error(422, f"LFS object {v['oid']} was never uploaded")
                files[v["path"]] = StoredFile(v["size"], v["oid"], None)
            elif item["key"] == "deletedFile":
                files.pop(v["path"], None)
        oid = hashlib.sha1(json.dumps([head, header, lines[1:]], sort_keys=True).encode()).hexdigest()
        repo.commits[oid] = files
        repo.branches[rev] = oid
        self._send(200, {"commitUrl": f"{self.base}/{repo_id}/commit/{oid}", "commitOid": oid, "pullRequestUrl": None})

    def create_tag(self, repo_id, rev):
        if (got := self._guarded(repo_id)) is None:
            return
        payload, repo = got
        commit = resolve_rev(repo, rev)
        if commit is None:
            return self._error(404, f"Invalid rev id: {rev}", "RevisionNotFound")
        if payload["tag"] in repo.tags:
            return self._error(409, f"Tag {payload['tag']} already exists")
        repo.tags[payload["tag"]] = commit
        self._send(200, {})

    def delete_tag(self, repo_id, tag):
        if (got := self._guarded(repo_id, lambda b: b)) is None:
            return
        _, repo = got
        if repo.tags.pop(tag, None) is None:
            return self._error(404, f"Invalid rev id: {tag}", "RevisionNotFound")
        self._send(200, {})

    def resolve(self, repo_id, rev, path, head=False):
        repo = self._repo(repo_id) if repo_id in self.state.repos else None
        if repo_id in self.state.repos and repo is None:
            return  # private, no token: answered
        commit = resolve_rev(repo, rev) if repo else None
        f = repo.commits[commit].get(path) if commit else None
        if f is None:
            return self._error(404, f"Entry not found: {repo_id}@{rev}/{path}", "EntryNotFound")
        data = self.state.lfs[f.lfs_sha256] if f.lfs_sha256 else f.content
        if getattr(self, "corrupt", False):
            data = bytes([data[0] ^ 0xFF]) + data[1:]
        etag = f.lfs_sha256 or git_blob_sha1(f.content)
        self._send(
            200,
            data,
            {"ETag": f'"{etag}"', "X-Repo-Commit": commit, "Content-Type": "application/octet-stream"},
            head=head,
        )


class HubServer:
    """`with HubServer(token) as hub:` serves on http://127.0.0.1:<free port> in a thread."""

    def __init__(self, token: str):
        self.state = HubState(token)
        handler = type("BoundHandler", (Handler,), {"state": self.state})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        handler.base = self.url
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> HubServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def hf_env(tmp_path, hub, token: str = HF_TEST_TOKEN) -> dict:
    """The environment a `publish` child process talks to the local server with."""
    return {"HF_TOKEN": token, "HF_HOME": str(tmp_path / "hf-home"), "HF_ENDPOINT": hub.url}
