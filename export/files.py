"""Atomic file writes and hashing (no torch: shared with publish/codegen).

Every output is written to a temp file in the destination folder and renamed over the target,
so an interrupted or failed run leaves the previous file intact.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .errors import ExportError

TMP_PREFIX = ".tmp-"


def sha256_file(path: str | Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


@contextlib.contextmanager
def staged(target: str | Path) -> Iterator[Path]:
    """Yield a temp path beside `target`; on normal exit it is renamed over `target`, on any
    exception (KeyboardInterrupt included) it is deleted and `target` is untouched."""
    target = Path(target)
    fd, tmp = tempfile.mkstemp(prefix=f"{TMP_PREFIX}{target.name}.", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o644)  # mkstemp makes 0600; artifacts are meant to be shared
        os.replace(tmp_path, target)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def write_bytes_atomic(target: str | Path, data: bytes) -> None:
    with staged(target) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


def ensure_writable_dir(folder: str | Path, flag: str = "--out") -> Path:
    """Fail early (before any expensive work) when `folder` cannot take files."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=TMP_PREFIX, dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise ExportError(f"{flag} {folder}: cannot write there ({e.strerror}); pass a writable folder") from None
    return folder
