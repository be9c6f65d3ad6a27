"""Step 4b: int8 post-training quantization (PT2E, static, per-channel weights) for XNNPACK, and the
accuracy gate that holds the quantized file to eager fp32 on images kept apart from calibration."""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from .config import AccuracyBounds, ModelConfig, Variant
from .errors import ExportError, GateError
from .images import load_photo, to_model_input
from .verify import feed, photo_inputs

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def calibration_set(cfg: ModelConfig) -> list[str]:
    """Names (photos) or paths (folder) of the calibration images, in seeded order, `count` of them."""
    cal = cfg.calibration
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
    return pool[: cal.count]


def _load_any(name: str) -> np.ndarray:
    if Path(name).is_file():
        import skimage.io

        img = skimage.io.imread(name)
        img = np.stack([img] * 3, -1) if img.ndim == 2 else img[..., :3]
        return img.astype(np.uint8)
    return load_photo(name)


def quantize(program: torch.export.ExportedProgram, cfg: ModelConfig, variant: Variant, images: list[str]):
    """-> (quantized reference module, its ExportedProgram). The reference module runs the same
    quantize/dequantize arithmetic in eager PyTorch: the file's parity is checked against it."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
    prepared = prepare_pt2e(program.module(), quantizer)
    h, w = variant.input.height, variant.input.width
    with torch.no_grad():
        for name in images:
            prepared(feed(to_model_input(_load_any(name), h, w), variant.contract))
    converted = convert_pt2e(prepared)
    example = program.example_inputs[0]
    with torch.no_grad():
        return converted, torch.export.export(converted, example, strict=False)


@dataclass(frozen=True)
class Accuracy:
    argmax_agreement: float
    miou: float
    snr_db: float


def compare_accuracy(ref: torch.Tensor, got: torch.Tensor) -> Accuracy:
    a, b = ref.argmax(1), got.argmax(1)
    ious = []
    for k in torch.unique(torch.cat([a.flatten(), b.flatten()])):
        inter = ((a == k) & (b == k)).sum().item()
        union = ((a == k) | (b == k)).sum().item()
        ious.append(inter / union)
    err = (got.double() - ref.double()).pow(2).sum().item()
    snr = float("inf") if err == 0 else 10 * np.log10(ref.double().pow(2).sum().item() / err)
    return Accuracy(float((a == b).double().mean()), float(np.mean(ious)), float(snr))


def accuracy_gate(path: Path, eager_fp32: torch.nn.Module, cfg: ModelConfig, variant: Variant,
                  weights_kind: str, artifact: str) -> dict:
    """The int8 file vs eager fp32 on held-apart photos: argmax agreement, mIoU-vs-eager, SNR."""
    from executorch.runtime import Runtime

    spec = cfg.accuracy
    smoke = weights_kind == "random" and spec.smoke_bounds is not None
    bounds: AccuracyBounds = spec.smoke_bounds if smoke else spec.bounds
    method = Runtime.get().load_program(path).load_method("forward")
    per_image = {}
    for name, x in photo_inputs(spec.images, variant).items():
        with torch.no_grad():
            ref = eager_fp32(x)
        per_image[name] = compare_accuracy(ref, method.execute([x])[0].clone())
    worst = Accuracy(min(m.argmax_agreement for m in per_image.values()), min(m.miou for m in per_image.values()),
                     min(m.snr_db for m in per_image.values()))
    failed = [f"{k}={getattr(worst, k):.4g} (bound >= {b:g})" for k, b in
              (("argmax_agreement", bounds.min_argmax_agreement), ("miou", bounds.min_miou), ("snr_db", bounds.min_snr_db))
              if not getattr(worst, k) >= b]
    if failed:
        raise GateError(f"accuracy gate ({'smoke' if smoke else 'release'} bounds): {artifact}: " + "; ".join(failed))
    return {"reference": "eager fp32", "images": list(per_image), "bounds": "smoke" if smoke else "release",
            "bounds_values": asdict(bounds), "worst": asdict(worst), "per_image": {k: asdict(v) for k, v in per_image.items()}}


def latency_ratio(int8_path: Path, fp32_path: Path, example: torch.Tensor, runs: int = 5) -> dict:
    """Median latency of the int8 file over its fp32 sibling, interleaved in this process."""
    import statistics
    import time

    from executorch.runtime import Runtime

    rt = Runtime.get()
    methods = {"int8": rt.load_program(int8_path).load_method("forward"), "fp32": rt.load_program(fp32_path).load_method("forward")}
    times = {k: [] for k in methods}
    for r in range(runs + 1):  # +1: the first round warms up
        for k, m in methods.items():
            t0 = time.perf_counter()
            m.execute([example])
            if r:
                times[k].append((time.perf_counter() - t0) * 1e3)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"int8_ms": med["int8"], "fp32_ms": med["fp32"], "ratio": med["int8"] / med["fp32"], "runs": runs,
            "fp32_artifact": fp32_path.name}
