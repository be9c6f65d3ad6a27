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
from .images import load_image, to_model_input
from .verify import compare, feed, photo_inputs

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
            prepared(feed(to_model_input(load_image(name), h, w), variant.contract))
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
    """Parity's argmax agreement and SNR, plus the mean IoU over classes either side predicts."""
    a, b = ref.argmax(1), got.argmax(1)
    ious = []
    for k in torch.unique(torch.cat([a.flatten(), b.flatten()])):
        inter = ((a == k) & (b == k)).sum().item()
        union = ((a == k) | (b == k)).sum().item()
        ious.append(inter / union)
    m = compare(ref, got)
    return Accuracy(m.argmax_agreement, float(np.mean(ious)), m.snr_db)


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

    from executorch.runtime import Runtime

    from .bench import interleaved

    rt = Runtime.get()
    methods = {k: rt.load_program(p).load_method("forward") for k, p in (("int8", int8_path), ("fp32", fp32_path))}
    times = interleaved({k: (lambda m=m: m.execute([example])) for k, m in methods.items()}, runs, warmup=1)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"int8_ms": med["int8"], "fp32_ms": med["fp32"], "ratio": med["int8"] / med["fp32"], "runs": runs,
            "fp32_artifact": fp32_path.name}
