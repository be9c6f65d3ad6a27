"""Model sources (export/sources/), fast tier: a maintainer's own builder (tests/data/models/
person_mask.py, ending in a one-channel sigmoid) through every default variant and every gate, its
constants type-checked against react-native-executorch 0.10.2, and `run --rne 0.10` agreeing with
eager on a photo. The real architectures (SMP, SegFormer) go the same way in test_sources_slow.py
with the checks below; bad input for every source is in test_bad_input.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support import DATA, ROOT
from support.checks import check_constants, check_gates, check_run_agrees_with_eager

from export.config_file import load_config

PERSON = DATA / "person_mask.yaml"


@pytest.fixture(scope="module")
def person(source_builds) -> Path:
    return source_builds("person_mask")


def test_a_python_builder_with_a_sigmoid_mask_passes_every_gate(person):
    entries = check_gates(person, PERSON)
    e = entries["person_mask_xnnpack_fp32.pte"]
    assert (e.output_adapter.one_channel, e.output_adapter.channels) == ("probability", 1)
    assert e.contract.runtime_mean == (0.5, 0.5, 0.5) and e.input.range == "model-normalized"
    assert e.weights.identity.startswith("random(seed=0) of builder models/person_mask.py:build (sha256 ")


def test_its_constants_type_check_against_react_native_executorch_0_10_2(person, tmp_path):
    ts = check_constants(tmp_path, [person])
    assert "SemanticSegmenterModel<'background' | 'person'>" in ts
    # normalize: {mean: 0.5, std: 0.5} is pixel * 2/255 - 1, exactly as the runtime will apply it
    assert (
        "normalizeOpts: { alpha: [0.00784313725490196, 0.00784313725490196, 0.00784313725490196], beta: [-1.0, -1.0, -1.0] }"
        in ts
    )


def test_run_rne_0_10_agrees_with_eager(person):
    check_run_agrees_with_eager(person, PERSON)


def test_the_one_channel_forms_keep_the_masks_meaning():
    """A saturated sigmoid (p = 1.0 in fp32) stays finite, and each form's argmax is the mask's."""
    import torch

    from export.convert.wrap import ContractWrapper
    from export.records import OutputAdapter

    z = torch.tensor([-30.0, -0.1, 0.0, 0.1, 30.0, 200.0]).view(1, 1, 1, 6)
    for kind, model in (("logit", lambda x: z), ("probability", lambda x: torch.sigmoid(z))):
        wrapper = ContractWrapper(model, False, "out", OutputAdapter("tensor", 1, None, kind))  # type: ignore[arg-type]
        scores = wrapper(torch.zeros(1, 3, 1, 6))
        assert torch.isfinite(scores).all() and scores.shape == (1, 2, 1, 6)
        assert scores.argmax(1).flatten().tolist() == (torch.sigmoid(z) > 0.5).long().flatten().tolist()
    # softmax of the logit form is the sigmoid itself
    logit = ContractWrapper(lambda x: z, False, "out", OutputAdapter("tensor", 1, None, "logit"))  # type: ignore[arg-type]
    assert torch.allclose(logit(torch.zeros(1, 3, 1, 6)).softmax(1)[:, 1], torch.sigmoid(z)[:, 0])


def test_a_hub_id_is_read_from_huggingface_hubs_cache_and_never_downloaded(tmp_path, monkeypatch):
    """model.path as a Hub id: found in huggingface_hub's cache (its own layout, placed by hand as
    `hf download` would), checked against the config like a folder; not cached, one error naming the
    cache folder and the command that fills it, before any work."""
    from export.errors import ExportError
    from export.sources import huggingface, weights_identity

    cache = tmp_path / "hub"
    snapshot = cache / "models--acme--road-segformer" / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (cache / "models--acme--road-segformer" / "refs").mkdir()
    (cache / "models--acme--road-segformer" / "refs" / "main").write_text("0" * 40)
    (snapshot / "config.json").write_text(
        json.dumps({"model_type": "segformer", "id2label": {"0": "road", "1": "car"}})
    )
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    base = ROOT / "configs" / "base" / "segmenter.yaml"
    text = f"extends: {base}\nname: road\nmodel: {{source: transformers, path: acme/road-segformer, num_classes: 2}}\n"
    good = tmp_path / "road.yaml"
    good.write_text(text + "labels: [road, car]\n")
    cfg = load_config(good)
    assert huggingface.folder(cfg) == snapshot
    bad = tmp_path / "bad.yaml"
    bad.write_text(text + "labels: [road, bus]\n")
    with pytest.raises(
        ExportError, match=r"labels: differ from .*snapshots/0+/config.json's id2label \['road', 'car'\]"
    ):
        load_config(bad)
    missing = tmp_path / "missing.yaml"
    missing.write_text(text.replace("acme/road-segformer", "acme/not-here") + "labels: [road, car]\n")
    cfg = load_config(missing)  # a Hub id not yet cached is refused when its weights are resolved
    with pytest.raises(
        ExportError, match=rf"'acme/not-here' is not in huggingface_hub's cache \({cache}\).*hf download acme/not-here"
    ):
        weights_identity(cfg, "default")
