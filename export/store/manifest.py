"""manifest.json: what each artifact in the output folder is — the contract between export and
publish, codegen, card, bench and run. This module owns it: the typed records below, reading
(validated, old schemas refused with a "re-export" message), writing, and the JSON Schema that is
generated from the records and shipped beside it (manifest.schema.json). No torch import.

One entry per artifact file name; an entry is written only after its file passed every gate.
The manifest itself is rewritten atomically (temp + rename) under a lock file, so concurrent or
interrupted exports never leave it half-written, and it is the commit point of its files: a file is
found by the sha256 its entry records, at its name or, until the export moves it there, at its
pending name (`commit_entry`). So at every instant the folder holds what its manifest describes.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydantic

from export import records
from export.errors import ExportError
from export.files import PENDING_PREFIX, pending_path, sha256_file, stale_temp_files
from export.records import Entry, Manifest, first_error, from_json_data, json_data, write_with_schema


def find_file(folder: Path, fname: str, sha256: str, size: int) -> Path | None:
    """The file with this content: at its name, or at its pending name (an export that committed
    its manifest and was stopped before moving the file into place); None when neither matches."""
    for f in (folder / fname, pending_path(folder / fname, sha256)):
        if f.is_file() and f.stat().st_size == size and sha256_file(f) == sha256:
            return f
    return None


def checked_files(folder: Path, name: str, entry: Entry) -> tuple[Path, Path]:
    """The .pte and .bpte an entry names, each checked against its recorded size and sha256 before
    anyone uses it: a file changed since export is refused, not benchmarked, described or shipped."""
    out = []
    for fname, sha, size in (
        (entry.path, entry.sha256, entry.bytes),
        (entry.bundle.path, entry.bundle.sha256, entry.bundle.bytes),
    ):
        f = find_file(folder, fname, sha, size)
        if f is None and not (folder / fname).is_file():
            raise ExportError(f"{folder / MANIFEST_NAME}: {name}: file {folder / fname} is missing; re-run the export")
        if f is None:
            raise ExportError(
                f"{folder / MANIFEST_NAME}: {name}: {folder / fname} does not match its manifest sha256/size; "
                "re-run the export"
            )
        out.append(f)
    return out[0], out[1]


def checked_entry(entry: Entry, name: str) -> Entry:
    """`entry` as its JSON Schema reads it: a stage that built a wrong record is this tool's bug, and
    it stops here, before anything is written."""
    try:
        return from_json_data(Entry, json_data(entry))  # as strictly as readers read it: no coercion
    except pydantic.ValidationError as e:
        raise ExportError(
            f"{name} (a bug in this tool: its record does not match the manifest schema): "
            f"not a Entry of manifest schema {SCHEMA_VERSION}: {first_error(e)}"
        ) from None


def json_schema() -> dict[str, Any]:
    return records.json_schema(Manifest, SCHEMA_TITLE)


MANIFEST_NAME = "manifest.json"
SCHEMA_NAME = "manifest.schema.json"
SCHEMA_VERSION = 4
SCHEMA_TITLE = f"rne-export manifest, schema {SCHEMA_VERSION}"


class StaleManifest(ExportError):
    """A manifest from another schema: readers stop; an export starts it afresh."""


def _strict(data: dict[str, Any]) -> Manifest:
    """`"bytes": "12"` or `"atol": "1e-5"` is a wrong manifest, as its JSON Schema says."""
    return from_json_data(Manifest, data)


def read_manifest(path: str | Path) -> Manifest:
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ExportError(
            f"manifest not found: {path}; run `make export` (or `python -m export build`) first"
        ) from None
    except IsADirectoryError:
        raise ExportError(f"{path} is a folder; pass the manifest.json file in it") from None
    except json.JSONDecodeError as e:
        raise StaleManifest(f"manifest {path} is not valid JSON ({e}); re-run the export to rewrite it") from None
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) else "not text"
        raise StaleManifest(
            f"manifest {path}: cannot read it ({reason}); re-export to rewrite it (make export)"
        ) from None
    if not isinstance(data, dict):
        raise StaleManifest(
            f"manifest {path}: a JSON {type(data).__name__}, not an object with `schema` and `artifacts`; "
            "re-export to rewrite it (make export)"
        )
    if data.get("schema") != SCHEMA_VERSION:
        raise StaleManifest(
            f"manifest {path}: schema {data.get('schema')}, this tool reads schema {SCHEMA_VERSION}; "
            "re-export to rewrite it (make export)"
        )
    if not isinstance(data.get("artifacts"), dict):
        raise StaleManifest(
            f"manifest {path}: schema {SCHEMA_VERSION} but no `artifacts` object; re-export to rewrite it (make export)"
        )
    try:
        return _strict(data)
    except pydantic.ValidationError as e:
        raise StaleManifest(
            f"manifest {path}: artifacts.{first_error(e).removeprefix('artifacts.')}; "
            "it was not written by this tool's schema "
            f"{SCHEMA_VERSION}: re-export to rewrite it (make export)"
        ) from None


def manifest_from_dict(data: Any, where: str) -> Manifest:
    """A manifest embedded elsewhere (the publish record), checked like a file."""
    if not isinstance(data, dict) or data.get("schema") != SCHEMA_VERSION:
        found = data.get("schema") if isinstance(data, dict) else None
        raise ExportError(
            f"{where}: manifest schema {found}, this tool reads schema {SCHEMA_VERSION}; re-export and re-publish"
        )
    try:
        return _strict(data)
    except pydantic.ValidationError as e:
        raise ExportError(f"{where}: manifest {first_error(e)}; re-export and re-publish") from None


def current_entries(path: Path) -> dict[str, Entry]:
    """What an export builds on: the manifest's entries, or none when it is missing or stale (its
    entries cannot be trusted, so their variants are rebuilt and the manifest starts afresh)."""
    if not path.exists():
        return {}
    try:
        return read_manifest(path).artifacts
    except StaleManifest:  # said once, by `set_aside_undescribed` at the start of a build
        return {}


def set_aside_undescribed(folder: Path, names: list[str]) -> Path | None:
    """A build over a damaged manifest (unreadable, another schema) starts it afresh: the files it
    described can no longer be checked, so this model's .pte/.bpte (`names`) are moved into
    `unverified-<UTC time>/` beside it (nothing deleted, nothing left undescribed), said once."""
    path = folder / MANIFEST_NAME
    if not path.is_file():
        return None
    try:
        read_manifest(path)
        return None
    except StaleManifest as e:
        problem = str(e)
    files = [folder / n for n in names if (folder / n).is_file()]
    aside = None
    if files:
        aside = folder / f"unverified-{dt.datetime.now(dt.UTC).strftime('%Y%m%dT%H%M%SZ')}"
        aside.mkdir(exist_ok=True)
        for f in files:
            os.replace(f, aside / f.name)
    moved = f"; moved {len(files)} file(s) it described into {aside.name}/" if aside else ""
    print(f"note: {problem}; starting it afresh{moved}", file=sys.stderr, flush=True)
    return aside


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    with open(folder / f".{MANIFEST_NAME}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def write_entry(folder: str | Path, name: str, entry: Entry) -> Path:
    """Add or replace one artifact's entry; other entries are kept as they are."""
    folder = Path(folder)
    with _locked(folder):
        return _write_manifest(folder, name, entry)


def _write_manifest(folder: Path, name: str, entry: Entry) -> Path:
    """(Under the lock.) The JSON Schema first, so a consumer can validate the manifest without this
    tool, then the manifest: its rename is the one instant the folder changes what it describes."""
    path = folder / MANIFEST_NAME
    arts = dict(current_entries(path))
    arts[name] = checked_entry(entry, name)
    manifest = Manifest(SCHEMA_VERSION, dict(sorted(arts.items())))
    write_with_schema(path, manifest, folder / SCHEMA_NAME, SCHEMA_TITLE)
    return path


def commit_entry(folder: Path, name: str, finished: dict[str, Path], entry: Entry) -> Entry:
    """Put finished, verified files (final name -> temp file) in place with the manifest as the
    commit point, under the folder's lock; `entry` describes them (made from the temp files):
    1. each temp file is renamed to its pending name, which carries the sha256 `entry` records
    2. the manifest is rewritten with `entry`: from this rename on, readers find the new files by
       their recorded sha256
    3. each pending file is renamed over its final name.
    Killed before 2: the old manifest still describes the old, untouched files; the pending ones are
    strays that `settle` deletes. Killed after 2: the files are found at their pending names, and
    `settle` moves them into place at the next build."""
    with _locked(folder):
        parked: dict[str, Path] = {}
        try:
            recorded = {entry.path: entry.sha256, entry.bundle.path: entry.bundle.sha256}  # hashed once, by the stages
            for fname, tmp in finished.items():  # 1.
                parked[fname] = pending_path(folder / fname, recorded[fname])
                os.replace(tmp, parked[fname])
            _write_manifest(folder, name, entry)  # 2. the commit point
        except BaseException:
            for p in parked.values():
                p.unlink(missing_ok=True)
            raise
        for fname, p in parked.items():  # 3.
            os.replace(p, folder / fname)
    return entry


def settle(folder: Path) -> None:
    """Finish what a stopped export committed (pending files its manifest describes go to their
    names); delete pending files no manifest entry describes (an export stopped before its commit)
    and temp files of writers that no longer run. Under the lock: a running export holds it for as
    long as its files are pending."""
    if not any(folder.glob(f"{PENDING_PREFIX}*")) and not stale_temp_files(folder):
        return  # nothing to finish or delete (and no lock file made in a folder nothing else touched)
    with _locked(folder):
        wanted: dict[Path, Path] = {}
        for e in current_entries(folder / MANIFEST_NAME).values():
            for fname, sha, size in ((e.path, e.sha256, e.bytes), (e.bundle.path, e.bundle.sha256, e.bundle.bytes)):
                found = find_file(folder, fname, sha, size)
                if found is not None:
                    wanted[found] = folder / fname
        for p in sorted(folder.glob(f"{PENDING_PREFIX}*")):
            if p in wanted:
                print(
                    f"note: finishing an interrupted export: {p.name} -> {wanted[p].name}", file=sys.stderr, flush=True
                )
                os.replace(p, wanted[p])
            else:
                p.unlink()
        for p in stale_temp_files(folder):  # half-written files of a killed export
            p.unlink(missing_ok=True)
