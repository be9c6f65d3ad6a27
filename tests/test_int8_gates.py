"""Issue 21, fast tier (tiny net): int8 gates measured on a family of weights, a failing gate that
explains itself, per-layer sensitivity and `keep_fp32: auto`, and accuracy against VOC labels."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from conftest import ROOT, TINY, run_cli, write_yaml

from export.config_file import load_config
from export.convert import pipeline
from export.convert.quantize import ACCURACY_METRICS
from export.errors import GateError
from export.yaml_records import ConfigError

sys.path.insert(0, str(ROOT / "scripts"))
import int8_family  # noqa: E402
import realistic_checkpoint as rc  # noqa: E402

sys.path.pop(0)

# the members' recipe with fewer, smaller scenes and steps: seconds per member on the tiny net
SMALL = {"size": 64, "n_train": 32, "steps": 60}


@pytest.fixture(scope="module")
def tiny_family(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-family")
    paths = {}
    for m in (*rc.FAMILY, *rc.BROKEN_MEMBERS):
        paths[m.name] = folder / f"tiny_segnet_{m.name}_seed0.pth"
        torch.save(rc.make_member(m, "tiny_segnet", seed=0, log=lambda *_: None, **SMALL), paths[m.name])
    return folder, paths


def _logits(path, photos=("astronaut", "chelsea", "coffee")):
    from export.convert.sources import load_model
    from export.rne.preprocess import photo_inputs

    module = load_model(load_config(TINY), str(path)).module
    with torch.no_grad():
        return [module(x)["out"] for x in photo_inputs(photos, 64, 64, "rne-0.9").values()]


def test_family_spans_logit_scale_and_near_ties_and_outliers_keep_fp32_output(tiny_family):
    _, paths = tiny_family
    assert len(rc.FAMILY) >= 8 and {m.backbone for m in rc.FAMILY} >= {"random", "trained-like"}
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
# tiny net: `python scripts/int8_family.py --config tests/data/tiny_segnet.yaml`
@pytest.mark.parametrize(
    "member",
    [
        pytest.param("random", marks=pytest.mark.e2e),
        pytest.param("fixture_twins", marks=pytest.mark.e2e),
        "outlier_fixture",
    ],
)
def test_shipped_bounds_pass_every_healthy_member_and_fail_every_broken_case(tiny_family, member, tmp_path):
    """The eager quantized model (the file's arithmetic) of each recipe vs fp32, held to the config's
    bounds: healthy passes on every kind of weights, every broken recipe fails on every kind."""

    folder, paths = tiny_family
    cfg = load_config(TINY)
    bounds = cfg.accuracy.bounds
    broken_member = member in {m.name for m in rc.BROKEN_MEMBERS}
    recipes = ["shipped"] if broken_member else list(int8_family.RECIPES)
    res = int8_family.measure(cfg, cfg.variant("xnnpack_int8"), paths[member], recipes, tmp_path)
    for recipe, per in res["rows"].items():
        failed = bounds.failures(int8_family.worst_of(per))
        healthy = recipe == "shipped" and not broken_member
        assert bool(failed) != healthy, (member, recipe, failed, int8_family.worst_of(per))


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


@pytest.mark.e2e
def test_explain_int8_names_the_layer_behind_the_outlier_and_auto_keeps_it(tiny_family, tmp_path):
    """The outlier channel sits between model.backbone.1 (its BN) and model.backbone.3 (the conv
    that undoes it): alone in int8, that conv is the worst layer by orders of magnitude; with
    keep_fp32: auto the build passes, keeping it and its input's producers, and says what it cost."""
    _, paths = tiny_family
    ckpt = str(paths["outlier_fixture"])
    proc = run_cli("explain-int8", "--config", str(TINY), "--weights", ckpt)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [ln.split() for ln in proc.stdout.splitlines() if ln.startswith("model.")]
    assert rows[0][0] == "model.backbone.3", proc.stdout
    assert float(rows[0][1]) + 10 < float(rows[1][1])  # dB: the worst stands out
    assert "keep_fp32: [model.backbone.3, model.backbone.2, model.backbone.1, model.backbone.0]" in proc.stdout
    text = TINY.read_text().replace(
        "  - backend: xnnpack\n    precision: int8\n",
        "  - backend: xnnpack\n    precision: int8\n    quantization: {keep_fp32: auto, keep_fp32_cap: 10.0}\n",
    )
    cfg = load_config(write_yaml(tmp_path / "tiny_segnet.yaml", text))
    res = pipeline.build(cfg, ["xnnpack_int8"], ckpt, tmp_path / "out")
    acc = res[0].entry.accuracy
    auto = acc.keep_fp32_auto
    assert auto is not None and "model.backbone.3" in auto.kept and auto.extra_bytes > 0
    assert [s.passes for s in auto.steps] == [False] * (len(auto.steps) - 1) + [True]
    assert acc.recipe.keep_fp32 == auto.kept
    assert acc.worst.centered_snr_db >= cfg.accuracy.bounds.min_centered_snr_db


def test_keep_fp32_takes_names_or_auto_only(tmp_path):
    text = TINY.read_text().replace(
        "  - backend: xnnpack\n    precision: int8\n",
        "  - backend: xnnpack\n    precision: int8\n    quantization: {keep_fp32: everything}\n",
    )
    with pytest.raises(ConfigError, match=r"variants\[1\]\.quantization\.keep_fp32: 'everything': give a list"):
        load_config(write_yaml(tmp_path / "tiny_segnet.yaml", text))


LABELLED_PHOTOS = ("astronaut", "chelsea", "camera", "horse", "motorcycle_left", "grass", "brick")


def voc_folder(root, label_fn, photos=LABELLED_PHOTOS):
    """A Pascal VOC-layout set: scikit-image photos as JPEGs, labelled by `label_fn(bgr) -> class
    ids`, with a 255 (ignore) border as VOC's; val.txt lists all but the last."""
    import cv2
    from PIL import Image

    from export.rne.preprocess import load_photo

    (root / "JPEGImages").mkdir(parents=True)
    (root / "SegmentationClass").mkdir()
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    palette = sum(([i * 12 % 256, i * 40 % 256, i * 90 % 256] for i in range(256)), [])
    for name in photos:
        bgr = load_photo(name)
        cv2.imwrite(str(root / "JPEGImages" / f"{name}.jpg"), bgr)
        lab = label_fn(bgr).astype(np.uint8)
        lab[:4], lab[-4:], lab[:, :4], lab[:, -4:] = 255, 255, 255, 255
        im = Image.fromarray(lab, mode="P")
        im.putpalette(palette)
        im.save(root / "SegmentationClass" / f"{name}.png")
    (root / "ImageSets" / "Segmentation" / "val.txt").write_text("".join(f"{n}\n" for n in photos[:-1]))
    return root


@pytest.mark.e2e
def test_labels_path_reports_miou_per_model_and_gates_the_drop(tiny_realistic, tmp_path):
    """VOC-layout labels on photos. The 32x32 toy net is no segmenter, so the labels are a
    reference model's: the realistic fixture's fp32 masks, resized to each photo. What is tested is
    the path (folder, palette PNGs, ignore border, split file, per-model confusion) and the drop it
    gates."""
    import cv2
    from PIL import Image

    from export.convert.sources import load_model
    from export.rne.preprocess import model_input

    ref = load_model(load_config(TINY), str(tiny_realistic)).module

    def label(bgr):
        with torch.no_grad():
            # the bare model: ImageNet mean/std applied outside, as rne-0.9 feeds it
            ids = ref(model_input(bgr, 32, 32, "rne-0.9"))["out"].argmax(1)[0].numpy().astype(np.uint8)
        return cv2.resize(ids, bgr.shape[1::-1], interpolation=cv2.INTER_NEAREST)

    voc = voc_folder(tmp_path / "voc", label)
    text = TINY.read_text().replace("  bounds: {min_centered", f"  labels: {voc}\n  bounds: {{min_centered")
    cfg = load_config(write_yaml(tmp_path / "tiny_segnet.yaml", text))
    res = pipeline.build(cfg, ["xnnpack_int8"], str(tiny_realistic), tmp_path / "out")
    labels = res[0].entry.accuracy.labels
    assert labels is not None and labels.images == len(LABELLED_PHOTOS) - 1 and labels.seconds_per_image > 0
    assert set(labels.scores) == {"eager fp32", "int8 file", "fp16 estimate"}  # the config has Core ML fp16
    fp16 = labels.scores["fp16 estimate"]
    assert abs(fp16.miou - labels.scores["eager fp32"].miou) < 0.01, labels.scores  # fp16 rounding: ~fp32
    fp32 = labels.scores["eager fp32"]
    assert fp32.pixel_accuracy > 0.9 and fp32.miou > 0.5, labels.scores  # fp32 made these labels
    assert labels.miou_drop <= labels.max_miou_drop
    from export.release.card import write_card

    body = write_card(tmp_path / "out" / "manifest.json", with_overlays=False).read_text()
    assert f"Against ground-truth labels ({labels.images} images of `voc`" in body and "| fp16 estimate | " in body
    # the labels gate alone (no other bound) fails on a broken calibration
    grey = tmp_path / "grey"
    grey.mkdir()
    for i in range(2):
        Image.fromarray(np.full((64, 64, 3), 2 * i, np.uint8)).save(grey / f"{i}.png")  # black frames
    text = text.replace("  count: 2", f"  folder: {grey}\n  count: 2")
    text = text.replace("bounds: {min_centered_snr_db: 24.0}", "bounds: {}")
    bad = load_config(write_yaml(tmp_path / "tiny_segnet.yaml", text))
    assert bad.accuracy.bounds.gated() == {}
    with pytest.raises(GateError, match=r"labels miou_drop=[0-9.]+ \(bound <= 0.02\)"):
        pipeline.build(bad, ["xnnpack_int8"], str(tiny_realistic), tmp_path / "out2")


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
