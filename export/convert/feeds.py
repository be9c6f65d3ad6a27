"""What one variant is fed, made once in the `wrap` stage through the app's preprocessing
(export/rne/preprocess.py) and handed to the stages after it: the parity inputs (verify, bundle)
and, for int8, the calibration samples (quantize) and the held-apart accuracy photos with their
noisy views (quantize's accuracy gate, `keep_fp32: auto`)."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch

from export.config import ModelConfig, Variant
from export.rne.preprocess import load_image, model_input, normalize_unit_input, photo_inputs
from export.threads import one_thread

# why 1 % (2.55 grey levels) and 2 draws: sensor noise a phone camera adds frame to frame; a pixel
# whose fp32 class survives it is one the model is sure of, whatever its weights' logit scale
NOISE_SIGMA = 2.55
NOISE_DRAWS = 2

AccuracyInputs = dict[str, tuple[torch.Tensor, list[torch.Tensor]]]


@dataclass(frozen=True)
class Feeds:
    parity: dict[str, torch.Tensor]  # "photo:<name>" then "random:<seed>:<i>", in the contract's feed
    calibration: list[torch.Tensor] = field(default_factory=list)  # int8: every calibration view
    accuracy: AccuracyInputs = field(default_factory=dict)  # int8: {"photo:<name>": (input, noisy inputs)}

    def photos(self) -> list[torch.Tensor]:
        """The parity photos (not the random inputs), in the config's order."""
        return [x for k, x in self.parity.items() if k.startswith("photo:")]


def feeds_for(cfg: ModelConfig, variant: Variant, calibration: list[str] | None = None) -> Feeds:
    """Every input the stages after `wrap` need, each photo through the app's preprocessing once:
    the parity inputs; given the calibration images (int8), every view of them and the held-apart
    accuracy photos with their noisy views."""
    h, w, contract = variant.input.height, variant.input.width, variant.runtime_contract

    def feed(bgr: np.ndarray) -> torch.Tensor:
        return model_input(bgr, h, w, contract)

    parity = photo_inputs(cfg.parity.images, h, w, contract)
    gen = torch.Generator().manual_seed(cfg.parity.seed)
    for i in range(cfg.parity.random_inputs):
        parity[f"random:{cfg.parity.seed}:{i}"] = normalize_unit_input(torch.rand(1, 3, h, w, generator=gen), contract)
    if calibration is None:
        return Feeds(parity)
    cal = cfg.calibration
    assert cal is not None, "the loader refuses int8 variants without `calibration`"
    samples = [feed(v) for i, name in enumerate(calibration) for v in views(load_image(name), cal.views, cal.seed + i)]
    accuracy: AccuracyInputs = {}
    for i, name in enumerate(cfg.accuracy.images if cfg.accuracy else ()):
        bgr = load_image(name)
        accuracy[f"photo:{name}"] = (feed(bgr), [feed(v) for v in noisy_views(bgr, i)])
    return Feeds(parity, samples, accuracy)


def parity_inputs(cfg: ModelConfig, variant: Variant) -> dict[str, torch.Tensor]:
    """Real photos through the app's preprocessing, plus seeded uniform inputs in the contract's feed."""
    return feeds_for(cfg, variant).parity


def calibration_inputs(cfg: ModelConfig, variant: Variant, images: list[str]) -> list[torch.Tensor]:
    """Each calibration image's views (its full frame first) as the app feeds them."""
    return feeds_for(cfg, variant, images).calibration


def accuracy_inputs(cfg: ModelConfig, variant: Variant) -> AccuracyInputs:
    """{"photo:<name>": (model input, [noisy model inputs])} through the app's preprocessing."""
    assert cfg.accuracy is not None, "the loader refuses int8 variants without `accuracy`"
    return feeds_for(cfg, variant, []).accuracy


def views(bgr: np.ndarray, n: int, seed: int) -> list[np.ndarray]:
    """The full frame, then n-1 seeded framings of it (square-ish crops of 50-100 % of each side,
    half of them mirrored): the framings a phone camera gives, before the app's resize."""
    rng = np.random.default_rng(seed)
    h, w = bgr.shape[:2]
    out = [bgr]
    for _ in range(n - 1):
        ch, cw = int(h * rng.uniform(0.5, 1.0)), int(w * rng.uniform(0.5, 1.0))
        y, x = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
        crop = bgr[y : y + ch, x : x + cw]
        out.append(np.ascontiguousarray(cv2.flip(crop, 1) if rng.random() < 0.5 else crop))
    return out


def noisy_views(bgr: np.ndarray, seed: int, draws: int = NOISE_DRAWS, sigma: float = NOISE_SIGMA) -> list[np.ndarray]:
    """The photo with seeded Gaussian sensor noise, rounded to uint8 as a camera frame is."""
    rng = np.random.default_rng(seed)
    return [np.clip(bgr + rng.normal(0, sigma, bgr.shape), 0, 255).round().astype(np.uint8) for _ in range(draws)]


class OnceEach:
    """`reference(x)`, computed once per input tensor and kept: verify compares the file with the
    reference on the feeds, and bundle stores the reference's outputs on the same photos. The
    `pinned` inputs' outputs are computed on one thread: they are written into the .bpte, whose bytes
    must not depend on the thread count (torch splits a convolution's sums by it)."""

    def __init__(self, reference, pinned: Sequence[torch.Tensor] = ()) -> None:
        self.reference = reference
        self._pinned = {id(x): x for x in pinned}  # the inputs kept alive, so their ids stay theirs
        self._seen: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # id -> (the input, kept alive; its output)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        hit = self._seen.get(id(x))
        if hit is None or hit[0] is not x:
            with one_thread() if self._pinned.get(id(x)) is x else contextlib.nullcontext():
                hit = self._seen[id(x)] = (x, self.reference(x))
        return hit[1]
