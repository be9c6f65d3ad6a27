"""Slow-but-CI tier: DeepLabV3-ResNet50 from a checkpoint with a trained net's logit scale (seeded
fixture, scripts/realistic_checkpoint.py) through the shipped config and its release bounds, the
int8 gate failing on broken calibration, and a weight-family subset on the real architecture.
(Its own file so the test workers build it beside the random matrix, test_deeplab_slow.py.)"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from PIL import Image
from support import DEEPLAB, realistic_checkpoint, run_cli, write_yaml

from export.config_file import load_config

XNN = "deeplab_v3_resnet50_xnnpack_fp32.pte"
Q8 = "deeplab_v3_resnet50_xnnpack_int8.pte"
CML = "deeplab_v3_resnet50_coreml_fp16.pte"


@pytest.fixture(scope="module")
def export_realistic(tmp_path_factory):
    """fp32, int8 and Core ML fp16 from a checkpoint with a trained net's logit scale (seeded
    fixture, scripts/realistic_checkpoint.py), with the shipped config and its release bounds."""
    ckpt = realistic_checkpoint("deeplabv3_resnet50", tmp_path_factory.mktemp("dl-ckpt") / "deeplab_realistic.pth")
    out = tmp_path_factory.mktemp("deeplab-realistic")
    proc = run_cli(
        "build",
        "--config",
        str(DEEPLAB),
        "--weights",
        str(ckpt),
        "--out",
        str(out),
        "--variant",
        "xnnpack_fp32",
        "--variant",
        "xnnpack_int8",
        "--variant",
        "coreml_fp16",
        timeout=1800,  # a hang guard, not a time bound
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, json.loads((out / "manifest.json").read_text())["artifacts"], ckpt


def test_realistic_weights_pass_every_gate_with_shipped_bounds(export_realistic):
    out, arts, _ = export_realistic
    cfg = load_config(DEEPLAB)
    for name in (XNN, Q8, CML):
        e = arts[name]
        assert e["weights"]["kind"] == "path"
        w, tol = e["parity"]["worst"], e["tolerances"]
        assert w["ref_range"] > 10  # a trained net's scale, not random init's
        assert w["rel_max_abs"] <= tol["max_rel_err"] and w["snr_db"] >= tol["min_snr_db"]
        assert w["decisive_agreement"] >= tol["min_decisive_agreement"]
    acc = arts[Q8]["accuracy"]
    assert acc["bounds"] == "release" and acc["bounds_values"] == dataclasses.asdict(cfg.accuracy.bounds)
    for key, bound in acc["bounds_values"].items():
        if key.startswith("min_") and bound is not None:
            assert acc["worst"][key[4:]] >= bound, key
    assert arts[Q8]["bytes"] <= 45_000_000  # the size bound for int8
    # issue 9's target for the recipe on this fixture: >= 98.5 % of the held-apart photos' pixels
    # agree with eager fp32, mIoU >= 0.90 (measured, seed 0: 99.0 %, worst-photo mIoU 0.94; the
    # equal-sized photos' mean is their pooled agreement)
    each = [v["argmax_agreement"] for v in acc["per_image"].values()]
    assert sum(each) / len(each) >= 0.985 and acc["worst"]["miou"] >= 0.90, acc["per_image"]
    assert arts[CML]["parity"]["mode"] in ("emulated", "executed")


def test_int8_accuracy_gate_fails_on_broken_calibration(export_realistic, tmp_path):
    """Calibration on flat grey frames: real photos then overflow every activation range; the int8
    build of realistic weights exits 3 naming the release accuracy gate, and the good artifact
    stays. (The smoke bounds failing on random weights: the fast tier, on both weight kinds.)"""
    out, _, ckpt = export_realistic
    grey = tmp_path / "grey"
    grey.mkdir()
    for i in range(6):
        Image.fromarray(np.full((240, 320, 3), 110 + 5 * i, np.uint8)).save(grey / f"{i}.png")
    # the shipped model file, its base now absolute, plus one key: the calibration folder
    text = DEEPLAB.read_text().replace("extends: base/", f"extends: {DEEPLAB.parent}/base/")
    cfg = write_yaml(tmp_path / "deeplab_v3_resnet50.yaml", text + f"\ncalibration: {{folder: {grey}}}\n")
    before = (out / Q8).read_bytes()
    proc = run_cli(
        "build", "--config", str(cfg), "--variant", "xnnpack_int8", "--weights", str(ckpt), "--out", str(out)
    )
    assert proc.returncode == 3, proc.stderr[-2000:]
    [line] = [ln for ln in proc.stderr.splitlines() if ln.startswith("error: ")]
    assert "accuracy gate (release bounds): deeplab_v3_resnet50_xnnpack_int8.pte" in line
    # the family-proven metric is the one that failed (not an incidental one)
    assert "snr_vs_noise_db=" in line and "(bound >= -20.5)" in line, line
    assert (out / Q8).read_bytes() == before


def test_weight_family_subset_on_real_architecture(tmp_path):
    """Issue 21 on DeepLabV3-ResNet50, a representative subset: torchvision's random init (the
    family member furthest from trained) through the shipped recipe passes the shipped bounds, and
    flat-grey, one-unlike-photo and uncalibrated recipes fail them (eager quantized model, the
    file's arithmetic). The fixture's file: the tests above; the whole family: docs/int8.md."""
    from export.checks import int8_family

    cfg = load_config(DEEPLAB)
    ckpt = int8_family.checkpoint(tmp_path, cfg.model.builder, "random", 0)
    res = int8_family.measure(cfg, cfg.variant("xnnpack_int8"), ckpt, list(int8_family.RECIPES), tmp_path)
    for recipe, per in res["rows"].items():
        failed = cfg.accuracy.bounds.failures(int8_family.worst_of(per))
        assert bool(failed) == (recipe != "shipped"), (recipe, failed)
