"""Model sources on real architectures (slow tier, random weights): segmentation-models-pytorch's
Unet (ResNet-18 encoder, 3 labels) and DeepLabV3+ (MobileNet-V2, 2 labels), and a SegFormer b0-sized
config saved with save_pretrained beside its preprocessor_config.json (4 labels), each through every
default variant and every gate (test_sources.check_gates), fully delegated thanks to the exact XNNPACK
forms (nearest upsample, LayerNorm, matmul's same-shape expands), their constants tsc-checked
against react-native-executorch 0.10.2, `run --rne 0.10` agreeing with eager."""

from __future__ import annotations

import pytest
from support import DATA
from support.checks import check_constants, check_gates, check_run_agrees_with_eager

MODELS = {
    # name: (config, what the XNNPACK files' graph_rewrites must name)
    "smp_unet": (DATA / "smp_unet.yaml", ("nearest",)),
    "smp_deeplabv3plus": (DATA / "smp_deeplabv3plus.yaml", ()),
    "segformer_b0": (None, ("LayerNormAsMean",)),
}


def _config(name, folder):
    return MODELS[name][0] or folder.parent / "segformer_b0.yaml"


@pytest.mark.parametrize("name", list(MODELS))
def test_every_gate_and_run_rne_0_10(source_builds, name):
    out = source_builds(name)
    cfg = _config(name, out)
    entries = check_gates(out, cfg, MODELS[name][1])
    check_run_agrees_with_eager(out, cfg)
    if name == "segformer_b0":  # logits at 1/4 of the input, upsampled in the graph, recorded
        adapter = entries["segformer_b0_xnnpack_fp32.pte"].output_adapter
        assert (adapter.picked, adapter.upsampled_from) == ("dict key 'logits'", (16, 16))


def test_their_constants_type_check_against_0_10_2(source_builds, tmp_path):
    ts = check_constants(tmp_path, [source_builds(n) for n in MODELS])
    assert "SemanticSegmenterModel<'background' | 'road' | 'car'>" in ts
    assert "SemanticSegmenterModel<'background' | 'sky' | 'tree' | 'person'>" in ts
