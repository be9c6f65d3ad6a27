"""Slow-but-CI tier: the real architectures (seeded random weights: the pretrained files cannot be
downloaded here). DeepLabV3-ResNet50's whole variant matrix goes through the CLI, as
`make export MODEL=deeplab_v3_resnet50 WEIGHTS=random` runs it. Realistic weights:
test_deeplab_realistic_slow.py; every other config: test_configs_slow.py (own files, so the test
workers build them side by side)."""

from __future__ import annotations

import hashlib
import json
import os

import pytest
from support import DEEPLAB, published_file, published_record, run_cli, typed

from export.config_file import load_config
from export.sources import load_model

XNN = "deeplab_v3_resnet50_xnnpack_fp32.pte"
Q8 = "deeplab_v3_resnet50_xnnpack_int8.pte"
CML = "deeplab_v3_resnet50_coreml_fp16.pte"
CML32 = "deeplab_v3_resnet50_coreml_fp32.pte"
X520 = "deeplab_v3_resnet50_xnnpack_fp32_520.pte"
X09 = "deeplab_v3_resnet50_xnnpack_fp32_rne09.pte"
MAX_BYTES = 159_000_000  # the bound: fp32 weights (~158 MB) and nothing else, no aux head


@pytest.fixture(scope="module")
def export_random(tmp_path_factory):
    out = tmp_path_factory.mktemp("deeplab")
    # a guard against a hung build, not a time bound: six variants take ~8 min on 2 idle cores
    proc = run_cli("build", "--config", str(DEEPLAB), "--weights", "random", "--out", str(out), timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, json.loads((out / "manifest.json").read_text())["artifacts"], proc


def test_matrix_is_complete(export_random):
    out, arts, _ = export_random
    assert sorted(arts) == sorted([XNN, Q8, CML, CML32, X520, X09])
    for name, e in arts.items():
        assert (out / name).is_file() and (out / e["bundle"]["path"]).is_file()
        assert e["sha256"] == hashlib.sha256((out / name).read_bytes()).hexdigest()
        assert e["delegation"]["non_delegated_compute_nodes"] == 0


def test_xnnpack_fp32_entry(export_random):
    out, arts, _ = export_random
    e = arts[XNN]
    assert e["delegation"]["delegated_subgraphs"] >= 1
    assert e["parity"]["mode"] == "executed"
    assert e["parity"]["worst"]["decisive_agreement"] >= 0.999
    assert e["bytes"] <= MAX_BYTES and e["bytes"] == (out / XNN).stat().st_size
    assert e["input"]["shape"] == [1, 3, 224, 224] and e["output"]["shape"] == [1, 21, 224, 224]
    assert e["weights"]["identity"] == "random(seed=0)"
    assert e["labels"][0] == "BACKGROUND" and e["labels"][20] == "TVMONITOR"
    assert e["bundle"]["verified"] == "executed"
    # ASPP's rate 12/24/36 convolutions read mostly padding on the 28x28 map: trimmed, and parity
    # (above, against the original module) still holds, int8's too; Core ML keeps the stock graph
    aspp = [f"model.classifier.0.convs.{i}.0" for i in (1, 2, 3)]
    assert e["graph_rewrites"] == aspp and arts["deeplab_v3_resnet50_xnnpack_int8.pte"]["graph_rewrites"] == aspp
    assert e["delegation"]["non_delegated_compute_nodes"] == 0
    # only (output, tap) pairs that read inside the map count: the stock graph (Core ML) and the trimmed one alike
    assert arts["deeplab_v3_resnet50_xnnpack_int8.pte"]["macs"] == e["macs"] == {"conv": 22_059_784_960}
    assert arts[CML]["macs"] == e["macs"]


def test_reference_runtime_agrees_with_eager_on_the_matrix_file(export_random):
    """The hook's forward() in Python (export.checks.replay) on the real architecture's fp32 file, vs
    eager on five photos (the tiny net's both contracts: test_hook)."""
    from support.checks import FP32_AGREEMENT, agreement

    from export.convert.wrap import wrap

    out, _, _ = export_random
    cfg = load_config(DEEPLAB)
    eager = wrap(load_model(cfg, "random").module, cfg, cfg.variants[0])
    assert agreement(out / XNN, eager, cfg, "rne-0.5") >= FP32_AGREEMENT


def test_resolution_and_contract_variants(export_random):
    _, arts, _ = export_random
    assert arts[X520]["input"]["shape"] == [1, 3, 520, 520] and arts[X520]["output"]["shape"] == [1, 21, 520, 520]
    assert arts[X520]["contract"]["name"] == "rne-0.5" and arts[X520]["parity"]["worst"]["decisive_agreement"] >= 0.999
    # at 520x520 (65x65 map) rate 12 reads 77 % inside the map: trimmed too, and parity (above) holds
    assert arts[X520]["graph_rewrites"] == [f"model.classifier.0.convs.{i}.0" for i in (1, 2, 3)]
    assert arts[X09]["contract"]["name"] == "rne-0.9" and arts[X09]["input"]["range"] == "ImageNet-normalized"
    assert arts[X09]["contract"]["normalize_in_graph"] is False
    assert arts[X09]["parity"]["worst"]["decisive_agreement"] >= 0.999


def test_coreml_entries_say_how_parity_was_obtained(export_random):
    from executorch.runtime import Runtime

    _, arts, _ = export_random
    runnable = Runtime.get().backend_registry.is_available("CoreMLBackend")
    for name, precision in ((CML, "fp16"), (CML32, "fp32")):
        e = arts[name]
        assert e["delegate"] == "CoreMLBackend" and e["precision"] == precision
        assert e["parity"]["mode"] == (
            "executed" if runnable else {"fp16": "emulated", "fp32": "not executed"}[precision]
        )
        assert e["coreml"] == {"deployment_target": "iOS17", "compute_units": "ALL", "lower_full_graph": False}
        assert e["bundle"]["verified"] == "executed" if runnable else e["bundle"]["verified"].startswith("not run here")
    if not runnable:  # fp32 Core ML has no emulation worth the name: only static checks, no numbers
        assert arts[CML32]["parity"]["mode"] == "not executed" and arts[CML32]["parity"]["worst"] is None
        assert arts[CML32]["parity"]["static_checks"] and "macOS" in arts[CML32]["parity"]["why"]
        assert "fp16" in arts[CML]["parity"]["why"]


def test_int8_accuracy_gate_passes_on_real_architecture(export_random):
    out, arts, _ = export_random
    e = arts[Q8]
    acc = e["accuracy"]
    assert acc["bounds"] == "release"  # the gated metrics mean the same for random and trained weights
    for key, bound in acc["bounds_values"].items():
        if key.startswith("min_") and bound is not None:
            assert acc["worst"][key[4:]] >= bound, key
    assert set(acc["images"]) == {"photo:astronaut", "photo:chelsea", "photo:motorcycle_left"}
    assert not {f"photo:{c}" for c in acc["calibration"]} & set(acc["images"])
    assert e["bytes"] < arts[XNN]["bytes"] / 3  # int8 weights: about a quarter of fp32
    assert acc["latency_ratio_to_fp32"]["fp32_artifact"] == XNN and acc["latency_ratio_to_fp32"]["ratio"] > 0
    assert e["parity"]["mode"] == "executed" and e["bundle"]["verified"] == "executed"


def test_summary_table_and_stage_progress(export_random):
    _, _, proc = export_random
    assert XNN in proc.stdout and CML in proc.stdout and Q8 in proc.stdout and "emulated" in proc.stdout
    for stage in (
        "] load ...",
        "] export ...",
        "] quantize (int8) ...",
        "] lower (xnnpack) ...",
        "] serialize ...",
        "] verify ...",
        "] bundle (.bpte) ...",
        "] commit ...",
    ):
        assert stage in proc.stderr


def test_second_run_is_up_to_date(export_random):
    out, arts, _ = export_random
    proc = run_cli("build", "--config", str(DEEPLAB), "--weights", "random", "--out", str(out))
    assert proc.returncode == 0 and "everything up to date" in proc.stdout
    assert "lower" not in proc.stderr and proc.stderr.count("up to date:") == 6


def test_byte_identical_across_processes_and_thread_counts(export_random, tmp_path):
    """Core ML at the real size, rebuilt in a new process: its package (seeded UUIDs, no conversion
    date, weights blob) is the part whose bytes could drift. int8 and its bundle, rebuilt at another
    thread count than the matrix's: calibration and the bundled outputs run on one thread (at 1 and 2
    threads they differed). All three kinds at tiny size: test_cli."""
    out, arts, _ = export_random
    threads = "2" if os.environ.get("RNE_EXPORT_THREADS") == "1" else "1"
    proc = run_cli(
        "build", "--config", str(DEEPLAB), "--weights", "random", "--out", str(tmp_path),
        "--variant", "coreml_fp16", "--variant", "xnnpack_int8", env={"RNE_EXPORT_THREADS": threads},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    for name in (CML, Q8):
        assert hashlib.sha256((tmp_path / name).read_bytes()).hexdigest() == arts[name]["sha256"], name
    bundle = arts[Q8]["bundle"]
    assert hashlib.sha256((tmp_path / bundle["path"]).read_bytes()).hexdigest() == bundle["sha256"]


def test_seed_model_constants_and_card_fit_each_rne_release(export_random, tmp_path):
    """The seed model's real files as publish would record them: one constant per file group and RNE
    release line (the 0.8+ line gets the rne-0.9 file and the built-in modelName), and modelUrls.ts
    plus every card snippet compile against react-native-executorch 0.5.15, 0.9.3 and 0.10.2 from npm."""
    from support.typescript import RNE_0_5, RNE_0_9, RNE_0_10, typecheck_card

    from export.release.card import render_card
    from export.release.codegen import constants_from, render_ts
    from export.store.manifest import read_manifest

    out, arts, _ = export_random
    base = "https://huggingface.co/org/deeplab/resolve/v1.0.0"
    files = [published_file(n, f"{e['backend']}/{n}", f"{base}/{e['backend']}/{n}") for n, e in arts.items()]
    manifest = json.loads((out / "manifest.json").read_text())
    pub = typed(published_record("org/deeplab", "v1.0.0", "c" * 40, files, manifest["artifacts"]))
    by_family = {}
    for c in constants_from(pub):
        by_family.setdefault(c.family.label, []).append((c.name, c.model_name, c.android.rsplit("/", 1)[1]))
    assert by_family[RNE_0_9] == [("DEEPLAB_V3_RESNET50_RNE09", "deeplab-v3-resnet50", X09)]
    assert {n: (m, f) for n, m, f in by_family[RNE_0_5]} == {
        "DEEPLAB_V3_RESNET50": (None, XNN),
        "DEEPLAB_V3_RESNET50_520": (None, X520),
        "DEEPLAB_V3_RESNET50_QUANTIZED": (None, Q8),
    }
    (tmp_path / "modelUrls.ts").write_text(render_ts(pub))
    card = render_card(read_manifest(out / "manifest.json"), None, [])
    assert typecheck_card(tmp_path, card) == [RNE_0_5] * 3 + [RNE_0_9] + [RNE_0_10] * 3  # _SEGMENTER: "", _520, _RNE09
    assert f"| `xnnpack/{Q8}` | 0.5.7 – 0.7.3 | rne-0.5 |" in card  # int8 claims RNE 0.5.7 on (min_rne)
    assert f"| `xnnpack/{X09}` | {RNE_0_9} | rne-0.9 |" in card
