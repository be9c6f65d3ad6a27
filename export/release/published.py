"""published.json: what `publish --push` put on the Hub, verified by downloading it back, and the
manifest it came from. `publish` writes it; `codegen` reads it (and only it) to write the URL
constants."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from export.records import STRICT, Manifest

PUBLISHED_SCHEMA_VERSION: Literal[1] = 1
PUBLISHED_NAME, PUBLISHED_SCHEMA_NAME = "published.json", "published.schema.json"


@dataclass(frozen=True)
class PublishedFile:
    __pydantic_config__ = STRICT
    artifact: str | None  # the manifest's name of an artifact; None: a file beside them (bundle, card, …)
    path_in_repo: str
    url: str  # at the tag
    sha256: str  # as downloaded back from the commit
    bytes: int


@dataclass(frozen=True)
class Published:
    __pydantic_config__ = STRICT
    schema: Literal[1]
    repo: str
    tag: str
    commit: str
    endpoint: str
    published_at: str
    files: tuple[PublishedFile, ...]
    random_weights: tuple[str, ...]  # test files, published with --allow-random-weights
    compat_not_proven: tuple[str, ...]  # published with --skip-compat
    manifest: Manifest
