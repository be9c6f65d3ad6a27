"""`export compat` in a real older ExecuTorch runtime: 0.6.0 (what RNE 0.4.0 - 0.5.6 embed), from
PyPI in a cached side venv (made on first use, ~5 GB, outside the repo). The tiny net's fp32 file
loads and matches eager there; its int8 file truly does not load (XNNPACK refuses a tensor), which
fails the gate with the runtime's own words, recorded in the manifest, files untouched."""

from __future__ import annotations

import json

from support import run_cli

from export.files import sha256_file


def test_compat_in_executorch_0_6_0_passes_fp32_and_fails_int8(arts):
    before = {p.name: sha256_file(p) for p in arts.iterdir() if p.suffix in (".pte", ".bpte")}
    proc = run_cli("compat", "--manifest", str(arts / "manifest.json"), "--runtime", "0.6.0", timeout=1800)
    assert proc.returncode == 3, proc.stdout + proc.stderr[-2000:]
    # the gate names file, runtime, the RNE releases affected and the runtime's error
    assert "error: compat: tiny_segnet_xnnpack_int8.pte in ExecuTorch 0.6.0 (RNE 0.4.0 – 0.5.6):" in proc.stderr
    assert "Failed to define tensor" in proc.stderr
    compat = {n: e["compat"]["0.6.0"] for n, e in json.loads((arts / "manifest.json").read_text())["artifacts"].items()}
    fp32 = compat["tiny_segnet_xnnpack_fp32.pte"]
    assert fp32["loads"] and fp32["passed"] and fp32["vs_eager"]["decisive_agreement"] == 1.0
    assert fp32["vs_exporter_max_abs"] < 1e-4 and fp32["rne"] == "0.4.0 – 0.5.6"
    q8 = compat["tiny_segnet_xnnpack_int8.pte"]
    assert q8["loads"] is False and not q8["passed"] and "xnn_status_invalid_parameter" in q8["error"]
    coreml = compat["tiny_segnet_coreml_fp16.pte"]  # said, never passed
    assert coreml["loads"] is None and not coreml["passed"] and "not runnable on this host" in coreml["error"]
    assert {p.name: sha256_file(p) for p in arts.iterdir() if p.suffix in (".pte", ".bpte")} == before
    assert "tiny_segnet_xnnpack_fp32.pte" in proc.stdout and "FAILS TO LOAD" in proc.stdout
    # the card says it per file and release
    from export.release.card import render_card
    from export.store.manifest import read_manifest

    card = render_card(read_manifest(arts / "manifest.json"), None, [])
    assert "| `xnnpack/tiny_segnet_xnnpack_int8.pte` | 0.4.0 – 0.5.6 | 0.6.0 | **fails to load**: " in card
    assert "| `xnnpack/tiny_segnet_xnnpack_fp32.pte` | 0.4.0 – 0.5.6 | 0.6.0 | passes; vs eager: decisive" in card
    assert "| `xnnpack/tiny_segnet_xnnpack_fp32.pte` | 0.5.7 – 0.5.15 | 0.7.0 | not checked" in card


def test_min_rne_drops_the_runtime_a_file_does_not_claim(arts, tmp_path):
    """The seed configs' int8 variants claim RNE 0.5.7 on (min_rne): 0.6.0 is not checked for them."""
    manifest = json.loads((arts / "manifest.json").read_text())
    manifest["artifacts"]["tiny_segnet_xnnpack_int8.pte"]["min_rne"] = "0.5.7"
    (arts / "manifest.json").write_text(json.dumps(manifest))
    proc = run_cli("compat", "--manifest", str(arts / "manifest.json"), "--runtime", "0.6.0", timeout=1800)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
    after = json.loads((arts / "manifest.json").read_text())["artifacts"]
    assert after["tiny_segnet_xnnpack_int8.pte"]["compat"] is None
    assert after["tiny_segnet_xnnpack_fp32.pte"]["compat"]["0.6.0"]["passed"]
    from export.release.card import render_card
    from export.store.manifest import read_manifest

    card = render_card(read_manifest(arts / "manifest.json"), None, [])
    row = "| `xnnpack/tiny_segnet_xnnpack_int8.pte` | 0.4.0 – 0.5.6 | 0.6.0 | not supported: the variant's `min_rne` is 0.5.7 |"
    assert row in card


def test_unknown_runtime_is_refused_naming_the_valid_ones(arts):
    proc = run_cli("compat", "--manifest", str(arts / "manifest.json"), "--runtime", "9.9.9")
    assert proc.returncode == 2 and "--runtime 9.9.9: not in the release table; valid: 0.6.0, 0.7.0" in proc.stderr


def test_compat_in_executorch_0_7_0_passes_int8_and_fp32(arts):
    """A second real runtime, 0.7.0 (RNE 0.5.7 – 0.5.15): the int8 file 0.6.0 refuses loads there
    (0.7.0 reads per-channel weight scales from the program's named data, where this exporter puts
    them) and both XNNPACK files match eager with the parity bounds."""
    proc = run_cli("compat", "--manifest", str(arts / "manifest.json"), "--runtime", "0.7.0", timeout=1800)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
    compat = {n: e["compat"]["0.7.0"] for n, e in json.loads((arts / "manifest.json").read_text())["artifacts"].items()}
    for name in ("tiny_segnet_xnnpack_fp32.pte", "tiny_segnet_xnnpack_int8.pte"):
        r = compat[name]
        assert r["loads"] and r["passed"] and r["rne"] == "0.5.7 – 0.5.15", (name, r)
        assert r["vs_eager"]["decisive_agreement"] >= 0.99 and r["executorch"] == "0.7.0", (name, r)
    assert compat["tiny_segnet_coreml_fp16.pte"]["loads"] is None


def test_a_maintainers_model_is_proven_in_the_0_10_runtime_alone(source_builds, tmp_path):
    """A model of the python source (2 labels, its own normalization, contract rne-0.10): compat with
    no --runtime proves it in ExecuTorch 1.3.1, the runtime of react-native-executorch 0.10, and in
    nothing older (the hooks before 0.10 hard-code VOC's labels); both XNNPACK files load and match
    eager there."""
    import shutil

    arts = tmp_path / "person_mask"
    shutil.copytree(source_builds("person_mask"), arts)
    proc = run_cli("compat", "--manifest", str(arts / "manifest.json"), timeout=1800)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
    entries = json.loads((arts / "manifest.json").read_text())["artifacts"]
    assert {n: sorted(e["compat"]) for n, e in entries.items()} == {n: ["1.3.1"] for n in entries}
    for name in ("person_mask_xnnpack_fp32.pte", "person_mask_xnnpack_int8.pte"):
        r = entries[name]["compat"]["1.3.1"]
        assert r["loads"] and r["passed"] and r["rne"] == "0.10.0 – 0.10.2", (name, r)
        assert r["vs_eager"]["decisive_agreement"] >= 0.99, (name, r)
    assert entries["person_mask_coreml_fp16.pte"]["compat"]["1.3.1"]["loads"] is None
