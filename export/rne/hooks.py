"""What each React Native ExecuTorch hook takes from a file: families of release lines that one
constant serves, the check that a file's contract pairs with a family (normalized once, output 0
what the hook reads), and the useSemanticSegmenter modelOpts (normalizeOpts, interpolation) that
codegen writes and the reference runtime's segment() replays. Never imports torch.
"""

from __future__ import annotations

import re
import typing
from dataclasses import dataclass

from export.config import IMAGENET_MEAN, IMAGENET_STD
from export.errors import ExportError
from export.records import Contract
from export.rne.runtimes import (
    PASCAL_VOC_LABELS,
    RUNTIMES_PATH,
    RneLine,
    is_voc,
    load_runtimes,
    releases_label,
    version_key,
)

# Hooks whose constant carries the normalization (a release line with `serves`): the name suffix of
# their per-model constants. A new hook of that kind is one entry here.
GROUPED_HOOKS = {"useSemanticSegmenter": "SEGMENTER"}
# RNE 0.10's PASCAL_VOC_LABELS (export.rne.runtimes): a model with these labels (any case) in this order
# gets them, typed PascalVocLabel.
# The input resize every gate measured (export/rne/preprocess.py: cv2.resize INTER_LINEAR) = RNE's 'linear'.
INTERPOLATION = "linear"
# The mask back to the photo's size: 'nearest' keeps every pixel one label's colour (RNE's own DeepLab
# constants use 'lanczos', which blends colours at class edges).
OUT_INTERPOLATION = "nearest"
# normalizeOpts per feed: pixel·alpha + beta per channel. imagenet is RNE's IMAGENET_NORM expression.
NORMALIZE_OPTS = {
    "pixel/255": "{ alpha: 1 / 255, beta: 0 }",
    "imagenet": "{ alpha: ["
    + ", ".join(f"1 / (255 * {s})" for s in IMAGENET_STD)
    + "], beta: ["
    + ", ".join(f"-{m} / {s}" for m, s in zip(IMAGENET_MEAN, IMAGENET_STD, strict=True))
    + "] }",
}


def normalize_values(
    feed: str, contract: Contract | None = None
) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """NORMALIZE_OPTS[feed] as numbers per RGB channel (alpha, beta), the same expressions evaluated
    (tests compare them with node's evaluation, bit for bit): what the reference runtime's segment()
    feeds, so it runs exactly the constant codegen writes. model: the contract's own mean/std."""
    if feed == "model" and contract is not None and contract.runtime_mean and contract.runtime_std:
        alpha = tuple(1 / (255 * s) for s in contract.runtime_std)
        beta = tuple(-m / s for m, s in zip(contract.runtime_mean, contract.runtime_std, strict=True))
        return typing.cast(tuple[float, float, float], alpha), typing.cast(tuple[float, float, float], beta)
    if feed == "pixel/255":
        return (1 / 255, 1 / 255, 1 / 255), (0.0, 0.0, 0.0)
    if feed == "imagenet":
        alpha = tuple(1 / (255 * s) for s in IMAGENET_STD)
        beta = tuple(-m / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD, strict=True))
        return typing.cast(tuple[float, float, float], alpha), typing.cast(tuple[float, float, float], beta)
    raise ExportError(f"no normalizeOpts for feed {feed!r} (valid: {', '.join(NORMALIZE_OPTS)})")


def segmenter_labels(labels: tuple[str, ...] | list[str]) -> tuple[tuple[str, ...], bool]:
    """The labels a GROUPED_HOOKS constant lists for a model with these labels, and whether they are
    RNE's PASCAL_VOC_LABELS (then lowercase, typed PascalVocLabel)."""
    voc = is_voc(labels)
    return (PASCAL_VOC_LABELS if voc else tuple(labels)), voc


@dataclass(frozen=True)
class SegmenterOpts:
    """The modelOpts codegen writes for a file of one contract, for one GROUPED_HOOKS release line:
    what the reference runtime's segment() runs (export/checks/replay.py)."""

    line: RneLine
    contract: str
    feed: str  # pixel/255 | imagenet | model: which NORMALIZE_OPTS (model: the contract's numbers)
    alpha: tuple[float, float, float]
    beta: tuple[float, float, float]
    interpolation: str = INTERPOLATION
    out_interpolation: str = OUT_INTERPOLATION
    resize_mode: str = "stretch"


def segmenter_opts(rne: str, contract: Contract, lines: tuple[RneLine, ...] | None = None) -> SegmenterOpts:
    """The modelOpts of a file of `contract` for react-native-executorch `rne` (a release, or a
    prefix such as 0.10): refused as codegen refuses the pairing."""
    if not re.fullmatch(r"\d+\.\d+(\.\d+)?", rne):
        raise ExportError(f"--rne {rne!r}: expected a react-native-executorch release like 0.10 or 0.10.2")
    want = version_key(rne)
    all_lines = lines if lines is not None else load_runtimes()
    line = next(
        (
            ln
            for ln in all_lines
            if version_key(ln.releases.first)[: len(want)] <= want <= version_key(ln.releases.last)[: len(want)]
        ),
        None,
    )
    if line is None:
        known = ", ".join(ln.label for ln in all_lines)
        raise ExportError(f"react-native-executorch {rne} is in no line of {RUNTIMES_PATH.name} ({known})")
    if line.hook not in GROUPED_HOOKS:
        raise ExportError(
            f"react-native-executorch {rne} ({line.label}) runs {line.hook}, whose forward() `run` replays without "
            f"--rne; --rne is for releases whose hook takes modelOpts ({', '.join(GROUPED_HOOKS)})"
        )
    fam = Family(line.hook, line.feeds, line.contract, (line,))
    check_pairing(fam, "this file", contract)
    feed = line.feed_for(contract.name)
    if feed is None:
        raise ExportError(
            f"react-native-executorch {line.label} ({line.hook}) serves no file of contract {contract.name}"
        )
    alpha, beta = normalize_values(feed, contract)
    return SegmenterOpts(line, contract.name, feed, alpha, beta)


@dataclass(frozen=True)
class Family:
    """Consecutive RNE release lines with one hook and one contract: one constant per file group
    and one usage snippet serve all of them."""

    hook: str
    feeds: str
    contract: str | None  # None: the constant's normalizeOpts choose the feed per contract (`serves`)
    lines: tuple[RneLine, ...]

    @property
    def label(self) -> str:
        return releases_label(self.lines)

    def feed_for(self, contract: str) -> str | None:
        return self.lines[0].feed_for(contract)

    def takes_labels(self, labels: tuple[str, ...] | list[str]) -> bool:
        return all(ln.takes_labels(labels) for ln in self.lines)

    @property
    def typecheck(self) -> str | None:
        return next((ln.typecheck for ln in self.lines if ln.typecheck), None)


def families(lines: tuple[RneLine, ...] | None = None) -> list[Family]:
    out: list[Family] = []
    for line in lines if lines is not None else load_runtimes():
        last = out[-1] if out else None
        if last and (last.hook, last.contract, last.lines[-1].serves, last.lines[-1].reads, last.lines[-1].labels) == (
            line.hook,
            line.contract,
            line.serves,
            line.reads,
            line.labels,
        ):
            out[-1] = Family(last.hook, last.feeds, last.contract, (*last.lines, line))
        else:
            out.append(Family(line.hook, line.feeds, line.contract, (line,)))
    return out


def check_pairing(family: Family, artifact: str, contract: Contract, output: str = "logits") -> None:
    """Refuse a constant that gives these releases a file their runtime feeds differently from what
    the file expects (ImageNet mean/std applied twice, or not at all), or whose output 0 is not what
    their hook reads."""
    for line in family.lines:
        if line.reads != output:
            raise ExportError(
                f"{artifact} outputs {output}, but react-native-executorch {family.label} ({family.hook}) reads "
                f"{line.reads} from output 0; export the contract those releases read, or correct {RUNTIMES_PATH.name}"
            )
    feed = family.feed_for(contract.name) or family.feeds
    if all(line.takes(contract.normalize_in_graph, line.feed_for(contract.name)) for line in family.lines):
        return
    effect = "normalize its input twice" if feed != "pixel/255" else "never normalize its input"
    how = f"{family.feeds}" if family.contract else f"normalizeOpts = {feed} for {contract.name} (its `serves`)"
    raise ExportError(
        f"{artifact} (contract {contract.name}: {contract.description}) cannot serve react-native-executorch "
        f"{family.label}: {family.hook} feeds {how}, so the app would {effect} (wrong masks, no "
        f"error); export a variant with the contract those releases feed, or correct {RUNTIMES_PATH.name}"
    )
