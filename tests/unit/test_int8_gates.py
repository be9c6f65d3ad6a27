"""Issue 21, fast tier (tiny net): int8 gates measured on a family of weights, a failing gate that
explains itself, per-layer sensitivity and `keep_fp32: auto`, and accuracy against VOC labels."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from support import TINY, write_yaml
from support.checks import bounds_split_healthy_from_broken

from export.checks import weight_family
from export.config_file import load_config
from export.convert import pipeline
from export.convert.quantize import ACCURACY_METRICS
from export.errors import GateError
from export.yaml_records import ConfigError


def _logits(path, photos=("astronaut", "chelsea", "coffee")):
    from export.rne.preprocess import photo_inputs
    from export.sources import load_model

    module = load_model(load_config(TINY), str(path)).module
    with torch.no_grad():
        return [module(x)["out"] for x in photo_inputs(photos, 64, 64, "rne-0.9").values()]


def test_family_spans_logit_scale_and_near_ties_and_outliers_keep_fp32_output(tiny_family):
    _, paths = tiny_family
    assert len(weight_family.FAMILY) >= 8 and {m.backbone for m in weight_family.FAMILY} >= {"random", "trained-like"}
    ranges, ties = {}, {}
    for name in (
        "random",
        "random_trained_scale",
        "fixture_small_scale",
        "fixture_large_scale",
        "fixture",
        "fixture_twins",
    ):
        out = _logits(paths[name])
        ranges[name] = float(np.median([float(o.max() - o.min()) for o in out]))
        top2 = torch.cat(out).topk(2, dim=1).values
        ties[name] = float(((top2[:, 0] - top2[:, 1]) < 0.05 * ranges[name]).double().mean())
    assert ranges["random"] < 5 < 25 < ranges["random_trained_scale"]  # a random backbone at trained scale
    assert ranges["fixture_small_scale"] < 10 and ranges["fixture_large_scale"] > 40
    assert ties["fixture_twins"] > ties["fixture"] + 0.2  # confusable classes: many more near-ties
    # the injected outlier channel changes the activations, not the function
    for base, broken in (("fixture", "outlier_fixture"), ("undertrained", "outlier_undertrained")):
        for a, b in zip(_logits(paths[base]), _logits(paths[broken]), strict=True):
            assert float((a - b).abs().max()) <= 1e-4 * float(a.max() - a.min())


# a representative subset (random init, many near-ties, a broken member); the whole family on the
# tiny net: `python scripts/int8_family.py --config tests/data/tiny_segnet.yaml`. This tier: the
# broken member; e2e/test_int8_cli.py: random init and the near-ties
def test_shipped_bounds_pass_every_healthy_member_and_fail_every_broken_case(tiny_family, tmp_path):
    """The eager quantized model (the file's arithmetic) of each recipe vs fp32, held to the config's
    bounds: healthy passes on every kind of weights, every broken recipe fails on every kind."""
    bounds_split_healthy_from_broken(tiny_family[1]["outlier_fixture"], "outlier_fixture", tmp_path)


def test_failing_gate_prints_every_metric_per_photo_and_the_next_step(tiny_family, tmp_path, capsys):
    """The outlier member with keep_fp32: auto at a 5 % cap: no layer fits under the cap (the tiny
    net's convs are each more than 5 % of it), so the gate fails, explaining itself."""
    _, paths = tiny_family
    text = TINY.read_text().replace(
        "  - backend: xnnpack\n    precision: int8\n",
        "  - backend: xnnpack\n    precision: int8\n    quantization: {keep_fp32: auto, keep_fp32_cap: 0.05}\n",
    )
    cfg = load_config(write_yaml(tmp_path / "tiny_segnet.yaml", text))
    before = tmp_path / "out"
    with pytest.raises(GateError) as err:
        pipeline.build(cfg, ["xnnpack_int8"], str(paths["outlier_fixture"]), before)
    assert "keep_fp32 auto: stops at the cap (5% of" in capsys.readouterr().err
    msg = str(err.value)
    assert msg.startswith("accuracy gate (release bounds): tiny_segnet_xnnpack_int8.pte: centered_snr_db=")
    for metric in ACCURACY_METRICS:  # every metric, gated or not, per photo
        assert f"\n{metric} " in msg, metric
    assert "astronaut" in msg and "chelsea" in msg and " x" in msg and "info" in msg
    assert "next: " in msg and "explain-int8" in msg and "keep_fp32" in msg
    assert not (before / "tiny_segnet_xnnpack_int8.pte").exists()


def test_keep_fp32_takes_names_or_auto_only(tmp_path):
    text = TINY.read_text().replace(
        "  - backend: xnnpack\n    precision: int8\n",
        "  - backend: xnnpack\n    precision: int8\n    quantization: {keep_fp32: everything}\n",
    )
    with pytest.raises(ConfigError, match=r"variants\[1\]\.quantization\.keep_fp32: 'everything': give a list"):
        load_config(write_yaml(tmp_path / "tiny_segnet.yaml", text))


def test_labels_folder_not_in_voc_layout_is_one_clear_error(tmp_path):
    from export.convert.voc import voc_items
    from export.errors import ExportError

    with pytest.raises(ExportError, match=r"expected Pascal VOC layout .*or images/ \+ masks/.*JPEGImages is missing"):
        voc_items(tmp_path)


def test_relative_bound_yields_to_enough_absolute_fidelity():
    """snr_vs_noise_db is waived only when int8's centered SNR is past every broken case's."""
    from export.config import AccuracyBounds

    b = AccuracyBounds(min_snr_vs_noise_db=-20.5, enough_centered_snr_db=25.0)
    assert b.failures({"snr_vs_noise_db": -16.3, "centered_snr_db": 19.0}) == []
    assert b.failures({"snr_vs_noise_db": -30.0, "centered_snr_db": 28.4}) == []  # an insensitive model
    assert b.failures({"snr_vs_noise_db": -21.8, "centered_snr_db": 20.7}) == ["snr_vs_noise_db=-21.8 (bound >= -20.5)"]


def test_labels_in_the_images_and_masks_layout_with_an_ignore_index(tmp_path):
    """The layout SMP and Hugging Face users keep (images/ + index-PNG masks/, here with 99 as the
    ignore index): scored like VOC's; the ignore index is the config's, and a class id past the labels
    names it; an image without its mask is refused by name."""
    import cv2
    from PIL import Image

    from export.convert.voc import evaluate
    from export.errors import ExportError
    from export.rne.preprocess import load_photo

    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    for name in ("astronaut", "coffee"):
        bgr = load_photo(name)
        cv2.imwrite(str(tmp_path / "images" / f"{name}.png"), bgr)
        mask = np.zeros(bgr.shape[:2], np.uint8)
        mask[:, bgr.shape[1] // 2 :] = 1  # right half: class 1
        mask[:8], mask[-8:] = 99, 99  # not scored
        Image.fromarray(mask, mode="L").save(tmp_path / "masks" / f"{name}.png")

    def halves(x):  # logits whose argmax is the mask: left class 0, right class 1
        out = np.zeros((1, 2, 32, 32), np.float32)
        out[0, 0, :, :16], out[0, 1, :, 16:] = 1.0, 1.0
        return out

    def flipped(x):
        return halves(x)[:, ::-1]

    res = evaluate(tmp_path, {"right": halves, "wrong": flipped}, lambda bgr: bgr, 32, 32, 2, ignore=99)
    assert res.images == 2 and res.scores["right"].miou == 1.0 and res.scores["wrong"].miou == 0.0
    with pytest.raises(ExportError, match=r"class id 99 >= 2 classes \(the ignore index is 255"):
        evaluate(tmp_path, {"right": halves}, lambda bgr: bgr, 32, 32, 2)
    (tmp_path / "masks" / "coffee.png").unlink()
    with pytest.raises(ExportError, match=r"coffee has no file in masks/"):
        evaluate(tmp_path, {"right": halves}, lambda bgr: bgr, 32, 32, 2, ignore=99)
