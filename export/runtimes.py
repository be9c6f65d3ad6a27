"""React Native ExecuTorch release lines (configs/runtimes/rne_releases.yaml): the ExecuTorch runtime each embeds,
the segmentation hook it offers and what that hook feeds a model. Codegen and the card read it to
say which constant and which file fit which app release. No torch.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from .config import CONTRACTS, ConfigError, _build, _fail
from .manifest import Entry

RUNTIMES_PATH = Path(__file__).resolve().parent.parent / "configs" / "runtimes" / "rne_releases.yaml"
# What each hook's native code does to a decoded RGB photo before the model sees it.
HOOK_FEEDS = {"useImageSegmentation": "pixel/255", "useSemanticSegmentation": "imagenet"}
VERSION_RE = re.compile(r"^\d+\.\d+\.\d+$")


@dataclass(frozen=True)
class Releases:
    first: str
    last: str


@dataclass(frozen=True)
class RneLine:
    releases: Releases
    executorch: str  # the ExecuTorch runtime these releases embed
    torch: str  # the torch that runtime's Python wheel is built against
    hook: str  # useImageSegmentation | useSemanticSegmentation
    feeds: str  # pixel/255 (RGB /255 only) | imagenet (/255, then ImageNet mean/std)
    contract: str  # the contract of the files this toolchain ships for these releases
    typecheck: str | None = None  # the npm release the generated TypeScript is checked against

    @property
    def label(self) -> str:
        return releases_label([self])

    def takes(self, normalize_in_graph: bool) -> bool:
        """Would this release feed a file with this contract what the file expects? pixel/255 needs
        the mean/std inside the graph; a runtime that normalizes needs a graph that does not."""
        return normalize_in_graph == (self.feeds == "pixel/255")


@dataclass(frozen=True)
class RuntimeTable:
    lines: tuple[RneLine, ...]


def version_key(v: str) -> tuple[int, ...]:
    return tuple(int(p) for p in v.split("."))


def load_runtimes(path: str | Path = RUNTIMES_PATH) -> tuple[RneLine, ...]:
    source = Path(path)
    try:
        data = yaml.safe_load(source.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"{source}: cannot read it ({getattr(e, 'strerror', None) or 'not YAML'})") from None
    table: RuntimeTable = _build(RuntimeTable, data, source, "")
    if not table.lines:
        _fail(source, "lines", "at least one release line is required")
    previous = None
    for i, line in enumerate(table.lines):
        key = f"lines[{i}]"
        for field, v in (("releases.first", line.releases.first), ("releases.last", line.releases.last)):
            if not VERSION_RE.match(v):
                _fail(source, f"{key}.{field}", f"expected a version like 0.5.15, got {v!r}")
        if line.hook not in HOOK_FEEDS:
            _fail(source, f"{key}.hook", f"unknown hook {line.hook!r} (valid: {', '.join(HOOK_FEEDS)})")
        CONTRACTS.get(line.contract, where=f"{source}: {key}.contract")
        if line.feeds != HOOK_FEEDS[line.hook]:
            _fail(source, f"{key}.feeds", f"{line.hook} feeds {HOOK_FEEDS[line.hook]}, not {line.feeds!r}")
        if version_key(line.releases.first) > version_key(line.releases.last):
            _fail(source, f"{key}.releases", f"first {line.releases.first} is after last {line.releases.last}")
        if previous and version_key(line.releases.first) <= version_key(previous.releases.last):
            _fail(source, f"{key}.releases", f"overlaps or precedes {previous.label}; list lines in release order")
        previous = line
    return table.lines


def contract_lines(entry: Entry, lines: tuple[RneLine, ...]) -> list[RneLine]:
    """The release lines whose hook feeds this file's contract, whatever its `min_rne`."""
    return [ln for ln in lines if ln.contract == entry.contract.name]


def claimed_lines(entry: Entry, lines: tuple[RneLine, ...]) -> list[RneLine]:
    """The release lines whose hook feeds this file's contract, from its `min_rne` on."""
    low = version_key(entry.min_rne) if entry.min_rne else (0,)
    return [ln for ln in contract_lines(entry, lines) if version_key(ln.releases.last) >= low]


def releases_label(lines: list[RneLine] | tuple[RneLine, ...], min_rne: str | None = None) -> str:
    """ "0.5.7 – 0.7.3": consecutive lines' releases, from `min_rne` on ("" when none is left)."""
    low = version_key(min_rne) if min_rne else (0,)
    kept = [ln for ln in lines if version_key(ln.releases.last) >= low]
    if not kept:
        return ""
    first = max(kept[0].releases.first, min_rne or "0.0.0", key=version_key)
    last = kept[-1].releases.last
    return first if first == last else f"{first} – {last}"
