"""manifest.json: what each artifact in the output folder is. No torch import (publish reads it).

One entry per artifact file name; an entry is written only after its file passed every gate.
The manifest itself is rewritten atomically (temp + rename) under a lock file, so concurrent or
interrupted exports never leave it half-written.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator

from .errors import ExportError
from .files import write_bytes_atomic

MANIFEST_NAME = "manifest.json"
SCHEMA_VERSION = 2  # 2: relative parity metrics, `not executed` parity, platform
# Everything whose version can change a file's bytes or its verdict: torchao quantizes, scikit-image
# ships the photos, OpenCV decodes and resizes them as the app does.
TOOL_PACKAGES = ("torch", "torchvision", "executorch", "coremltools", "torchao", "scikit-image",
                 "opencv-python-headless")


def tool_versions() -> dict[str, str]:
    import platform

    out = {"python": platform.python_version()}
    for pkg in TOOL_PACKAGES:
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def platform_id() -> str:
    """OS and CPU: which backends can execute here (Core ML on macOS only) depends on it."""
    import platform

    return f"{platform.system()}-{platform.machine()}"


def git_commit(repo: Path | None = None) -> str | None:
    """HEAD of the checkout this tool runs from, with '+dirty' when it has uncommitted changes."""
    where = repo or Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=where,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("+dirty" if dirty else "")


def read_manifest(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ExportError(f"manifest not found: {path}; run `make export` (or `python -m export build`) first") from None
    except json.JSONDecodeError as e:
        raise ExportError(f"manifest {path} is not valid JSON ({e}); re-run the export to rewrite it") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA_VERSION or not isinstance(data.get("artifacts"), dict):
        found = data.get("schema") if isinstance(data, dict) else None
        raise ExportError(f"manifest {path}: schema {found}, this tool reads schema {SCHEMA_VERSION}; "
                          "re-export to rewrite it (make export)")
    return data


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    with open(folder / f".{MANIFEST_NAME}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def write_entry(folder: str | Path, name: str, entry: dict[str, Any]) -> Path:
    """Add or replace one artifact's entry; other entries are kept as they are."""
    folder = Path(folder)
    path = folder / MANIFEST_NAME
    with _locked(folder):
        data = read_manifest(path) if path.exists() else {"schema": SCHEMA_VERSION, "artifacts": {}}
        data["artifacts"][name] = entry
        data["artifacts"] = dict(sorted(data["artifacts"].items()))
        write_bytes_atomic(path, (json.dumps(data, indent=2, sort_keys=False) + "\n").encode())
    return path
