"""Step 4b: int8 post-training quantization (PT2E, static) for XNNPACK, calibrated on photos fed
exactly as the app feeds them, and the accuracy gate that holds the quantized file to eager fp32
on images kept apart from calibration (near-duplicates refused)."""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from .config import AccuracyBounds, ModelConfig, QuantizationRecipe, Variant
from .errors import ExportError, GateError
from .metrics import check, compare, miou
from .preprocess import NEAR_DUPLICATE, load_image, model_input, photo_inputs, similarity

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def calibration_set(cfg: ModelConfig) -> list[str]:
    """Names (photos) or paths (folder) of the calibration images, in seeded order, `count` of
    them; refused when any looks like an accuracy image (a copy, mirror or stereo twin)."""
    cal = cfg.calibration
    assert cal is not None, "the loader refuses int8 variants without `calibration`"
    if cal.folder:
        folder = Path(cal.folder)
        if not folder.is_dir():
            raise ExportError(f"{cfg.source}: calibration.folder {folder} is not a folder")
        pool = sorted(str(p) for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    else:
        pool = list(cal.images)
    if len(pool) < cal.count:
        raise ExportError(f"{cfg.source}: calibration.count is {cal.count} but only {len(pool)} images are available")
    random.Random(cal.seed).shuffle(pool)
    chosen = pool[: cal.count]
    check_disjoint(chosen, list(cfg.accuracy.images) if cfg.accuracy else [], cfg.source)
    return chosen


def check_disjoint(calibration: list[str], held_apart: list[str], source) -> None:
    held = {n: load_image(n) for n in held_apart}
    for c in calibration:
        img = load_image(c)
        for n, other in held.items():
            s = similarity(img, other)
            if s >= NEAR_DUPLICATE:
                raise ExportError(
                    f"{source}: calibration image {c} looks like accuracy image {n} (similarity {s:.2f} >= "
                    f"{NEAR_DUPLICATE}): accuracy needs photos held apart; drop one of them"
                )


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


def calibration_inputs(cfg: ModelConfig, variant: Variant, images: list[str]) -> list[torch.Tensor]:
    h, w, cal = variant.input.height, variant.input.width, cfg.calibration
    assert cal is not None, "the loader refuses int8 variants without `calibration`"
    return [
        model_input(v, h, w, variant.contract)
        for i, name in enumerate(images)
        for v in views(load_image(name), cal.views, cal.seed + i)
    ]


def quantizer_for(recipe: QuantizationRecipe):
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e import MinMaxObserver
    from torchao.quantization.pt2e.quantizer import QuantizationConfig, get_module_name_filter

    config = get_symmetric_quantization_config(is_per_channel=recipe.per_channel)
    if recipe.activation_observer == "minmax":
        act = config.input_activation
        act = type(act)(**{**act.__dict__, "observer_or_fake_quant_ctr": MinMaxObserver.with_args(eps=2**-12)})
        config = QuantizationConfig(act, act, config.weight, config.bias, config.is_qat)
    quantizer = XNNPACKQuantizer().set_global(config)
    if recipe.keep_fp32:  # set_module_name(name, None) is refused by this quantizer: filter instead
        inside = [get_module_name_filter(name) for name in recipe.keep_fp32]
        quantizer.set_filter_function(lambda node: not any(f(node) for f in inside))
    return quantizer


def quantize(program: torch.export.ExportedProgram, cfg: ModelConfig, variant: Variant, images: list[str]):
    """-> (quantized reference module, its ExportedProgram, calibration sample count). The reference
    module runs the same quantize/dequantize arithmetic in eager PyTorch: the file's parity is
    checked against it."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    recipe = variant.quantization or QuantizationRecipe()
    _check_module_names(program, recipe)
    prepared = prepare_pt2e(program.module(), quantizer_for(recipe))
    samples = calibration_inputs(cfg, variant, images)
    with torch.no_grad():
        for x in samples:
            prepared(x)
    converted = convert_pt2e(prepared)
    example = program.example_inputs[0]
    with torch.no_grad():
        return converted, torch.export.export(converted, example, strict=False), len(samples)


def _check_module_names(program: torch.export.ExportedProgram, recipe: QuantizationRecipe) -> None:
    """keep_fp32 names must name modules of the wrapped model; a typo would silently quantize."""
    known = {path for n in program.graph.nodes for path, _ in (n.meta.get("nn_module_stack") or {}).values()}
    unknown = [m for m in recipe.keep_fp32 if m not in known]
    if unknown:
        close = sorted(k for k in known if k and any(k.startswith(u.rsplit(".", 1)[0]) for u in unknown))[:12]
        raise ExportError(
            f"quantization.keep_fp32: no module named {', '.join(unknown)} in the wrapped model"
            f"{'; modules there: ' + ', '.join(close) if close else ''}"
        )


@dataclass(frozen=True)
class Accuracy:
    argmax_agreement: float
    miou: float
    snr_db: float
    decisive_agreement: float
    decisive_fraction: float


def compare_accuracy(ref: torch.Tensor, got: torch.Tensor, near_tie: float) -> Accuracy:
    """All-pixel argmax agreement (what the app shows), mIoU of the masks, SNR of the logits, and
    agreement on the pixels the fp32 model is sure of."""
    m = compare(ref, got, near_tie)
    return Accuracy(m.argmax_agreement, miou(ref, got), m.snr_db, m.decisive_agreement, m.decisive_fraction)


def accuracy_gate(
    path: Path, eager_fp32: torch.nn.Module, cfg: ModelConfig, variant: Variant, weights_kind: str, artifact: str
) -> dict:
    """The int8 file vs eager fp32 on held-apart photos (app preprocessing): argmax agreement,
    mIoU-vs-eager, SNR."""
    from executorch.runtime import Runtime

    spec = cfg.accuracy
    assert spec is not None, "the loader refuses int8 variants without `accuracy`"
    smoke = weights_kind == "random" and spec.smoke_bounds is not None
    bounds: AccuracyBounds = spec.smoke_bounds if smoke and spec.smoke_bounds is not None else spec.bounds
    method = Runtime.get().load_program(path).load_method("forward")
    per_image = {}
    for name, x in photo_inputs(spec.images, variant.input.height, variant.input.width, variant.contract).items():
        with torch.no_grad():
            ref = eager_fp32(x)
        per_image[name] = compare_accuracy(ref, method.execute([x])[0].clone(), bounds.near_tie)
    worst = Accuracy(*(min(getattr(m, f) for m in per_image.values()) for f in Accuracy.__dataclass_fields__))
    failed = check(
        asdict(worst),
        {
            "argmax_agreement": (">=", bounds.min_argmax_agreement),
            "miou": (">=", bounds.min_miou),
            "snr_db": (">=", bounds.min_snr_db),
            "decisive_agreement": (">=", bounds.min_decisive_agreement),
        },
    )
    if failed:
        raise GateError(f"accuracy gate ({'smoke' if smoke else 'release'} bounds): {artifact}: " + "; ".join(failed))
    return {
        "reference": "eager fp32",
        "images": list(per_image),
        "bounds": "smoke" if smoke else "release",
        "bounds_values": asdict(bounds),
        "worst": asdict(worst),
        "per_image": {k: asdict(v) for k, v in per_image.items()},
    }
