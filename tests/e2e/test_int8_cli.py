"""int8 through the CLI on the tiny net: `explain-int8` names the layer behind an outlier channel
and `keep_fp32: auto` keeps it; a labelled (VOC-layout) set reports mIoU per model and gates the
drop; the shipped bounds hold on the weight family's members furthest from trained."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from support import TINY, run_cli, write_yaml
from support.checks import bounds_split_healthy_from_broken

from export.config_file import load_config
from export.convert import pipeline
from export.errors import GateError


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


def test_labels_path_reports_miou_per_model_and_gates_the_drop(tiny_realistic, tmp_path):
    """VOC-layout labels on photos. The 32x32 toy net is no segmenter, so the labels are a
    reference model's: the realistic fixture's fp32 masks, resized to each photo. What is tested is
    the path (folder, palette PNGs, ignore border, split file, per-model confusion) and the drop it
    gates."""
    import cv2
    from PIL import Image

    from export.rne.preprocess import model_input
    from export.sources import load_model

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


@pytest.mark.parametrize("member", ["random", "fixture_twins"])
def test_shipped_bounds_hold_on_random_init_and_near_ties(tiny_family, member, tmp_path):
    """As the unit tier's broken member, on the members furthest from trained: random init, and many
    near-ties between confusable classes."""
    bounds_split_healthy_from_broken(tiny_family[1][member], member, tmp_path)
