"""What a Hugging Face repo id and a release tag may be: checked before any request (publish) and
when reading a published record back (codegen). No torch, no network."""

from __future__ import annotations

import re

from .errors import ExportError

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
