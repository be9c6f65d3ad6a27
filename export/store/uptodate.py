"""Is a variant up to date? The cache key, and an answer for a whole request without torch.

A variant is up to date when its manifest entry was made from the same inputs (`cache_key`: config,
weights identity, tool versions, this tool's code, calibration folder, platform) and its files are
intact (`current`, the one rule). `up_to_date` answers it per variant in `build`, after resolving the
weights (which imports torch and torchvision and may hash a checkpoint, ~5 s), hashing the files.
`fresh_entries` answers it for a whole request from
what the last build left beside its manifest (INPUTS_NAME: how each `--weights` value resolved,
and each file's size and mtime), importing neither: a re-export with nothing to do takes about a
second. Anything it cannot vouch for (a new checkpoint, a touched file, an interrupted export)
answers None, and the full build decides, hashing as before.
"""

from __future__ import annotations

import hashlib
import json
import os
from importlib import metadata
from pathlib import Path

from export.config import ModelConfig, Variant
from export.errors import ExportError
from export.files import PENDING_PREFIX, TMP_PREFIX, sha256_file, write_bytes_atomic
from export.provenance import platform_id, tool_versions
from export.records import Entry
from export.store.manifest import MANIFEST_NAME, current_entries, find_file

INPUTS_NAME = ".build-inputs.json"  # beside the manifest; not published (publish sends listed files)


def tool_source_hash() -> str:
    """This tool's own code: a change to it re-exports, as a change of config or weights does."""
    h = hashlib.sha256()
    here = Path(__file__).resolve().parent.parent  # the export package, every subpackage
    for p in sorted(p for p in here.rglob("*.py") if "data" not in p.relative_to(here).parts):
        h.update(str(p.relative_to(here)).encode() + b"\0" + p.read_bytes())
    return h.hexdigest()


def calibration_hash(cfg: ModelConfig) -> str | None:
    """A calibration folder's contents (names and bytes), not just its path: new photos re-export."""
    cal = cfg.calibration
    if cal is None or not cal.folder or not Path(cal.folder).is_dir():
        return None
    h = hashlib.sha256()
    for p in sorted(Path(cal.folder).iterdir()):
        if p.is_file():
            h.update(p.name.encode() + b"\0" + sha256_file(p).encode())
    return h.hexdigest()


def cache_key(cfg: ModelConfig, variant: Variant, identity: str) -> str:
    """Everything that changes a variant's bytes or verdict: config, weights, tool versions (incl.
    torchao, scikit-image's photos, OpenCV's resize), this tool's code, calibration folder contents
    and the platform (an `emulated` Core ML entry made on Linux executes on macOS)."""
    data = [
        cfg.variant_hash(variant),
        identity,
        tool_versions(),
        tool_source_hash(),
        calibration_hash(cfg) if variant.precision == "int8" else None,
        platform_id(),
    ]
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def random_identity(cfg: ModelConfig) -> str:
    """Seeded init; with `model.random_residual_gain`, ResNet residual branches scaled down."""
    gain = cfg.model.random_residual_gain
    return f"random(seed={cfg.model.random_seed}" + (f", residual_gain={gain:g})" if gain is not None else ")")


def weights_memo(cfg: ModelConfig, weights: str) -> str | None:
    """What a `--weights` value's identity depends on, cheap to read: the identity is reused while
    it is unchanged (a checkpoint: its path, size and mtime; `default`: the enum member and the
    torchvision that names its file)."""
    if weights == "random" or cfg.model.source != "torchvision":
        return None  # computed from the config directly; other sources: by their own full check
    if weights == "default":
        parts = ["default", cfg.model.builder, cfg.model.weights, metadata.version("torchvision")]
        return json.dumps(parts + [os.environ.get("TORCH_HOME", "")])
    try:
        st = Path(weights).resolve().stat()
    except OSError:
        return None
    return json.dumps(["path", str(Path(weights).resolve()), st.st_size, st.st_mtime_ns])


def record(out: Path, cfg: ModelConfig, weights: str, identity: str, checkpoint: Path | None) -> None:
    """After a build of `out`: how `weights` resolved, and every file's size and mtime by name."""
    inputs = _read(out) or {"weights": {}, "files": {}}
    memo = weights_memo(cfg, weights)
    if memo is not None:
        inputs["weights"][memo] = {"identity": identity, "checkpoint": str(checkpoint) if checkpoint else None}
    inputs["files"] = {}
    for entry in current_entries(out / MANIFEST_NAME).values():
        for name, sha, _ in _files_of(entry):
            st = (out / name).stat()
            inputs["files"][name] = [st.st_size, st.st_mtime_ns, sha]
    write_bytes_atomic(out / INPUTS_NAME, (json.dumps(inputs, indent=1, sort_keys=True) + "\n").encode())


def _read(out: Path) -> dict | None:
    try:
        data = json.loads((out / INPUTS_NAME).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and {"weights", "files"} <= data.keys() else None


def current(entry: Entry | None, key: str) -> bool:
    """The one rule: an entry made from the same inputs (its files are checked by the callers)."""
    return entry is not None and entry.cache_key == key


def up_to_date(out: Path, name: str, key: str) -> Entry | None:
    """The manifest entry when it is current and its files are intact (hashed)."""
    entry = current_entries(out / MANIFEST_NAME).get(name)
    if entry is None or not current(entry, key):
        return None
    if any(find_file(out, fname, sha, size) is None for fname, sha, size in _files_of(entry)):
        return None
    return entry


def fresh_entries(out: Path, cfg: ModelConfig, variants: list[Variant], weights: str) -> dict[str, Entry] | None:
    """{artifact: manifest entry} when every variant is up to date by what the last build recorded
    (see module doc); None when that cannot be vouched for without the full check."""
    inputs = _read(out)
    if cfg.model.source != "torchvision":  # a builder file or a folder's weights: the full check reads them
        return None
    if inputs is None or any(p.name.startswith((TMP_PREFIX, PENDING_PREFIX)) for p in out.iterdir()):
        return None  # nothing recorded, or an export was interrupted here: settle it first
    if weights == "random":
        identity = random_identity(cfg)
    else:
        memo = inputs["weights"].get(weights_memo(cfg, weights) or "")
        if not memo or (memo["checkpoint"] and not Path(memo["checkpoint"]).is_file()):
            return None
        identity = memo["identity"]
    try:
        listed = current_entries(out / MANIFEST_NAME)
    except ExportError:  # the full build says what is wrong with it
        return None
    fresh = {}
    for v in variants:
        name = cfg.artifact_name(v)
        entry = listed.get(name)
        if entry is None or not current(entry, cache_key(cfg, v, identity)):
            return None
        for fname, sha, _ in _files_of(entry):
            try:
                st = (out / fname).stat()
            except OSError:
                return None
            if inputs["files"].get(fname) != [st.st_size, st.st_mtime_ns, sha]:
                return None  # touched since the build: the full check hashes it
        fresh[name] = entry
    return fresh


def _files_of(entry: Entry) -> tuple[tuple[str, str, int], tuple[str, str, int]]:
    """(file name, sha256, bytes) of an artifact and of its bundle."""
    return (entry.path, entry.sha256, entry.bytes), (entry.bundle.path, entry.bundle.sha256, entry.bundle.bytes)
