"""Measure int8 accuracy on a family of weights: healthy recipe vs broken ones (issue 21).

For every family member (export.checks.weight_family.FAMILY, plus the outlier members) and every
recipe (the shipped one; flat-grey calibration; one unrepresentative photo; observers never fed;
the shipped recipe on an outlier member), the eager quantized model (the same arithmetic as the
int8 file, measured within 0.1-0.6 points of it) is compared with eager fp32 on the config's
held-apart photos by every accuracy metric the gate can read (export.records.ACCURACY_METRICS).
Prints, per metric, the worst healthy value, the best broken one and the gap: the bound goes in the
gap; a metric with no gap is information only.

Run from the command line as: python scripts/int8_family.py [--builder deeplabv3_resnet50] [--config configs/deeplab_v3_resnet50.yaml]
       [--members a,b] [--seed 0] [--out artifacts/family] [--trim]
--trim: quantize the graph with the convolutions that mostly read padding trimmed (export.convert.rewrite
trim_padded_taps, as the fp32 files are built), against the untrimmed fp32 model.
Checkpoints are cached in --out (a member takes 5-90 s to make); results go to <out>/table.json.
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

from export.checks import int8_table, weight_family
from export.checks.int8_table import worst_of
from export.config import CalibrationSpec
from export.convert.feeds import accuracy_inputs, calibration_inputs
from export.convert.lower import export_program
from export.convert.quantize import calibration_set, eager_accuracy, fp32_references, quantize
from export.convert.rewrite import trim_padded_taps
from export.convert.wrap import example_input, wrap
from export.records import ACCURACY_METRICS
from export.sources.models import MODELS
from export.sources.weights import drop_aux

RECIPES = ("shipped", "grey", "one_photo", "uncalibrated")
ONE_PHOTO = "moon"  # grey, low contrast: one frame unlike the photos an app sees


def checkpoint(out: Path, builder: str, name: str, seed: int) -> Path:
    path = out / f"{builder}_{name}_seed{seed}.pth"
    if not path.is_file():
        start = time.perf_counter()
        state = weight_family.make_member(weight_family.member(name), builder, seed=seed, log=lambda *_: None)
        tmp = path.with_suffix(".tmp")
        torch.save(state, tmp)
        tmp.rename(path)
        print(f"  made {path.name} in {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    return path


def grey_folder(out: Path) -> Path:
    from PIL import Image

    grey = out / "grey"
    grey.mkdir(parents=True, exist_ok=True)
    for i in range(4):
        Image.fromarray(np.full((240, 320, 3), 110 + 5 * i, np.uint8)).save(grey / f"{i}.png")
    return grey


def recipe_cfg(cfg, recipe: str, out: Path):
    cal = cfg.calibration
    if recipe == "grey":
        return replace(cfg, calibration=replace(cal, images=(), folder=str(grey_folder(out)), count=4, views=1))
    if recipe.startswith("one_photo"):  # one frame unlike what the app sees: real photos overflow its ranges
        photo = recipe.partition(":")[2] or ONE_PHOTO
        return replace(cfg, calibration=CalibrationSpec(images=(photo,), count=1, views=1))
    return cfg


def measure(cfg, variant, state_path: Path, recipes, out: Path, trim: bool = False) -> dict:
    state = torch.load(state_path, weights_only=True)
    has_aux = any(k.startswith("aux_classifier.") for k in state)
    model = MODELS.get(cfg.model.builder).build(cfg.model.num_classes, has_aux)
    model.load_state_dict(state)
    module = wrap(drop_aux(model.eval()), cfg, variant)
    traced = trim_padded_taps(module, example_input(variant))[0] if trim else module
    program = export_program(traced, example_input(variant))
    refs = fp32_references(module, accuracy_inputs(cfg, variant))  # the untrimmed model: what the app's fp32 means
    rows = {}
    for recipe in recipes:
        start = time.perf_counter()
        rcfg = recipe_cfg(cfg, recipe, out)
        if recipe == "uncalibrated":
            quantized = quantize(program, variant, [])[0]
        else:
            quantized = quantize(program, variant, calibration_inputs(rcfg, variant, calibration_set(rcfg)))[0]
        per = {k: asdict(a) for k, a in eager_accuracy(quantized, refs, cfg.accuracy.bounds.near_tie).items()}
        rows[recipe] = per
        worst = worst_of(per)
        print(
            f"  {recipe:13s} {time.perf_counter() - start:5.0f} s  "
            + "  ".join(f"{m}={worst[m]:.4g}" for m in ACCURACY_METRICS),
            file=sys.stderr,
            flush=True,
        )
    first = next(iter(refs.values()))[1]
    return {"rows": rows, "logit_range": float(first.max() - first.min())}


def summary(table: dict) -> str:
    """export.checks.int8_table's summary, judging this code's FAMILY (tables written before the
    "judged" flag included)."""
    return int8_table.summary(table, {m.name for m in weight_family.FAMILY})
