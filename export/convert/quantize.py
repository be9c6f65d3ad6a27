"""The quantize stage: int8 post-training quantization (PT2E, static) for XNNPACK, calibrated on photos fed
exactly as the app feeds them, and the accuracy gate that holds the quantized file to eager fp32
on images kept apart from calibration (near-duplicates refused)."""

from __future__ import annotations

import contextlib
import math
import random
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from export.config import AccuracyBounds, ModelConfig, QuantizationRecipe, Variant
from export.convert.feeds import AccuracyInputs, Feeds, feeds_for
from export.errors import ExportError, GateError
from export.metrics import compare, miou
from export.records import ACCURACY_METRICS, Accuracy, AutoKeepRecord, AutoKeepStep, LabelsRecord
from export.rne.preprocess import NEAR_DUPLICATE, load_image, model_input, similarity
from export.threads import one_thread

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
    keep = [k for k in recipe.keep_fp32 if k != "auto"]
    if keep:  # set_module_name(name, None) is refused by this quantizer: filter instead
        inside = [get_module_name_filter(name) for name in keep]
        quantizer.set_filter_function(lambda node: not any(f(node) for f in inside))
    return quantizer


def quantize(program: torch.export.ExportedProgram, variant: Variant, samples: list[torch.Tensor]):
    """-> (quantized reference module, its ExportedProgram, calibration sample count), calibrated on
    `samples` (export.convert.feeds). The reference module runs the same quantize/dequantize
    arithmetic in eager PyTorch: the file's parity is checked against it."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    recipe = variant.quantization or QuantizationRecipe()
    _check_module_names(program, recipe)
    prepared = prepare_pt2e(program.module(), quantizer_for(recipe))
    with torch.no_grad(), one_thread():  # the same observed ranges, so the same bytes, at any thread count
        for x in samples:  # none: observers never fed (a broken case)
            prepared(x)
    with _no_qat_pattern_search():
        converted = convert_pt2e(prepared)
    example = program.example_inputs[0]
    with torch.no_grad():
        return converted, torch.export.export(converted, example, strict=False), len(samples)


@contextlib.contextmanager
def _no_qat_pattern_search() -> Iterator[None]:
    """convert_pt2e folds the conv-bn patterns only prepare_qat_pt2e makes (BN after a weight-scaled
    conv and a division). To look for them it exports ~108 pattern graphs (~50 s on DeepLabV3)
    whenever a BatchNorm is left unfused, as one after a trimmed conv is. Where no BatchNorm takes
    such a division, nothing can match: the fold's own steps run without the search (the graph
    comes out the same; tests/unit/test_quantize_convert.py holds it to the stock search's)."""
    from torchao.quantization.pt2e import qat_utils

    stock = qat_utils._fold_conv_bn_qat_helper

    def helper(m, conv_fn, example_inputs, is_cuda):
        if _qat_shaped(m):
            return stock(m, conv_fn, example_inputs, is_cuda)
        m.graph.eliminate_dead_code()  # the stock helper's steps when no pattern is found, in its order
        m.recompile()
        qat_utils._duplicate_dequantize_node(m)
        m.recompile()
        qat_utils._remove_extra_dequantize(m)
        m.graph.eliminate_dead_code()
        m.recompile()
        return m

    qat_utils._fold_conv_bn_qat_helper = helper
    try:
        yield
    finally:
        qat_utils._fold_conv_bn_qat_helper = stock


def _qat_shaped(m: torch.fx.GraphModule) -> bool:
    """Whether a BatchNorm takes a division, directly or through an add: the shape of every QAT pattern."""
    from torchao.quantization.pt2e.utils import _is_bn_node

    def div(n) -> bool:
        return isinstance(n, torch.fx.Node) and n.op == "call_function" and "div" in str(n.target)

    for n in m.graph.nodes:
        if _is_bn_node(n):
            x = n.args[0]
            if div(x) or (isinstance(x, torch.fx.Node) and "add" in str(x.target) and any(map(div, x.args))):
                return True
    return False


def _check_module_names(program: torch.export.ExportedProgram, recipe: QuantizationRecipe) -> None:
    """keep_fp32 names must name modules of the wrapped model; a typo would silently quantize."""
    known = {path for n in program.graph.nodes for path, _ in (n.meta.get("nn_module_stack") or {}).values()}
    unknown = [m for m in recipe.keep_fp32 if m not in known and m != "auto"]
    if unknown:
        close = sorted(k for k in known if k and any(k.startswith(u.rsplit(".", 1)[0]) for u in unknown))[:12]
        raise ExportError(
            f"quantization.keep_fp32: no module named {', '.join(unknown)} in the wrapped model"
            f"{'; modules there: ' + ', '.join(close) if close else ''}"
        )


def worst_accuracy(ms: list[Accuracy]) -> Accuracy:
    pick = {True: min, False: max}
    return Accuracy(**{f: pick[up](getattr(m, f) for m in ms) for f, up in ACCURACY_METRICS.items()})


def centered_snr_db(ref: torch.Tensor, got: torch.Tensor) -> float:
    """10·log10 of signal over error power, each pixel's mean over classes (dim 1) removed first."""
    r = ref.double() - ref.double().mean(1, keepdim=True)
    e = got.double() - got.double().mean(1, keepdim=True) - r
    noise, signal = float(e.pow(2).sum()), float(r.pow(2).sum())
    return math.inf if noise == 0 else 10 * math.log10(signal / noise) if signal > 0 else -math.inf


def compare_accuracy(ref: torch.Tensor, got: torch.Tensor, noisy_refs: list[torch.Tensor], near_tie: float = 0.05):
    """`got` (int8) against `ref` (fp32) on one photo; `noisy_refs`: fp32 on the photo's noisy views."""
    m = compare(ref, got, near_tie)
    a = ref.argmax(1)
    same = a == got.argmax(1)
    kept = [a == n.argmax(1) for n in noisy_refs]
    stable = torch.stack(kept).all(0) if kept else torch.ones_like(same)
    noise_flips = float(np.mean([int((~k).sum()) for k in kept])) if kept else 0.0
    return Accuracy(
        argmax_agreement=m.argmax_agreement,
        miou=miou(ref, got),
        snr_db=m.snr_db,
        centered_snr_db=(snr := centered_snr_db(ref, got)),
        snr_vs_noise_db=snr - min((centered_snr_db(ref, n) for n in noisy_refs), default=math.inf),
        decisive_agreement=m.decisive_agreement,
        decisive_fraction=m.decisive_fraction,
        stable_agreement=float(same[stable].double().mean()) if bool(stable.any()) else 1.0,
        stable_fraction=float(stable.double().mean()),
        noise_agreement=min((float(k.double().mean()) for k in kept), default=1.0),
        flips_vs_noise=int((~same).sum()) / max(noise_flips, 1.0),
    )


def labels_accuracy(method, eager_fp32: torch.nn.Module, cfg: ModelConfig, variant: Variant) -> LabelsRecord:
    """mIoU / pixel accuracy against `accuracy.labels` of eager fp32, the int8 file and, when the
    model has an fp16 variant, the fp16 estimate (export.convert.verify's emulation: Core ML does not run
    here); only the int8 drop is gated."""
    from export.convert.voc import evaluate

    spec = cfg.accuracy
    assert spec is not None and spec.labels is not None
    h, w = variant.input.height, variant.input.width
    models = {"eager fp32": eager_fp32, "int8 file": lambda x: method.execute([x])[0]}
    if any(v.precision == "fp16" for v in cfg.variants):
        from export.convert.lower import export_program
        from export.convert.verify import fp16_emulation
        from export.convert.wrap import example_input

        models["fp16 estimate"] = fp16_emulation(export_program(eager_fp32, example_input(variant)))

    def numpy_of(run):
        def call(x):
            with torch.no_grad():
                return run(x).numpy()

        return call

    res = evaluate(
        spec.labels,
        {name: numpy_of(run) for name, run in models.items()},
        lambda bgr: model_input(bgr, h, w, variant.runtime_contract),
        h,
        w,
        cfg.model.num_classes,
        spec.labels_ignore_index,
    )
    drop = res.scores["eager fp32"].miou - res.scores["int8 file"].miou
    return LabelsRecord(
        res.folder, res.images, res.seconds_per_image, res.scores, drop, max_miou_drop=spec.max_labels_miou_drop
    )


BoundsKind = Literal["smoke", "release"]


def bounds_for(cfg: ModelConfig, weights_kind: str) -> tuple[BoundsKind, AccuracyBounds]:
    """("smoke" | "release", the bounds): smoke bounds only for random weights, when given."""
    spec = cfg.accuracy
    assert spec is not None, "the loader refuses int8 variants without `accuracy`"
    if weights_kind == "random" and spec.smoke_bounds is not None:
        return "smoke", spec.smoke_bounds
    return "release", spec.bounds


def fp32_references(fp32: torch.nn.Module, inputs) -> dict[str, tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]]:
    """{photo: (model input, fp32 logits, fp32 logits on its noisy views)} for `accuracy_inputs`:
    computed once, then compared with any number of quantized models or files."""
    with torch.no_grad():
        return {k: (x, fp32(x), [fp32(n) for n in noisy]) for k, (x, noisy) in inputs.items()}


def eager_accuracy(quantized, refs, near_tie: float) -> dict[str, Accuracy]:
    """The eager quantized model (the file's arithmetic) vs fp32 on `fp32_references`."""
    with torch.no_grad():
        return {k: compare_accuracy(ref, quantized(x), noisy, near_tie) for k, (x, ref, noisy) in refs.items()}


def auto_keep_fp32(
    program, module, cfg: ModelConfig, variant: Variant, feeds: Feeds, weights_kind: str, log
) -> tuple[tuple, AutoKeepRecord]:
    """`keep_fp32: auto`: quantize; while the accuracy bounds fail (eager quantized model vs fp32),
    keep the next most sensitive layer (export.convert.sensitivity) and its input's producers in fp32,
    up to `keep_fp32_cap` of the int8 weights' bytes. -> (quantize()'s result, the record)."""
    from export.convert.sensitivity import layer_sensitivity, producer_chain

    recipe = variant.quantization or QuantizationRecipe()
    which, bounds = bounds_for(cfg, weights_kind)
    inputs = feeds.accuracy
    refs = fp32_references(module, inputs)  # once: every step compares against the same fp32
    int8_bytes = sum(m.weight.numel() for m in module.modules() if isinstance(m, torch.nn.Conv2d))
    kept: list[str] = [k for k in recipe.keep_fp32 if k != "auto"]
    tried: list[AutoKeepStep] = []
    ranked = None
    while True:
        v = replace(variant, quantization=replace(recipe, keep_fp32=tuple(kept)))
        result = quantize(program, v, feeds.calibration)
        worst = worst_accuracy(list(eager_accuracy(result[0], refs, bounds.near_tie).values()))
        failed = bounds.failures(asdict(worst))
        cost = sum(
            3 * m.weight.numel() for n, m in module.named_modules() if isinstance(m, torch.nn.Conv2d) and n in kept
        )
        tried.append(AutoKeepStep(tuple(kept), passes=not failed, worst=worst))
        log(
            f"keep_fp32 auto: {len(kept)} layers in fp32 ({cost / 1e6:.2f} MB more): "
            + ("passes" if not failed else "; ".join(failed))
        )
        if not failed:
            break
        if ranked is None:
            ranked = layer_sensitivity(module, feeds.calibration, [x for x, _ in inputs.values()], recipe.per_channel)
        nxt = next((e for e in ranked if e.module not in kept), None)
        if nxt is None:
            break
        extra = [m for m in producer_chain(program, nxt.module) if m not in kept]
        extra_cost = sum(
            3 * m.weight.numel() for n, m in module.named_modules() if isinstance(m, torch.nn.Conv2d) and n in extra
        )
        if cost + extra_cost > recipe.keep_fp32_cap * int8_bytes:
            log(
                f"keep_fp32 auto: stops at the cap ({recipe.keep_fp32_cap:.0%} of {int8_bytes / 1e6:.2f} MB int8 weights)"
            )
            break
        kept += extra
    record = AutoKeepRecord(
        tuple(kept),
        extra_bytes=cost,
        share_of_int8_weights=cost / int8_bytes if int8_bytes else 0.0,
        cap=recipe.keep_fp32_cap,
        bounds=which,
        steps=tuple(tried),
    )
    return result, record


@dataclass(frozen=True)
class AccuracyVerdict:
    """What the accuracy gate measured (the build adds calibration, recipe and latency to make the
    manifest's AccuracyRecord)."""

    bounds: BoundsKind  # which bounds applied
    bounds_values: AccuracyBounds
    worst: Accuracy  # over the photos, each metric's worst
    per_image: dict[str, Accuracy]
    labels: LabelsRecord | None  # against ground truth, when accuracy.labels is given
    reference: str = "eager fp32"


def accuracy_gate(
    path: Path,
    eager_fp32: torch.nn.Module,
    cfg: ModelConfig,
    variant: Variant,
    inputs: AccuracyInputs,
    weights_kind: str,
    artifact: str,
) -> AccuracyVerdict:
    """The int8 file vs eager fp32 on held-apart photos (app preprocessing), each photo also fed
    to fp32 with sensor noise so the gated metrics are relative to the model's own stability."""
    from export.threads import runtime

    which, bounds = bounds_for(cfg, weights_kind)
    spec = cfg.accuracy
    assert spec is not None, "the loader refuses int8 variants without `accuracy`"
    method = runtime().load_program(path).load_method("forward")
    per_image = eager_accuracy(
        lambda x: method.execute([x])[0].clone(),
        fp32_references(eager_fp32, inputs),
        bounds.near_tie,
    )
    worst = worst_accuracy(list(per_image.values()))
    failed = bounds.failures(asdict(worst))
    labels = labels_accuracy(method, eager_fp32, cfg, variant) if spec.labels else None
    if labels and labels.miou_drop > labels.max_miou_drop:
        failed.append(f"labels miou_drop={labels.miou_drop:.4g} (bound <= {labels.max_miou_drop:g})")
    if failed:
        raise GateError(
            f"accuracy gate ({which} bounds): {artifact}: "
            + "; ".join(failed)
            + "\n"
            + explain(per_image, bounds)
            + (f"\nagainst labels ({labels.images} images): {_scores_text(labels)}" if labels else "")
        )
    return AccuracyVerdict(which, bounds, worst, per_image, labels)


def _scores_text(labels: LabelsRecord) -> str:
    return ", ".join(f"{k}: miou {s.miou:.4g}, pixel accuracy {s.pixel_accuracy:.4g}" for k, s in labels.scores.items())


NEXT_STEPS = (
    "next: if fp32 itself flips these pixels under noise, the bound is wrong for your weights (report it); "
    "else calibrate on photos like the app's (calibration.folder, >= 100 images), and find the layers "
    "that lose it with `python -m export explain-int8 --config CONFIG --weights WEIGHTS`, then keep them "
    "in fp32 (quantization: {keep_fp32: [names]} or {keep_fp32: auto})"
)


def explain(per_image: dict[str, Accuracy], bounds: AccuracyBounds) -> str:
    """Every metric per photo beside its bound (x: fails), then the next step to take."""
    from tabulate import tabulate

    gated = bounds.gated()
    rows = []
    for metric in ACCURACY_METRICS:
        op, b = gated.get(metric, ("", None))
        cells = []
        for acc in per_image.values():
            v = getattr(acc, metric)
            bad = b is not None and (math.isnan(v) or not (v <= b if op == "<=" else v >= b))
            cells.append(f"{v:.4g}{' x' if bad else ''}")
        rows.append((metric, f"{op} {b:g}" if b is not None else "info", *cells))
    photos = [k.split(":", 1)[-1] for k in per_image]
    return tabulate(rows, headers=("metric", "bound", *photos), tablefmt="simple") + "\n" + NEXT_STEPS


def explain_int8(cfg: ModelConfig, variant_name: str, weights: str, top: int) -> str:
    """`rne-export explain-int8`: each conv alone in int8 (the rest fp32), worst first, and the
    keep_fp32 line that would keep the worst in fp32 (eager PyTorch, no file)."""
    variant = cfg.variant(variant_name)
    if variant.precision != "int8":
        raise ExportError(f"--variant {variant_name} is {variant.precision}; explain-int8 needs an int8 variant")
    from export.convert.lower import export_program
    from export.convert.sensitivity import layer_sensitivity, producer_chain, report
    from export.convert.wrap import example_input, wrap
    from export.sources import load_model

    feeds = feeds_for(cfg, variant, calibration_set(cfg))
    module = wrap(load_model(cfg, weights).module, cfg, variant)
    photos = [x for x, _ in feeds.accuracy.values()]
    recipe = variant.quantization
    errors = layer_sensitivity(module, feeds.calibration, photos, recipe.per_channel if recipe else True)
    chain = producer_chain(export_program(module, example_input(variant)), errors[0].module)
    return "\n".join(
        [
            f"{cfg.name} {variant.name}: each conv alone in int8 (the rest fp32), logits vs fp32 on the held-apart photos",
            report(errors, top),
            f"to keep the worst in fp32: quantization: {{keep_fp32: [{', '.join(chain)}]}} (or keep_fp32: auto)",
        ]
    )


def command(args) -> int:
    """`rne-export explain-int8`."""
    from export.config_file import find_config, load_config

    print(explain_int8(load_config(find_config(args.config)), args.variant, args.weights, args.top))
    return 0
