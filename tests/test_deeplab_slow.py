"""Slow-but-CI tier: the real DeepLabV3-ResNet50 architecture (seeded random weights: the pretrained
file cannot be downloaded here) through the CLI, both variants, as `make export WEIGHTS=random` runs it."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch
import torchvision

from conftest import DEEPLAB, run_cli
from export.config import load_config
from export.weights import cache_path_for, load_model

pytestmark = pytest.mark.slow

XNN = "deeplab_v3_resnet50_xnnpack_fp32.pte"
CML = "deeplab_v3_resnet50_coreml_fp16.pte"
MAX_BYTES = 159_000_000  # the bound: fp32 weights (~158 MB) and nothing else, no aux head


@pytest.fixture(scope="module")
def export_random(tmp_path_factory):
    out = tmp_path_factory.mktemp("deeplab")
    proc = run_cli("build", "--config", str(DEEPLAB), "--weights", "random", "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, json.loads((out / "manifest.json").read_text())["artifacts"], proc


def test_xnnpack_fp32_entry(export_random):
    out, arts, _ = export_random
    e = arts[XNN]
    assert e["delegation"]["non_delegated_compute_nodes"] == 0 and e["delegation"]["delegated_subgraphs"] >= 1
    assert e["parity"]["mode"] == "executed"
    assert e["parity"]["worst"]["argmax_agreement"] >= 0.999
    assert e["bytes"] <= MAX_BYTES and e["bytes"] == (out / XNN).stat().st_size
    assert e["sha256"] == hashlib.sha256((out / XNN).read_bytes()).hexdigest()
    assert e["input"]["shape"] == [1, 3, 224, 224] and e["output"]["shape"] == [1, 21, 224, 224]
    assert e["weights"]["identity"] == "random(seed=0)"
    assert e["labels"][0] == "BACKGROUND" and e["labels"][20] == "TVMONITOR"


def test_coreml_fp16_entry_says_how_parity_was_obtained(export_random):
    from executorch.runtime import Runtime

    _, arts, _ = export_random
    e = arts[CML]
    assert e["delegate"] == "CoreMLBackend"
    assert e["delegation"]["non_delegated_compute_nodes"] == 0
    runnable = Runtime.get().backend_registry.is_available("CoreMLBackend")
    assert e["parity"]["mode"] == ("executed" if runnable else "emulated")
    assert e["coreml"] == {"deployment_target": "iOS17", "compute_units": "ALL"}


def test_summary_table_and_stage_progress(export_random):
    _, _, proc = export_random
    assert XNN in proc.stdout and CML in proc.stdout and "emulated" in proc.stdout
    for stage in ("2. load weights", "4. torch.export", "5. lower (xnnpack)", "6. serialize", "7. verify"):
        assert stage in proc.stderr


def test_byte_identical_across_processes(export_random, tmp_path):
    out, arts, _ = export_random
    proc = run_cli("build", "--config", str(DEEPLAB), "--weights", "random", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-2000:]
    for name in (XNN, CML):
        assert hashlib.sha256((tmp_path / name).read_bytes()).hexdigest() == arts[name]["sha256"], name


def test_default_weights_load_from_torchvision_cache(tmp_path, monkeypatch):
    """The real `default` path with a file in torchvision's own format (aux head included) placed
    where the offline error message says to put it."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    cfg = load_config(DEEPLAB)
    weights = torchvision.models.segmentation.DeepLabV3_ResNet50_Weights.COCO_WITH_VOC_LABELS_V1
    torch.manual_seed(3)
    ref = torchvision.models.segmentation.deeplabv3_resnet50(
        weights=None, weights_backbone=None, num_classes=21, aux_loss=True).eval()
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
