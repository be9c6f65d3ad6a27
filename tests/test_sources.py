"""Model sources (export/convert/sources/), fast tier: a maintainer's own builder (tests/data/models/
person_mask.py, ending in a one-channel sigmoid) through every default variant and every gate, its
constants type-checked against react-native-executorch 0.10.2, and `run --rne 0.10` agreeing with
eager on a photo. The real architectures (SMP, SegFormer) go the same way in test_sources_slow.py
with the checks below; bad input for every source is in test_bad_input.py."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import DATA, ROOT, published_file, published_record, run_cli, typed
from test_codegen import tsc

from export.config import bundled_photos
from export.config_file import load_config
from export.records import Entry
from export.rne.preprocess import load_photo
from export.rne.runtimes import load_runtimes, runtimes_to_prove
from export.store.manifest import read_manifest

LINE_0_10 = "0.10.0 – 0.10.2"


def check_gates(out: Path, cfg_path: Path, rewrites: tuple[str, ...] = ()) -> dict[str, Entry]:
    """Every default variant of the config is in the manifest with every gate's record: nothing
    outside the delegate (or each op named), parity, RNE 0.10.2's own schema check with the model's
    label count, the bundle verified where the backend runs, int8 accuracy; the contract carries the
    model's normalization; the release lines claimed are 0.10's alone unless the labels are VOC's."""
    cfg = load_config(cfg_path)
    entries = read_manifest(out / "manifest.json").artifacts
    assert sorted(entries) == sorted(cfg.artifact_name(v) for v in cfg.variants)
    mean, std = cfg.contract_for(cfg.variants[0]).runtime_mean, cfg.contract_for(cfg.variants[0]).runtime_std
    for name, e in entries.items():
        assert e.delegation.non_delegated_ops == {}, (name, e.delegation)
        assert e.delegation.delegated_subgraphs >= 1
        assert e.parity.worst is not None or e.parity.mode == "not executed"
        assert (
            e.rne_schema is not None
            and e.rne_schema.passed
            and e.rne_schema.package == "react-native-executorch@0.10.2"
        )
        assert e.labels == cfg.labels and e.output.shape == (1, len(cfg.labels), cfg.input.height, cfg.input.width)
        assert (e.contract.name, e.contract.runtime_mean, e.contract.runtime_std) == ("rne-0.10", mean, std)
        assert e.output_adapter is not None
        if e.backend == "xnnpack":
            assert e.bundle.verified == "executed" and e.parity.mode == "executed"
            assert all(any(r in line for line in e.graph_rewrites) for r in rewrites), e.graph_rewrites
        if e.precision == "int8":
            assert e.accuracy is not None and e.accuracy.bounds == "smoke" and e.accuracy.worst
        proven = runtimes_to_prove(e, load_runtimes())
        assert {v: [ln.label for ln in lines] for v, lines in proven.items()} == {"1.3.1": [LINE_0_10]}
    return entries


def check_constants(tmp: Path, outs: list[Path]) -> str:
    """The published constants of these builds: one useSemanticSegmenter group per model (no constant for
    the VOC-only hooks), with its labels as a typed union and its own normalizeOpts; modelUrls.ts and
    each group's snippet compile with a real tsc against react-native-executorch 0.10.2."""
    from export.release import codegen

    pubs = []
    for out in outs:
        arts = json.loads((out / "manifest.json").read_text())["artifacts"]
        files = [
            published_file(n, f"{e['backend']}/{n}", f"https://hf.example/{e['model']}/{n}") for n, e in arts.items()
        ]
        pubs.append(
            typed(published_record(f"org/{next(iter(arts.values()))['model']}", "v1.0.0", "c" * 40, files, arts))
        )
    assert codegen.constants_from(pubs) == []  # the hooks before 0.10 hard-code VOC's 21 labels
    groups = codegen.groups_from(pubs)
    assert len(groups) == len(outs) and all(g.family.label == LINE_0_10 and g.feed == "model" for g in groups)
    ts = codegen.render_ts(pubs)
    (tmp / "modelUrls.ts").write_text(ts)
    files = ["modelUrls.ts"]
    for g in groups:
        (tmp / f"{g.name}.tsx").write_text(codegen.group_snippet(g))
        files.append(f"{g.name}.tsx")
    proc = tsc(tmp, *files, rne="0.10.2")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return ts


def check_run_agrees_with_eager(out: Path, cfg_path: Path, photo: str = "astronaut") -> float:
    """`run --rne 0.10`'s segment() on a photo (the constant's modelOpts, the app's resize) against the
    eager model fed the same input: argmax agreement on the pixels eager does not near-tie."""
    import torch

    from export.checks.replay import SegmentationModel
    from export.convert.sources import load_model
    from export.convert.wrap import wrap
    from export.metrics import compare

    cfg = load_config(cfg_path)
    variant = cfg.variant("xnnpack_fp32")
    seg = SegmentationModel(out / cfg.artifact_name(variant)).segment(load_photo(photo), rne="0.10")
    eager = wrap(load_model(cfg, "random").module, cfg, variant)
    with torch.no_grad():
        want = eager(torch.from_numpy(seg.model_input))
    got = torch.from_numpy(SegmentationModel(out / cfg.artifact_name(variant)).logits(seg.model_input))[None]
    m = compare(got, want, near_tie=0.02)
    assert m.decisive_agreement >= 0.999 and m.snr_db > 80, m
    assert np.array_equal(seg.argmax, want[0].argmax(0).numpy()) or m.argmax_agreement >= 0.999
    return m.decisive_agreement


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


@pytest.mark.e2e
def test_make_export_then_run_bench_and_card_from_the_command_line(tmp_path):
    """The maintainer's path through child processes: `make export CONFIG=…` (every default variant),
    `run --rne 0.10` on a photo, `bench` against ONNX Runtime, `card`."""
    out = tmp_path / "out"
    proc = subprocess.run(
        ["make", "--no-print-directory", "export", f"CONFIG={PERSON}", "WEIGHTS=random", f"OUT={out}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    folder = out / "person_mask"
    assert sorted(p.name for p in folder.glob("*.pte")) == [
        "person_mask_coreml_fp16.pte",
        "person_mask_xnnpack_fp32.pte",
        "person_mask_xnnpack_int8.pte",
    ]
    photo = str(bundled_photos()["astronaut"])
    run = run_cli("run", str(folder / "person_mask_xnnpack_int8.pte"), photo, "--rne", "0.10")
    assert run.returncode == 0, run.stderr
    said = json.loads(run.stdout)
    assert said["contract"] == "rne-0.10" and said["modelOpts"]["normalizeOpts"]["beta"] == [-1.0, -1.0, -1.0]
    bench = run_cli("bench", "--manifest", str(folder / "manifest.json"), "--runs", "2")
    assert bench.returncode == 0, bench.stderr
    engines = set(json.loads((folder / "bench.json").read_text())["engines"])
    assert {"onnxruntime fp32", "onnxruntime int8", "person_mask_xnnpack_int8.pte"} <= engines
    card = run_cli("card", "--manifest", str(folder / "manifest.json"))
    assert card.returncode == 0, card.stderr
    text = (folder / "README.md").read_text()
    assert LINE_0_10 in text and "0.4.0" not in text.split("## ")[0]
    shutil.rmtree(out)


def test_a_hub_id_is_read_from_huggingface_hubs_cache_and_never_downloaded(tmp_path, monkeypatch):
    """model.path as a Hub id: found in huggingface_hub's cache (its own layout, placed by hand as
    `hf download` would), checked against the config like a folder; not cached, one error naming the
    cache folder and the command that fills it, before any work."""
    from export.convert.sources import huggingface, weights_identity
    from export.errors import ExportError

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
