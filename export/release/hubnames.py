"""What a Hugging Face repo id and a release tag may be: checked before any request (publish) and
when reading a published record back (codegen); which URLs may carry the token; and the upload
path. No torch, no network. Imported before huggingface_hub by every module that talks to the Hub."""

from __future__ import annotations

import os
import re
from urllib.parse import urlsplit

from export.errors import ExportError

# why: the tests prove publishing over the LFS protocol against a local Hub-protocol server; with
# hf_xet installed (it comes with huggingface_hub) a real push would go through Xet instead, a path
# no test here exercises. The Hub accepts LFS uploads on Xet-backed repos, so LFS is the default;
# `publish --xet` (or HF_HUB_DISABLE_XET=0) opts in, untested here. huggingface_hub reads the switch
# once, at its first import: this module is imported before it.
os.environ.setdefault("HF_HUB_DISABLE_XET", "1")
LOOPBACK = ("127.0.0.1", "localhost", "::1")

# fullmatch everywhere: `$` alone accepts a trailing newline
TAG_RE = re.compile(r"v\d+\.\d+\.\d+(?:[-+][0-9A-Za-z.-]+)?")
REPO_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*")


def check_repo_and_tag(repo: str, tag: str, repo_label: str = "--repo", tag_label: str = "--tag") -> None:
    """Bad input (exit 2), with the Hub's own repo-id rules on top of OWNER/NAME."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    if not REPO_RE.fullmatch(repo):
        raise ExportError(f"{repo_label} {repo!r}: expected OWNER/NAME")
    try:
        validate_repo_id(repo)  # no `--` or `..`, no leading/trailing `-`/`.`
    except HFValidationError as e:
        raise ExportError(f"{repo_label} {repo!r}: {' '.join(str(e).split())}") from None
    if not TAG_RE.fullmatch(tag):
        raise ExportError(f"{tag_label} {tag!r}: expected a version tag like v1.2.3")


def _origin(url: str) -> tuple[str, str, int]:
    u = urlsplit(url)
    return u.scheme, (u.hostname or "").lower(), u.port or (443 if u.scheme == "https" else 80)


def sends_token(url: str, endpoint: str) -> bool:
    """The token goes only to the configured Hub endpoint (same scheme, host and port), over https,
    or over http to a loopback endpoint (a local test Hub). Everything else is asked anonymously.
    (httpx drops the header on a redirect to another origin.)"""
    scheme, host, port = _origin(url)
    return (scheme, host, port) == _origin(endpoint) and (scheme == "https" or host in LOOPBACK)
