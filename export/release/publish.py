"""Publish the manifest's artifacts to a Hugging Face repo under an immutable tag, verify them by
downloading every file back from its tag URL, then write published.json and the URL constants.

Reads only the manifest and the files it names; never imports torch.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import sys
import time
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from export.errors import ExportError
from export.files import ensure_writable_dir, sha256_file
from export.records import Manifest, write_with_schema
from export.release.hubnames import check_repo_and_tag
from export.release.published import (
    PUBLISHED_NAME,
    PUBLISHED_SCHEMA_NAME,
    PUBLISHED_SCHEMA_VERSION,
    Published,
    PublishedFile,
)
from export.store.manifest import MANIFEST_NAME, SCHEMA_NAME, checked_files, read_manifest

DEFAULT_ENDPOINT = "https://huggingface.co"
RETRY_STATUS = (429, 500, 502, 503, 504)
RETRIES = 4  # attempts after the first; with BACKOFF_S doubling that is ~7.5 s of patience in all
BACKOFF_S = 0.5
GIT_HASH_MAX_BYTES = 10 * 1024 * 1024  # the Hub stores smaller text files in git, not LFS

T = TypeVar("T")


class PublishError(ExportError):
    exit_code = 4


@dataclass(frozen=True)
class PlannedFile:
    local: Path
    path_in_repo: str
    sha256: str
    bytes: int
    status: str  # new | changed | unchanged | unknown
    artifact: str | None  # manifest key, None for the manifest itself


class Secret:
    """Holds the token; everything printed or raised goes through `redact`."""

    def __init__(self, value: str | None):
        self.value = value

    def redact(self, text: str) -> str:
        return text.replace(self.value, "***") if self.value else text

    def __repr__(self) -> str:
        return "Secret(***)"


def resolve_url(endpoint: str, repo: str, tag: str, path: str) -> str:
    return f"{endpoint.rstrip('/')}/{repo}/resolve/{tag}/{path}"


@dataclass(frozen=True)
class LocalFile:
    local: Path
    path_in_repo: str
    sha256: str
    bytes: int
    artifact: str | None  # manifest key, None for everything else


def local_files(manifest_path: Path, manifest: Manifest) -> list[LocalFile]:
    """Every artifact and its bundle, the manifest, its schema and the card, each hashed once.
    `manifest` is the parsed `manifest_path`. Fails when a named file is missing or does not match
    its manifest sha256/size."""
    folder = manifest_path.parent
    out = []
    for name, entry in manifest.artifacts.items():
        pte, bpte = checked_files(folder, name, entry)  # the .bpte for on-device checks travels with its .pte
        # RNE's layout: a folder per backend
        out.append(LocalFile(pte, f"{entry.backend}/{entry.path}", entry.sha256, entry.bytes, name))
        out.append(
            LocalFile(bpte, f"{entry.backend}/{entry.bundle.path}", entry.bundle.sha256, entry.bundle.bytes, None)
        )
    extra = [(manifest_path, MANIFEST_NAME)]
    if (folder / SCHEMA_NAME).is_file():  # the manifest's JSON Schema travels with it
        extra.append((folder / SCHEMA_NAME, SCHEMA_NAME))
    card = folder / "README.md"
    if card.is_file():  # the model card, when one was generated, with the overlays it shows
        extra.append((card, "README.md"))
        extra += [(p, f"overlays/{p.name}") for p in sorted((folder / "overlays").glob("*.png"))]
        if (folder / "profile.png").is_file():  # bench --profile's chart, shown by the card
            extra.append((folder / "profile.png", "profile.png"))
    out += [LocalFile(f, path, sha256_file(f), f.stat().st_size, None) for f, path in extra]
    return out


def _same(f: LocalFile | PlannedFile, remote_id: str | None) -> bool:
    """Does the remote hold this file? LFS files are known by sha256, small (git) ones by blob sha1."""
    from huggingface_hub.utils.sha import git_hash

    if remote_id is None:
        return False
    return remote_id == f.sha256 or (f.bytes < GIT_HASH_MAX_BYTES and remote_id == git_hash(f.local.read_bytes()))


def _retrying(what: str, fn: Callable[[], T], secret: Secret, repo: str) -> T:
    """Retry 429/5xx and dropped connections with exponential backoff; other errors fail at once.
    (huggingface_hub retries its LFS transfers itself, but not the API calls around them.)"""
    import httpx2 as httpx
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

    for attempt in range(RETRIES + 1):
        try:
            return fn()
        except HfHubHTTPError as e:
            status = e.response.status_code if e.response is not None else None
            if status in (401, 403):  # "no access", never "no repo": a private repo the token cannot read
                raise PublishError(
                    f"no access to {repo} (HTTP {status} on {what}): the token is missing, invalid or lacks "
                    "permission for this repo; set HF_TOKEN or run `hf auth login` with a token that can"
                ) from None
            if isinstance(e, RepositoryNotFoundError):
                raise
            if status not in RETRY_STATUS or attempt == RETRIES:
                said = " ".join((e.server_message or "").split())[:300]  # the Hub's own reason, one line
                detail = f"{str(e).splitlines()[0]}" + (f" (server: {said})" if said else "")
                raise PublishError(secret.redact(f"{what} failed: HTTP {status}: {detail}")) from None
            reason = f"HTTP {status}"
        except RuntimeError as e:
            # an LFS transfer that failed after huggingface_hub's own retries arrives wrapped
            # ("Error while uploading '<path>' to the Hub.") with the HTTP error as its cause
            cause = e.__cause__
            if not isinstance(cause, (httpx.HTTPStatusError, HfHubHTTPError)) or cause.response is None:
                raise
            status = cause.response.status_code
            if status in (401, 403):
                raise PublishError(f"no access to {repo} (HTTP {status} on {what}: {e}); check the token") from None
            raise PublishError(secret.redact(f"{what} failed: {e} (HTTP {status})")) from None
        except (httpx.TransportError, ConnectionError) as e:
            if attempt == RETRIES:
                raise PublishError(secret.redact(f"{what} failed: connection error: {e}")) from None
            reason = type(e).__name__
        wait = BACKOFF_S * 2**attempt
        print(f"  {what}: {reason}, retrying in {wait:.1f} s ({attempt + 1}/{RETRIES})", file=sys.stderr, flush=True)
        time.sleep(wait)
    raise AssertionError("unreachable")


class Publisher:
    def __init__(
        self,
        manifest: Path,
        repo: str,
        tag: str,
        endpoint: str | None = None,
        token: str | None = None,
        allow_random_weights: bool = False,
        skip_compat: bool = False,
    ):
        check_repo_and_tag(repo, tag)  # bad input (exit 2), refused before any request
        self.manifest = Path(manifest)
        self.allow_random_weights = allow_random_weights
        self.skip_compat = skip_compat
        self.repo, self.tag = repo, tag
        self.endpoint = (endpoint or os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")
        if token is None:
            from huggingface_hub import get_token  # HF_TOKEN, or the token saved by `hf auth login`

            token = get_token()
        self.secret = Secret(token)
        self.record = read_manifest(self.manifest)  # what push checks and records, read once
        self.files = local_files(self.manifest, self.record)  # checks each file against the manifest

    def _api(self):
        from huggingface_hub import HfApi

        return HfApi(endpoint=self.endpoint, token=self.secret.value or False)

    def remote_state(self) -> tuple[dict[str, str], dict[str, str], dict[str, str], str | None]:
        """(tags -> commit, path -> content id at the tag, at main, main head); empty when no repo."""
        from huggingface_hub.errors import RepositoryNotFoundError

        api = self._api()
        try:
            refs = _retrying("list refs", lambda: api.list_repo_refs(self.repo), self.secret, self.repo)
        except RepositoryNotFoundError:
            return {}, {}, {}, None
        tags = {t.name: t.target_commit for t in refs.tags}
        main = next((b.target_commit for b in refs.branches if b.name == "main"), None)
        paths = [f.path_in_repo for f in self.files]

        def tree(rev: str | None) -> dict[str, str]:
            if rev is None:
                return {}
            infos = _retrying(
                "paths info", lambda: api.get_paths_info(self.repo, paths, revision=rev), self.secret, self.repo
            )
            return {i.path: (i.lfs.sha256 if i.lfs else i.blob_id) for i in infos if hasattr(i, "blob_id")}

        at_main = tree(main)
        at_tag = tree(tags[self.tag]) if self.tag in tags else {}
        return tags, at_tag, at_main, main

    def plan(self, remote: dict[str, str] | None) -> list[PlannedFile]:
        def status(f: LocalFile) -> str:
            if remote is None:
                return "unknown"
            if f.path_in_repo not in remote:
                return "new"
            return "unchanged" if _same(f, remote[f.path_in_repo]) else "changed"

        return [PlannedFile(f.local, f.path_in_repo, f.sha256, f.bytes, status(f), f.artifact) for f in self.files]

    def print_plan(self, plan: list[PlannedFile], note: str = "") -> None:
        print(f"plan: {self.repo} @ {self.tag} ({self.endpoint}){note}")
        from tabulate import tabulate

        rows = [
            (
                p.status,
                p.bytes,
                p.sha256[:12],
                p.path_in_repo,
                resolve_url(self.endpoint, self.repo, self.tag, p.path_in_repo),
            )
            for p in plan
        ]
        print(tabulate(rows, headers=("status", "bytes", "sha256", "path", "url"), tablefmt="plain"))

    def dry_run(self) -> list[PlannedFile]:
        try:
            tags, at_tag, at_main, _ = self.remote_state()
            remote = at_tag if self.tag in tags else at_main
            note = ""
        except ExportError as e:
            remote, note = None, f" — remote state unknown: {self.secret.redact(str(e))}"
        plan = self.plan(remote)
        self.print_plan(plan, note)
        print("dry run: nothing was changed (add --push to publish)")
        return plan

    def push(self, move_tag: bool = False, out_dir: Path | None = None) -> Published:
        """token, then the remote state and plan, the tag check, one commit of every file that
        differs from main (the commit's parent), every file downloaded back from the commit and
        verified, the tag on the verified commit (a moved tag is restored on failure), and
        published.json (the caller generates the constants from it: `export publish`, scripts/release.py)."""
        # 1. token and the output folder: either problem fails before any network write
        if not self.secret.value:
            raise PublishError("--push needs a Hugging Face token: set HF_TOKEN or run `hf auth login`")
        ensure_writable_dir(out_dir or self.manifest.parent, "published.json folder")
        random_weights = self.random_weights()
        unproven = self.unproven()
        self.validate_card()  # before the repo is created: a bad card leaves nothing behind
        api = self._api()
        # 2. what the tag holds (immutability) and what main holds (the tree the commit is built on)
        tags, at_tag, at_main, main = self.remote_state()
        old = tags.get(self.tag)
        plan = self.plan(at_tag if old else at_main)
        self.print_plan(plan)
        changed = [p for p in plan if p.status != "unchanged"]
        # 3. tags are immutable: an existing tag may only be re-published with identical files
        if old and changed and not move_tag:
            raise PublishError(
                f"tag {self.tag} already exists on {self.repo} at commit {old[:12]} with different files "
                f"({', '.join(p.path_in_repo for p in changed)}); tags are immutable: publish a new version tag "
                f"(or pass --move-tag to force it, breaking apps pinned to it)"
            )
        # 4. one commit, on main, of every file main does not already hold as it is here
        if old and not changed:
            commit = old  # the tag already holds these files
            print("no file changed: no commit")
        else:
            commit = self._commit(api, plan, at_main, main)
        # 5. verify what the commit serves, before any tag points at it
        files = [self.verify_download(p, commit) for p in plan]
        # 6. tag the verified commit; a moved tag that cannot be re-created is put back where it was
        if old != commit:
            self._tag(api, commit, old)
        # 7. published.json, and its JSON Schema beside it
        published = Published(
            schema=PUBLISHED_SCHEMA_VERSION,
            repo=self.repo,
            tag=self.tag,
            commit=commit,
            endpoint=self.endpoint,
            published_at=dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
            files=tuple(files),
            random_weights=tuple(random_weights),
            compat_not_proven=tuple(unproven),
            manifest=self.record,
        )
        out = Path(out_dir or self.manifest.parent)
        title = f"rne-export published.json, schema {PUBLISHED_SCHEMA_VERSION}"
        write_with_schema(out / PUBLISHED_NAME, published, out / PUBLISHED_SCHEMA_NAME, title)
        print(f"verified {len(files)} file(s) at {commit[:12]} = {self.tag}; wrote {out / PUBLISHED_NAME}")
        return published

    def _commit(self, api, plan: list[PlannedFile], at_main: dict, main: str | None) -> str:
        """The commit: the one holding every planned file (main itself when it already holds them)."""
        from huggingface_hub import CommitOperationAdd

        upload = [p for p in plan if not _same(p, at_main.get(p.path_in_repo))]
        if not upload:
            print("main already holds every file: no commit")
            return typing.cast(str, main)
        if main is None:  # no repo yet
            _retrying("create repo", lambda: api.create_repo(self.repo, exist_ok=True), self.secret, self.repo)
        ops = [CommitOperationAdd(path_in_repo=p.path_in_repo, path_or_fileobj=str(p.local)) for p in upload]
        info = _retrying(
            "commit",
            lambda: api.create_commit(
                self.repo,
                operations=ops,
                commit_message=f"Publish {self.tag}",
                commit_description="\n".join(f"{p.path_in_repo} sha256:{p.sha256}" for p in upload),
                parent_commit=main,
            ),
            self.secret,
            self.repo,
        )
        print(f"committed {len(upload)} file(s): {info.oid}")
        return info.oid

    def _tag(self, api, commit: str, old: str | None) -> None:
        """The tag: at the verified commit; a moved tag that cannot be re-created is restored."""
        if old:
            print(
                f"WARNING: --move-tag: moving {self.tag} from {old[:12]} to {commit[:12]}; "
                f"apps pinned to {self.tag} will now get different files",
                file=sys.stderr,
                flush=True,
            )
            _retrying("delete tag", lambda: api.delete_tag(self.repo, tag=self.tag), self.secret, self.repo)
        try:
            _retrying(
                "create tag", lambda: api.create_tag(self.repo, tag=self.tag, revision=commit), self.secret, self.repo
            )
        except ExportError as e:
            if old:
                _retrying(
                    "restore tag", lambda: api.create_tag(self.repo, tag=self.tag, revision=old), self.secret, self.repo
                )
                raise PublishError(f"{e}; {self.tag} restored to {old[:12]}") from None
            raise
        print(f"tagged {self.tag} -> {commit}")

    def unproven(self) -> list[str]:
        """Files without a passing `export compat` result for every runtime their releases embed:
        refused, unless --skip-compat, which says loudly what was not proven and records it."""
        from export.rne.runtimes import lines_label, load_runtimes, runtimes_to_prove

        lines = load_runtimes()
        missing = []
        for name, e in self.record.artifacts.items():
            for et, group in runtimes_to_prove(e, lines).items():
                r = (e.compat or {}).get(et)
                if r is None or not r.passed:
                    why = "not checked" if r is None else "not runnable here" if r.loads is None else "failed"
                    missing.append(f"{name} in ExecuTorch {et} (RNE {lines_label(group, lines, e.min_rne)}): {why}")
        from export.checks.coreml_proof import unexecuted_coreml

        for name in unexecuted_coreml(self.record.artifacts):  # Core ML proven only where it runs
            mode = self.record.artifacts[name].parity.mode
            missing.append(f"{name}: Core ML not executed (parity {mode}); run `make verify-coreml` on macOS")
        if missing and not self.skip_compat:
            raise ExportError(
                f"{self.manifest}: not proven to load in every runtime its releases embed: {'; '.join(missing)}; "
                "run `make compat` (python -m export compat) and, for Core ML, `make verify-coreml` on macOS, or "
                "pass --skip-compat to publish unproven"
            )
        for m in missing:
            print(f"WARNING: --skip-compat: not proven: {m}", file=sys.stderr, flush=True)
        return missing

    def random_weights(self) -> list[str]:
        """The artifacts made from seeded random weights: refused unless explicitly allowed (they
        would look like a release and segment noise), and then said loudly and recorded."""
        names = sorted(n for n, e in self.record.artifacts.items() if e.weights.kind == "random")
        if names and not self.allow_random_weights:
            raise ExportError(
                f"{self.manifest}: {', '.join(names)} carry seeded random weights, not a model; export with "
                "--weights default or a checkpoint, or pass --allow-random-weights to publish a test build"
            )
        if names:
            print(f"WARNING: publishing random-weight test files: {', '.join(names)}", file=sys.stderr, flush=True)
        return names

    def validate_card(self) -> None:
        """The model card's front matter, checked by the Hub's own /api/validate-yaml (what
        huggingface_hub asks inside create_commit, after the repo exists), before any write."""
        from huggingface_hub.utils import build_hf_headers, http_backoff

        card = next((f.local for f in self.files if f.path_in_repo == "README.md"), None)
        if card is None:
            return
        url = f"{self.endpoint}/api/validate-yaml"
        body = {"content": card.read_text(encoding="utf8"), "repoType": "model"}
        headers = build_hf_headers(token=self.secret.value)
        r = _retrying(
            "validate card", lambda: http_backoff("POST", url, json=body, headers=headers), self.secret, self.repo
        )
        if r.status_code == 400:
            errors = "; ".join(str(e.get("message")) for e in r.json().get("errors", [])) or "invalid"
            raise ExportError(
                self.secret.redact(f"{card}: the Hub refuses its metadata ({errors}); rewrite it with `make card`")
            )
        if r.status_code != 200:
            raise PublishError(f"validate card failed: HTTP {r.status_code}")

    def verify_download(self, p: PlannedFile, commit: str) -> PublishedFile:
        """Download one file from the commit and check it; returns its record with the tag URL."""
        from huggingface_hub.utils import build_hf_headers, hf_raise_for_status, http_stream_backoff

        url = resolve_url(self.endpoint, self.repo, commit, p.path_in_repo)

        def fetch() -> tuple[str, int]:
            digest, size = hashlib.sha256(), 0
            headers = build_hf_headers(token=self.secret.value)
            with http_stream_backoff("GET", url, headers=headers, follow_redirects=True) as r:
                hf_raise_for_status(r)
                for chunk in r.iter_bytes():
                    digest.update(chunk)
                    size += len(chunk)
            return digest.hexdigest(), size

        sha, size = _retrying(f"download {p.path_in_repo}", fetch, self.secret, self.repo)
        if sha != p.sha256 or size != p.bytes:
            raise PublishError(
                f"verification failed: {url} serves {size} bytes sha256 {sha[:12]}…, "
                f"manifest says {p.bytes} bytes sha256 {p.sha256[:12]}…; no tag was moved or created, nothing was written locally"
            )
        tag_url = resolve_url(self.endpoint, self.repo, self.tag, p.path_in_repo)
        return PublishedFile(p.artifact, p.path_in_repo, tag_url, sha, size)


def run_publish(
    manifest: Path,
    repo: str,
    tag: str,
    endpoint: str | None,
    push: bool,
    move_tag: bool,
    allow_random_weights: bool = False,
    skip_compat: bool = False,
) -> None:
    """`rne-export publish`: the plan (dry run), or with `push` the publish and the constants
    modules beside published.json. Every message that reaches the user passes the token redactor."""
    publisher = Publisher(
        manifest, repo, tag, endpoint=endpoint, allow_random_weights=allow_random_weights, skip_compat=skip_compat
    )
    try:
        if push:
            publisher.push(move_tag=move_tag)
            from export.release.codegen import write_modules

            folder = publisher.manifest.parent
            print("wrote " + ", ".join(str(w) for w in write_modules(folder / PUBLISHED_NAME, folder)))
        else:
            publisher.dry_run()
    except ExportError as e:
        raise type(e)(publisher.secret.redact(str(e))) from None


def command(args) -> int:
    """`rne-export publish`."""
    if args.xet:  # before huggingface_hub is imported: it reads the switch once (hubnames defaults it to LFS)
        os.environ["HF_HUB_DISABLE_XET"] = "0"
    run_publish(
        args.manifest, args.repo, args.tag, args.endpoint, args.push, args.move_tag,
        allow_random_weights=args.allow_random_weights, skip_compat=args.skip_compat,
    )  # fmt: skip
    return 0
