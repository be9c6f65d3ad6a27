"""Accuracy against ground-truth labels, when a maintainer has them. Two layouts:

    DIR/JPEGImages/<id>.jpg               Pascal VOC
    DIR/SegmentationClass/<id>.png        palette PNG: pixel value = class id, 255 = ignore
    DIR/ImageSets/Segmentation/val.txt    optional: the ids to use (default: every labelled image)

    DIR/images/<id>.jpg|.png              what SMP and Hugging Face users keep
    DIR/masks/<id>.png                    index PNG (L or P): pixel value = class id; the ignore
                                          index is accuracy.labels_ignore_index (default 255)

Each image goes through the app's preprocessing at the program's H×W; its label map is resized to
H×W with nearest-neighbour (class ids are not blended). One confusion matrix per model over the
whole folder gives mIoU (over classes present in the labels or predictions) and pixel accuracy, the
way VOC-val results are reported (Qualcomm AI Hub reports them per precision the same way).
No torch import: callers pass functions from a model input to logits.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from export.errors import ExportError
from export.records import LabelScoresRecord

IGNORE = 255  # VOC's "void" border and difficult pixels


@dataclass(frozen=True)
class Evaluation:
    """Every labelled image of one folder through each model."""

    folder: str
    images: int
    seconds_per_image: float
    scores: dict[str, LabelScoresRecord]  # by model name


def plain_items(root: Path) -> list[tuple[Path, Path]]:
    """(image, mask) pairs of an images/ + masks/ folder, by file stem, in name order."""
    masks = {p.stem: p for p in (root / "masks").glob("*.png")}
    images = {p.stem: p for p in (root / "images").iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png")}
    unmatched = sorted(set(masks) ^ set(images))
    if unmatched:
        side = "masks" if unmatched[0] in images else "images"
        raise ExportError(f"accuracy.labels {root}: {unmatched[0]} has no file in {side}/ ({len(unmatched)} unmatched)")
    if not masks:
        raise ExportError(f"accuracy.labels {root}: no labelled images (masks/*.png)")
    return [(images[s], masks[s]) for s in sorted(masks)]


def voc_items(folder: str | Path) -> list[tuple[Path, Path]]:
    """(image, label) pairs of a labels folder (VOC layout or images/ + masks/), in id order; one
    clear error when it is neither."""
    root = Path(folder)
    if (root / "images").is_dir() and (root / "masks").is_dir():
        return plain_items(root)
    images, labels = root / "JPEGImages", root / "SegmentationClass"
    if not images.is_dir() or not labels.is_dir():
        raise ExportError(
            f"accuracy.labels {root}: expected Pascal VOC layout (JPEGImages/*.jpg and SegmentationClass/*.png) "
            "or images/ + masks/ (index PNGs); "
            f"{'JPEGImages' if not images.is_dir() else 'SegmentationClass'} is missing"
        )
    split = root / "ImageSets" / "Segmentation" / "val.txt"
    if split.is_file():
        ids = [line.strip() for line in split.read_text().splitlines() if line.strip()]
    else:
        ids = sorted(p.stem for p in labels.glob("*.png"))
    pairs = [(images / f"{i}.jpg", labels / f"{i}.png") for i in ids]
    missing = [str(p) for pair in pairs for p in pair if not p.is_file()]
    if missing:
        raise ExportError(f"accuracy.labels {root}: {len(missing)} files missing, e.g. {missing[0]}")
    if not pairs:
        raise ExportError(f"accuracy.labels {root}: no labelled images (SegmentationClass/*.png)")
    return pairs


def read_label(path: Path, height: int, width: int) -> np.ndarray:
    """A palette PNG's class ids (not its colours), resized to H×W nearest."""
    from PIL import Image

    with Image.open(path) as im:
        if im.mode not in ("P", "L"):
            raise ExportError(f"label {path}: mode {im.mode}; VOC labels are palette (P) PNGs holding class ids")
        ids = np.asarray(im)
    return cv2.resize(ids, (width, height), interpolation=cv2.INTER_NEAREST)


def confusion(pred: np.ndarray, truth: np.ndarray, k: int, ignore: int = IGNORE) -> np.ndarray:
    keep = truth != ignore
    return np.bincount(truth[keep].astype(np.int64) * k + pred[keep], minlength=k * k).reshape(k, k)


def scores(cm: np.ndarray) -> LabelScoresRecord:
    inter = np.diag(cm).astype(np.float64)
    union = cm.sum(0) + cm.sum(1) - inter
    present = union > 0
    miou = float((inter[present] / union[present]).mean()) if present.any() else 1.0
    return LabelScoresRecord(miou, float(inter.sum() / cm.sum()) if cm.sum() else 1.0)


def evaluate(
    folder: str | Path,
    models: dict[str, Callable[[Any], np.ndarray]],
    to_input: Callable[[np.ndarray], Any],
    height: int,
    width: int,
    num_classes: int,
    ignore: int = IGNORE,
) -> Evaluation:
    """Every labelled image through each model (name -> input -> logits as numpy [1,C,H,W])."""
    from export.rne.preprocess import read_image

    pairs = voc_items(folder)
    cms = {name: np.zeros((num_classes, num_classes), np.int64) for name in models}
    start = time.perf_counter()
    for i, (img, lab) in enumerate(pairs, 1):
        x = to_input(read_image(img))
        truth = read_label(lab, height, width)
        if truth[truth != ignore].max(initial=0) >= num_classes:
            raise ExportError(
                f"label {lab}: class id {int(truth[truth != ignore].max())} >= {num_classes} classes "
                f"(the ignore index is {ignore}: accuracy.labels_ignore_index)"
            )
        for name, run in models.items():
            cms[name] += confusion(np.asarray(run(x)).argmax(1)[0], truth, num_classes, ignore)
        print(f"\r  labels: {i}/{len(pairs)} images", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr, flush=True)
    per_image = (time.perf_counter() - start) / len(pairs)
    return Evaluation(str(folder), len(pairs), round(per_image, 4), {name: scores(cm) for name, cm in cms.items()})
