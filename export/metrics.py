"""Comparing logits: the numbers every gate reads (parity, int8 accuracy, bundles).

Gated metrics mean the same for any weights. Random init gives logits spanning ~1 unit and
near-tied, trained nets span tens of units with clear winners, so absolute errors (max-abs, RMSE)
are kept for information only. Gates read:
- ``rel_max_abs``: worst |got - ref| over the reference's logit range (max - min)
- ``snr_db``: 10·log10(Σref² / Σerr²) (relative RMSE = 10^(-snr/20))
- ``cosine`` of the flattened logits
- ``decisive_agreement``: argmax agreement on pixels whose reference top-2 margin is at least
  ``near_tie`` × the logit range; below that the winner is a coin toss for any rounding
"""

from __future__ import annotations

import math

import torch

from export.records import Metrics

# why 2 %: int8 requantization moves a logit by up to ~1-2 % of the range (measured, configs);
# a top-2 margin below that decides nothing a device could reproduce
NEAR_TIE = 0.02


def compare(ref: torch.Tensor, got: torch.Tensor, near_tie: float = NEAR_TIE) -> Metrics:
    """`got` against `ref`, both logits [N,C,H,W]."""
    ref = ref.detach().double()
    got = got.detach().double()
    err = got - ref
    noise = float(err.pow(2).sum())
    signal = float(ref.pow(2).sum())
    snr = math.inf if noise == 0 else 10 * math.log10(signal / noise) if signal > 0 else -math.inf
    cos = float(torch.nn.functional.cosine_similarity(ref.flatten(), got.flatten(), dim=0))
    same = ref.argmax(1) == got.argmax(1)
    rng = float(ref.max() - ref.min())
    top2 = ref.topk(2, dim=1).values if ref.shape[1] >= 2 else torch.cat([ref, ref], 1)
    decisive = (top2[:, 0] - top2[:, 1]) >= near_tie * rng
    n_dec = int(decisive.sum())
    max_abs = float(err.abs().max())
    return Metrics(
        max_abs=max_abs,
        rmse=float(err.pow(2).mean().sqrt()),
        ref_range=rng,
        rel_max_abs=max_abs / rng if rng > 0 else (0.0 if max_abs == 0 else math.inf),
        snr_db=snr,
        cosine=cos,
        argmax_agreement=float(same.double().mean()),
        decisive_agreement=float(same[decisive].double().mean()) if n_dec else 1.0,
        decisive_fraction=n_dec / same.numel(),
    )


def worst_of(ms: list[Metrics]) -> Metrics:
    """Field-wise worst: largest errors, smallest similarities (not one input's numbers)."""
    return Metrics(
        max_abs=max(m.max_abs for m in ms),
        rmse=max(m.rmse for m in ms),
        ref_range=min(m.ref_range for m in ms),
        rel_max_abs=max(m.rel_max_abs for m in ms),
        snr_db=min(m.snr_db for m in ms),
        cosine=min(m.cosine for m in ms),
        argmax_agreement=min(m.argmax_agreement for m in ms),
        decisive_agreement=min(m.decisive_agreement for m in ms),
        decisive_fraction=min(m.decisive_fraction for m in ms),
    )


# why 1 %: per-image IoU of a class a few pixels wide is a coin toss (measured, tiny net's realistic
# fixture: 99.8 % of pixels agree, yet a 2-pixel fragment at IoU 0 pulls mIoU to 0.70); all-pixel
# agreement still counts every pixel
MIOU_MIN_SHARE = 0.01


def miou(ref: torch.Tensor, got: torch.Tensor, min_share: float = MIOU_MIN_SHARE) -> float:
    """Mean IoU of `got`'s argmax against `ref`'s, over the classes that cover at least `min_share`
    of the pixels in either map."""
    a, b = ref.argmax(1), got.argmax(1)
    n = a.numel()
    ious = []
    for k in torch.unique(torch.cat([a.flatten(), b.flatten()])):
        in_a, in_b = a == k, b == k
        if max(int(in_a.sum()), int(in_b.sum())) < min_share * n:
            continue
        ious.append(int((in_a & in_b).sum()) / int((in_a | in_b).sum()))
    return float(sum(ious) / len(ious)) if ious else 1.0
