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

from export.errors import ExportError

TMP_PREFIX = ".tmp-"
# A finished file waits under this name, which carries its sha256, from the moment it is complete
# until the manifest that describes it has been written (see manifest.commit_entry).
PENDING_PREFIX = ".pending-"


def _tmp_prefix(target: Path) -> str:
    # the writer's pid in the name: a temp file whose writer is gone (killed) is recognisably stale
    return f"{TMP_PREFIX}{os.getpid()}-{target.name}."


def stale_temp_files(folder: Path) -> list[Path]:
    """Temp files in `folder` left by a writer that no longer runs (a killed export)."""
    out = []
    for p in folder.glob(f"{TMP_PREFIX}*"):
        pid = p.name[len(TMP_PREFIX) :].split("-", 1)[0]
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)  # signal 0: only asks whether the process exists
        except ProcessLookupError:
            out.append(p)
        except PermissionError:  # it exists, as another user's process
            pass
    return sorted(out)


def sha256_file(path: str | Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


@contextlib.contextmanager
def scratch(target: str | Path) -> Iterator[Path]:
    """Yield a temp path beside `target` for a file still being made and checked; on any exception
    (KeyboardInterrupt included) it is deleted. On success it stays: the caller moves it."""
    target = Path(target)
    fd, tmp = tempfile.mkstemp(prefix=_tmp_prefix(target), dir=target.parent)
    os.fchmod(fd, 0o644)  # mkstemp makes 0600; artifacts are meant to be shared
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def staged(target: str | Path) -> Iterator[Path]:
    """Yield a temp path beside `target`; on normal exit it is renamed over `target`, on any
    exception it is deleted and `target` is untouched."""
    with scratch(target) as tmp:
        yield tmp
        os.replace(tmp, target)


def pending_path(target: str | Path, sha256: str) -> Path:
    """Where a finished file with this content waits to become `target`."""
    target = Path(target)
    return target.with_name(f"{PENDING_PREFIX}{sha256[:16]}-{target.name}")


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
        fd, probe = tempfile.mkstemp(prefix=_tmp_prefix(folder / "probe"), dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise ExportError(f"{flag} {folder}: cannot write there ({e.strerror}); pass a writable folder") from None
    return folder


def existing_file(path: str | Path, what: str, fix: str = "") -> Path:
    """`path` as a readable regular file, or one error naming `what` and why: no such file, a
    directory, unreadable. Checked before any heavy import, so a bad argument fails at once."""
    p = Path(path)
    tail = f"; {fix}" if fix else ""
    if p.is_dir():
        raise ExportError(f"{what} {p}: is a directory, not a file{tail}")
    if not p.is_file():
        raise ExportError(f"{what} {p}: no such file{tail}")
    if not os.access(p, os.R_OK):
        raise ExportError(f"{what} {p}: not readable (permissions){tail}")
    return p


def existing_path(path: str | Path, what: str, fix: str = "") -> Path:
    """`path` as an existing file or folder (a save_pretrained folder is weights too), or one error."""
    p = Path(path)
    if p.is_dir():
        return p
    return existing_file(p, what, fix)


def new_file(path: str | Path, flag: str, suffixes: tuple[str, ...] = ()) -> Path:
    """An output file path: its folder takes files, it is not a directory, and its name says the
    format that will be written (`suffixes`)."""
    p = Path(path)
    if p.is_dir():
        raise ExportError(f"{flag} {p}: is a directory; give a file name, e.g. {p / ('out' + (suffixes or ('',))[0])}")
    if suffixes and p.suffix.lower() not in suffixes:
        raise ExportError(
            f"{flag} {p}: this writes {'/'.join(s.lstrip('.').upper() for s in suffixes)}; name it {p.with_suffix(suffixes[0]).name}"
        )
    ensure_writable_dir(p.parent, flag)
    return p
