"""Slow-but-CI tier: every other config of the model family builds fp32 and passes its gates, and the
real `default` weights path loads torchvision's own file format. (DeepLabV3-ResNet50's whole matrix:
test_deeplab_slow.py.)"""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torchvision
from support import DEEPLAB, ROOT

from export.config import InputSpec
from export.config_file import list_configs, load_config
from export.convert import pipeline
from export.sources import load_model
from export.sources.weights import cache_path_for


@pytest.mark.parametrize("config", [c for c in list_configs(ROOT / "configs") if c != DEEPLAB], ids=lambda p: p.stem)
def test_every_config_builds_fp32(config, tmp_path):
    """The model family is configs only; each builds and passes its gates (DeepLabV3-ResNet50's
    whole matrix: export_random above). 64×64 input: lowering cost does not depend on it, but eager
    parity runs and file sizes do, and CI has 2 cores."""
    cfg = load_config(config)
    small = InputSpec(64, 64)
    cfg = dataclasses.replace(
        cfg, input=small, variants=tuple(dataclasses.replace(v, input=small) for v in cfg.variants)
    )
    [res] = pipeline.build(cfg, ["xnnpack_fp32"], "random", tmp_path)
    assert res.entry.parity.mode == "executed" and res.entry.parity.worst.decisive_agreement >= 0.999
    assert res.entry.input.shape == (1, 3, 64, 64) and res.entry.bundle.verified == "executed"


def test_default_weights_load_from_torchvision_cache(tmp_path, monkeypatch):
    """The real `default` path with a file in torchvision's own format (aux head included) placed
    where the offline error message says to put it."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    cfg = load_config(DEEPLAB)
    weights = torchvision.models.segmentation.DeepLabV3_ResNet50_Weights.COCO_WITH_VOC_LABELS_V1
    torch.manual_seed(3)
    ref = torchvision.models.segmentation.deeplabv3_resnet50(
        weights=None, weights_backbone=None, num_classes=21, aux_loss=True
    ).eval()
    path = cache_path_for(weights.url)
    path.parent.mkdir(parents=True)
    torch.save(ref.state_dict(), path)
    loaded = load_model(cfg, "default")
    assert loaded.kind == "default"
    assert loaded.identity.startswith("DeepLabV3_ResNet50_Weights.COCO_WITH_VOC_LABELS_V1 (sha256 ")
    assert loaded.module.aux_classifier is None
    assert not [k for k in loaded.module.state_dict() if k.startswith("aux_classifier")]
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded.module(x)["out"], ref(x)["out"])
