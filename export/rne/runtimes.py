"""React Native ExecuTorch release lines (configs/runtimes/rne_releases.yaml): the ExecuTorch runtime each embeds,
the segmentation hook it offers, what that hook feeds a model and reads back. Codegen and the card
read it to say which constant and which file fit which app release. No torch.

Two kinds of line: a hook that fixes the normalization (`contract`: the one contract its files
have), and a hook that takes it from the model constant (`feeds: normalizeOpts`; `serves`: each
contract it can run and the normalization its constants then ask for).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from export.config import CONTRACTS
from export.data import RUNTIMES
from export.records import STRICT, Entry
from export.yaml_records import ConfigError, config_error, parse_record

RUNTIMES_PATH = RUNTIMES  # shipped in the package (export/data)
# What each hook's native code does to a decoded RGB photo before the model sees it; normalizeOpts:
# pixel·alpha + beta per channel, alpha/beta from the model constant (the line's `serves` says which).
HOOK_FEEDS = {
    "useImageSegmentation": "pixel/255",
    "useSemanticSegmentation": "imagenet",
    "useSemanticSegmenter": "normalizeOpts",
}
# What a feed does to pixel/255: True = normalizes (the graph must not). model: the model's own
# mean/std (contract rne-0.10), carried as numbers by the constant's normalizeOpts.
FEED_NORMALIZES = {"pixel/255": False, "imagenet": True, "model": True}
# RNE 0.10's PASCAL_VOC_LABELS (src/constants.ts; tests compare it with the package's). Hooks before
# 0.10 hard-code these 21 labels in this order (`labels: voc`); 0.10's takes them from the constant.
PASCAL_VOC_LABELS = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip
LABEL_SOURCES = ("voc", "model")


def is_voc(labels: tuple[str, ...] | list[str]) -> bool:
    """Pascal VOC's 21 labels in RNE's order (any case)."""
    return tuple(label.lower() for label in labels) == PASCAL_VOC_LABELS


# What a hook can read from output 0 (the manifest's output.kind): float32 logits [1,K,H,W].
OUTPUT_KINDS = ("logits",)
VERSION_RE = re.compile(r"^\d+\.\d+\.\d+$")


@dataclass(frozen=True)
class Releases:
    __pydantic_config__ = STRICT
    first: str
    last: str


@dataclass(frozen=True)
class RneLine:
    __pydantic_config__ = STRICT
    releases: Releases
    executorch: str  # the ExecuTorch runtime these releases embed
    torch: str  # the torch that runtime's Python wheel is built against
    hook: str  # a HOOK_FEEDS key
    feeds: str  # pixel/255 (RGB /255 only) | imagenet (/255, then ImageNet mean/std) | normalizeOpts
    contract: str | None = None  # hooks that fix the feed: the contract of the files shipped for them
    # feeds: normalizeOpts: contract -> what its constants' normalizeOpts make of RGB pixels
    serves: dict[str, str] = field(default_factory=dict, hash=False)
    reads: str = "logits"  # what the hook reads from output 0 (an OUTPUT_KINDS value)
    typecheck: str | None = None  # the npm release the generated TypeScript is checked against
    # voc: the hook hard-codes Pascal VOC's 21 labels (other models are not claimed); model: the constant's
    labels: str = "voc"

    def takes_labels(self, labels: tuple[str, ...] | list[str]) -> bool:
        return self.labels == "model" or is_voc(labels)

    @property
    def label(self) -> str:
        return releases_label([self])

    @property
    def contracts(self) -> tuple[str, ...]:
        return (self.contract,) if self.contract else tuple(self.serves)

    def feed_for(self, contract: str) -> str | None:
        """What these releases feed a file of `contract` (None: they do not run such files)."""
        if self.contract:
            return self.feeds if contract == self.contract else None
        return self.serves.get(contract)

    def takes(self, normalize_in_graph: bool, feed: str | None = None) -> bool:
        """Would this release feed a file with this contract what the file expects? pixel/255 needs
        the mean/std inside the graph; a runtime that normalizes needs a graph that does not."""
        return normalize_in_graph != FEED_NORMALIZES[feed or self.feeds]


@dataclass(frozen=True)
class RuntimeTable:
    __pydantic_config__ = STRICT
    lines: tuple[RneLine, ...]


def version_key(v: str) -> tuple[int, ...]:
    return tuple(int(p) for p in v.split("."))


def load_runtimes(path: str | Path = RUNTIMES_PATH) -> tuple[RneLine, ...]:
    source = Path(path)
    try:
        data = yaml.safe_load(source.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"{source}: cannot read it ({getattr(e, 'strerror', None) or 'not YAML'})") from None
    table: RuntimeTable = parse_record(RuntimeTable, data, source, "")
    if not table.lines:
        config_error(source, "lines", "at least one release line is required")
    previous = None
    for i, line in enumerate(table.lines):
        key = f"lines[{i}]"
        for name, v in (("releases.first", line.releases.first), ("releases.last", line.releases.last)):
            if not VERSION_RE.match(v):
                config_error(source, f"{key}.{name}", f"expected a version like 0.5.15, got {v!r}")
        if line.hook not in HOOK_FEEDS:
            config_error(source, f"{key}.hook", f"unknown hook {line.hook!r} (valid: {', '.join(HOOK_FEEDS)})")
        if line.feeds != HOOK_FEEDS[line.hook]:
            config_error(source, f"{key}.feeds", f"{line.hook} feeds {HOOK_FEEDS[line.hook]}, not {line.feeds!r}")
        if line.reads not in OUTPUT_KINDS:
            config_error(
                source, f"{key}.reads", f"unknown output kind {line.reads!r} (valid: {', '.join(OUTPUT_KINDS)})"
            )
        _check_contracts(line, source, key)
        if line.labels not in LABEL_SOURCES:
            config_error(source, f"{key}.labels", f"{line.labels!r}: valid: {', '.join(LABEL_SOURCES)}")
        if version_key(line.releases.first) > version_key(line.releases.last):
            config_error(source, f"{key}.releases", f"first {line.releases.first} is after last {line.releases.last}")
        if previous and version_key(line.releases.first) <= version_key(previous.releases.last):
            config_error(
                source, f"{key}.releases", f"overlaps or precedes {previous.label}; list lines in release order"
            )
        previous = line
    return table.lines


def _check_contracts(line: RneLine, source: Path, key: str) -> None:
    if line.feeds != "normalizeOpts":
        if line.contract is None or line.serves:
            config_error(source, key, f"{line.hook} fixes the feed: give `contract`, not `serves`")
        CONTRACTS.get(line.contract, where=f"{source}: {key}.contract")
        return
    if line.contract is not None or not line.serves:
        config_error(source, key, f"{line.hook} takes normalizeOpts from the constant: give `serves`, not `contract`")
    for contract, feed in line.serves.items():
        CONTRACTS.get(contract, where=f"{source}: {key}.serves")
        if feed not in FEED_NORMALIZES:
            config_error(
                source, f"{key}.serves.{contract}", f"expected one of {', '.join(FEED_NORMALIZES)}, got {feed!r}"
            )


def contract_lines(entry: Entry, lines: tuple[RneLine, ...]) -> list[RneLine]:
    """The release lines whose hook itself feeds this file's contract (`contract:`), whatever its
    `min_rne`. Lines that feed it through the constant's normalizeOpts are `served_lines`."""
    return [ln for ln in lines if ln.contract == entry.contract.name and ln.takes_labels(entry.labels)]


def claimed_lines(entry: Entry, lines: tuple[RneLine, ...]) -> list[RneLine]:
    """`contract_lines` from the file's `min_rne` on: the releases the card says a file claims
    (what `export compat` checks adds the served lines: `runtimes_to_prove`)."""
    low = version_key(entry.min_rne) if entry.min_rne else (0,)
    return [ln for ln in contract_lines(entry, lines) if version_key(ln.releases.last) >= low]


def served_lines(entry: Entry, lines: tuple[RneLine, ...]) -> list[RneLine]:
    """The release lines that run this file through the constant's normalizeOpts (`serves`), from
    its `min_rne` on."""
    low = version_key(entry.min_rne) if entry.min_rne else (0,)
    return [
        ln
        for ln in lines
        if ln.serves
        and ln.feed_for(entry.contract.name)
        and ln.takes_labels(entry.labels)
        and version_key(ln.releases.last) >= low
    ]


def runtimes_to_prove(entry: Entry, lines: tuple[RneLine, ...]) -> dict[str, list[RneLine]]:
    """ExecuTorch version -> the release lines embedding it that run this file, from its `min_rne`
    on: its contract's lines and the lines that serve it through normalizeOpts. What `export
    compat` runs it in (once per runtime, whatever the number of lines) and publish requires."""
    mine = claimed_lines(entry, lines) + served_lines(entry, lines)
    out: dict[str, list[RneLine]] = {}
    for ln in lines:  # table order: release order
        if ln in mine:
            out.setdefault(ln.executorch, []).append(ln)
    return out


def lines_label(group: list[RneLine], lines: tuple[RneLine, ...], min_rne: str | None = None) -> str:
    """The releases of some lines: "0.9.1 – 0.10.2" when they follow each other in the table, else
    each run of neighbours joined by ", "."""
    runs: list[list[RneLine]] = []
    for ln in group:
        if runs and lines.index(runs[-1][-1]) + 1 == lines.index(ln):
            runs[-1].append(ln)
        else:
            runs.append([ln])
    return ", ".join(filter(None, (releases_label(r, min_rne) for r in runs)))


def releases_label(lines: list[RneLine] | tuple[RneLine, ...], min_rne: str | None = None) -> str:
    """ "0.5.7 – 0.7.3": consecutive lines' releases, from `min_rne` on ("" when none is left)."""
    low = version_key(min_rne) if min_rne else (0,)
    kept = [ln for ln in lines if version_key(ln.releases.last) >= low]
    if not kept:
        return ""
    first = max(kept[0].releases.first, min_rne or "0.0.0", key=version_key)
    last = kept[-1].releases.last
    return first if first == last else f"{first} – {last}"
