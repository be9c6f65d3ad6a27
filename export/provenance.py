"""Where a file came from: the tool versions, platform and checkout that made it (recorded in each
manifest entry, and part of the up-to-date key)."""

from __future__ import annotations

import subprocess
from importlib import metadata
from pathlib import Path

# Everything whose version can change a file's bytes or its verdict: torchao quantizes, scikit-image
# ships the photos, OpenCV decodes and resizes them as the app does.
TOOL_PACKAGES = (
    "torch",
    "torchvision",
    "executorch",
    "coremltools",
    "torchao",
    "scikit-image",
    "opencv-python-headless",
)


def version_of(dist: str) -> str:
    """An installed distribution's version from its metadata (no import), or "not installed"."""
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def tool_versions() -> dict[str, str]:
    import platform

    return {"python": platform.python_version(), **{pkg: version_of(pkg) for pkg in TOOL_PACKAGES}}


# what `--version` names: this tool and the toolchain whose versions decide the bytes (pyproject pins them)
TOOLCHAIN = ("torch", "torchvision", "executorch", "torchao", "coremltools")


def version_line() -> str:
    """`rne-export --version`: this tool's version and the installed toolchain's."""
    return f"rne-export {version_of('rne-export')} (" + ", ".join(f"{d} {version_of(d)}" for d in TOOLCHAIN) + ")"


def platform_id() -> str:
    """OS and CPU: which backends can execute here (Core ML on macOS only) depends on it."""
    import platform

    return f"{platform.system()}-{platform.machine()}"


def git_commit(repo: Path | None = None) -> str | None:
    """HEAD of the checkout this tool runs from, with '+dirty' when it has uncommitted changes."""
    where = repo or Path(__file__).resolve().parent.parent
    if not (where / ".git").exists():  # an installed tool: site-packages may sit inside someone else's repo
        return None
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=where,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("+dirty" if dirty else "")
