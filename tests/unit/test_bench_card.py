"""Benchmark (structure and honesty, never wall-time assertions) and the generated model card."""

from __future__ import annotations

import json
import shutil

import cv2
import pytest
import yaml
from support import TINY, core_ml_runs, foreign_stderr_lines, run_cli, sample_entry

from export.release.card import render_card
from export.release.publish import local_files
from export.store.manifest import manifest_from_dict, read_manifest

XNN = "tiny_segnet_xnnpack_fp32.pte"
INT8 = "tiny_segnet_xnnpack_int8.pte"
CML = "tiny_segnet_coreml_fp16.pte"


@pytest.fixture(scope="module")
def benched(tiny_build, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "artifacts"
    shutil.copytree(tiny_build, out)  # bench writes bench.json beside the manifest
    proc = run_cli(
        "bench",
        "--manifest",
        str(out / "manifest.json"),
        "--runs",
        "3",
        "--warmup",
        "1",
        "--config",
        str(TINY),
        "--profile",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out, json.loads((out / "bench.json").read_text()), proc


def test_bench_measures_every_engine_in_one_run(benched):
    out, bench, proc = benched
    engines = bench["engines"]
    assert list(engines)[:3] == ["eager fp32", "onnxruntime fp32", "onnxruntime int8"] and XNN in engines
    for r in engines.values():
        assert r["min_ms"] <= r["median_ms"] <= r["max_ms"]
        assert r["ratio_to_eager"] == pytest.approx(r["median_ms"] / engines["eager fp32"]["median_ms"])
        assert r["ratio_to_onnxruntime"] == pytest.approx(r["median_ms"] / engines["onnxruntime fp32"]["median_ms"])
    assert engines["eager fp32"]["ratio_to_eager"] == 1.0
    # int8's peer is ONNX Runtime's own static int8 model; its accuracy is measured beside the file's
    assert bench["peers"] == {XNN: "onnxruntime fp32", INT8: "onnxruntime int8"}
    assert engines[INT8]["ratio_to_peer"] == pytest.approx(
        engines[INT8]["median_ms"] / engines["onnxruntime int8"]["median_ms"]
    )
    for name in (INT8, "onnxruntime int8"):
        acc = bench["int8_accuracy"][name]
        assert acc["centered_snr_db"] > 10 and 0.5 < acc["decisive_agreement"] <= 1.0
    # the host, so a ratio from elsewhere can be read: CPU, instruction sets, each engine's threads
    host = bench["host"]
    assert host["cpu"] and isinstance(host["isa"], list) and host["cpus"] >= 1
    assert host["threads"]["onnxruntime"] == host["threads"]["executorch"] >= 1 and host["threads"]["torch"] >= 1
    assert foreign_stderr_lines(proc.stderr) == []  # quiet: no runtime log or library warnings
    assert engines[XNN]["load_ms"] > 0 and engines[XNN]["peak_rss_increment_mb"] >= 0  # from its own process
    if core_ml_runs():  # macOS: Core ML is one more engine
        assert CML in engines
    else:
        assert CML in bench["not_run"] and "CoreMLBackend" in bench["not_run"][CML]
    assert bench["resize"]["artifact"] == XNN and bench["resize"]["image"] == "451x300"
    assert bench["runs"] == 3 and bench["warmup"] == 1
    import jsonschema  # its JSON Schema, written beside it, describes it (and refuses a wrong one)

    schema = json.loads((out / "bench.schema.json").read_text())
    jsonschema.validate(bench, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**bench, "engines": {XNN: {"median_ms": "fast"}}}, schema)
    listed = read_manifest(out / "manifest.json").artifacts  # which files were measured, by sha256
    assert bench["artifacts"] == {n: e.sha256 for n, e in listed.items()}
    assert "x eager" in proc.stdout and "x ort fp32" in proc.stdout and "not run here" in proc.stdout
    assert f"host: {host['cpu']}" in proc.stdout and "x ort int8" in proc.stdout


def test_bench_records_what_this_host_s_kernels_reach(benched):
    """The kernel probe: XNNPACK's and ONNX Runtime's 3x3 and 1x1 convolution and torch's GEMM, each
    rate the shape's MACs over its median; the host's physical cores beside its logical CPUs; the
    peak's clock is never below what the measured GEMM needs."""
    from export.checks.kernels import SHAPES

    _, bench, proc = benched
    host = bench["host"]
    assert 1 <= host["cores"] <= host["cpus"]
    rates = {(k["engine"], k["kind"]): k for k in host["kernels"]}
    wanted = {(e, f"fp32 {kind}") for e in ("xnnpack", "onnxruntime") for kind, *_ in SHAPES} | {("torch", "fp32 GEMM")}
    assert set(rates) == wanted | {("xnnpack", "fp32 3x3 convolution as 9 1x1 taps")}
    for (engine, kind), k in rates.items():
        assert k["threads"] == host["threads"]["executorch"] and k["median_ms"] > 0
        if engine != "torch":
            _, cin, cout, ksize, side = next(s for s in SHAPES if kind.startswith(f"fp32 {s[0]}"))
            assert k["gmacs"] == pytest.approx(
                side * side * cin * cout * ksize * ksize / k["median_ms"] / 1e6, rel=1e-2
            )
    assert host["peak"]["fp32_gmacs"] >= rates[("torch", "fp32 GEMM")]["gmacs"] * 0.999
    assert "kernels on this host" in proc.stdout and "fp32 3x3 convolution" in proc.stdout


# TinySegNet at 32x32 by hand, (output, tap) pairs inside the input: conv 3->16 3x3 stride 2 pad 1 (16x16 out;
# per axis the first tap misses row -1 once: 15 + 16 + 16), conv 16->32 3x3 pad 1 (15 + 16 + 15), classifier 1x1
TINY_MACS = 16 * 3 * 47 * 47 + 32 * 16 * 46 * 46 + 21 * 16 * 16 * 32


def test_bench_sets_each_engine_s_work_against_the_host_s_peak(benched):
    """GMAC from each program (the manifest's count for a file, the wrapped model's for the baselines),
    achieved GMAC/s from the same run's median, and its share of the peak for its precision."""
    out, bench, proc = benched
    entries = read_manifest(out / "manifest.json").artifacts
    assert entries[XNN].macs == entries[INT8].macs == {"conv": TINY_MACS}
    peak = bench["host"]["peak"]
    assert peak is not None and peak["cores"] == bench["host"]["threads"]["executorch"]
    assert peak["fp32_gmacs"] == pytest.approx(
        peak["cores"] * peak["clock_ghz"] * peak["fp32_macs_per_cycle"], rel=1e-3
    )
    for name, r in bench["engines"].items():
        assert r["gmac"] == pytest.approx(TINY_MACS / 1e9), name
        assert r["gmacs"] == pytest.approx(r["gmac"] / (r["median_ms"] / 1e3))
        top = peak["int8_gmacs"] if "int8" in name else peak["fp32_gmacs"]
        assert r["peak_share"] == pytest.approx(r["gmacs"] / top)
        assert name == CML or r["peak_share"] <= 1.0 + 1e-9, name  # each CPU engine is a floor under the clock
    assert (
        "GMAC/s" in proc.stdout and "% peak" in proc.stdout and f"x {peak['fp32_macs_per_cycle']} fp32" in proc.stdout
    )


def test_every_engine_on_the_cpu_is_a_floor_under_the_clock_and_core_ml_is_not():
    """What each engine achieved is passed to the host's peak as a floor (export.host.peak), so no
    CPU engine shows over 100 % of it; a Core ML file may run on the GPU or Neural Engine, and eager
    torch may run on other threads than the peak's: left out."""
    from types import SimpleNamespace

    from export.checks.bench import Plan, _achieved, _on_the_cpu

    plan = Plan()
    plan.macs = {"onnxruntime fp32": 2_000_000_000, XNN: 2_000_000_000, INT8: 2_000_000_000, CML: 2_000_000_000}
    plan.int8 = {INT8}
    rates = _achieved(plan, {k: [20.0, 10.0, 30.0] for k in plan.macs})  # median 20 ms: 100 GMAC/s
    assert rates[INT8] == ("int8", pytest.approx(100.0)) and rates[XNN] == ("fp32", pytest.approx(100.0))
    plan.macs["eager fp32"] = 2_000_000_000
    plan.baseline = {XNN: ("eager fp32", "onnxruntime fp32", "onnxruntime fp32")}
    rates["eager fp32"] = ("fp32", 100.0)
    entries = {XNN: SimpleNamespace(coreml=None), INT8: SimpleNamespace(coreml=None), CML: SimpleNamespace(coreml=1)}
    same = {"torch": 2, "executorch": 2}
    assert set(_on_the_cpu(rates, plan, entries, same)) == {"eager fp32", "onnxruntime fp32", XNN, INT8}  # type: ignore[arg-type]
    # eager torch on more threads than the peak counts says nothing of one core's clock
    assert "eager fp32" not in _on_the_cpu(rates, plan, entries, {"torch": 4, "executorch": 2})  # type: ignore[arg-type]


def test_profile_splits_each_engine_into_kinds_of_work(benched):
    """bench --profile: every XNNPACK file through ETDump + Inspector, ONNX Runtime through its
    profiler, the same kinds of work; a table printed and saved, and a chart."""
    out, _, proc = benched
    prof = json.loads((out / "profile.json").read_text())
    assert set(prof["engines"]) == {XNN, INT8, "onnxruntime fp32", "onnxruntime int8"}  # Core ML: no op events
    for name, p in prof["engines"].items():
        assert p["total_ms"] > 0 and p["kinds"]["convolution"] > 0, name
        assert sum(v for k, v in p["kinds"].items()) <= p["total_ms"] * 1.05, name  # parts of the traced whole
        assert p["top"][0]["ms"] == max(o["ms"] for o in p["top"])
    assert any(o["op"].startswith("Convolution (NHWC, F32)") for o in prof["engines"][XNN]["top"])
    assert any(o["op"].startswith("Convolution (NHWC, QC8)") for o in prof["engines"][INT8]["top"])
    # ONNX Runtime's 1x1 convolutions (the classifier) count as GEMMs, as XNNPACK's do
    assert prof["engines"]["onnxruntime fp32"]["kinds"]["1x1 / GEMM"] > 0
    assert "convolution" in proc.stdout and "slowest ops" in proc.stdout
    png = cv2.imread(str(out / "profile.png"))
    assert png is not None and png.shape[0] > 100
    import jsonschema  # its JSON Schema, written beside it, describes it

    jsonschema.validate(prof, json.loads((out / "profile.schema.json").read_text()))


def test_card_from_manifest_bench_and_overlays(benched, tmp_path):
    src, bench, _ = benched
    out = tmp_path / "a"
    shutil.copytree(src, out)
    proc = run_cli("card", "--manifest", str(out / "manifest.json"))
    assert proc.returncode == 0, proc.stderr
    text = (out / "README.md").read_text()
    _, front, body = text.split("---\n", 2)
    meta = yaml.safe_load(front)
    assert meta["library_name"] == "executorch" and meta["pipeline_tag"] == "image-segmentation"
    assert meta["license"] and "react-native-executorch" in meta["tags"]
    manifest = read_manifest(out / "manifest.json")
    for name, e in manifest.artifacts.items():
        assert e.sha256[:16] in body and f"{e.backend}/{name}" in body
    assert f"{bench['engines'][XNN]['median_ms']:.1f}" in body  # measured, not copied from elsewhere
    assert "| emulated |" in body and "| executed |" in body
    acc = manifest.artifacts["tiny_segnet_xnnpack_int8.pte"].accuracy
    q = acc.worst
    assert f"argmax agreement {q.argmax_agreement * 100:.1f}%, mIoU {q.miou:.3f}" in body
    # the photos' pooled agreement (equal-sized photos: their mean), from the manifest's per-photo numbers
    each = [v.argmax_agreement for v in acc.per_image.values()]
    assert len(each) >= 2
    assert f"argmax agreement {sum(each) / len(each) * 100:.1f}% of all their pixels" in body
    assert "useImageSegmentation" in body and "TINY_SEGNET" in body and "random(seed=0)" in body
    assert body.lstrip().split("\n\n")[1].startswith("> **Not a usable model: these files carry seeded random weights")
    pngs = sorted((out / "overlays").glob("*.png"))
    assert len(pngs) == 3
    for p in pngs:
        assert f"(overlays/{p.name})" in body and cv2.imread(str(p)) is not None
    # the publish command ships the card and its overlays with the artifacts
    shipped = {f.path_in_repo for f in local_files(out / "manifest.json", manifest)}
    assert {"README.md", "profile.png", *(f"overlays/{p.name}" for p in pngs)} <= shipped
    assert "## Where the time goes" in body and "![time per kind of work](profile.png)" in body
    assert f"## Host benchmark: {bench['host']['cpu']}" in body
    floor = bench["host"]["peak"]["clock_source"].startswith("measured floor")
    assert ("The clock is a floor, so each share of peak is at most what is shown." in body) == floor


def test_card_shows_another_hosts_bench_beside_this_ones(benched, tmp_path):
    """The release's macOS job adds bench-macos-arm64.json (bench --out): a second section, titled
    by its chip, beside this host's."""
    src, bench, _ = benched
    out = tmp_path / "a"
    shutil.copytree(src, out)
    arm = {
        **bench,
        "host": {**bench["host"], "cpu": "Apple M1 (Virtual)", "machine": "arm64", "isa": ["asimd", "asimddp"]},
    }
    arm["engines"] = {k: {**v, "median_ms": 12345.6} for k, v in bench["engines"].items()}
    (out / "bench-macos-arm64.json").write_text(json.dumps(arm))
    assert run_cli("card", "--manifest", str(out / "manifest.json"), "--no-overlays").returncode == 0
    body = (out / "README.md").read_text()
    assert body.index(f"## Host benchmark: {bench['host']['cpu']}") < body.index(
        "## Host benchmark: Apple M1 (Virtual) (macos-arm64)"
    )
    assert "| 12345.6 |" in body and "asimd, asimddp" in body
    assert body.count("| GMAC | GMAC/s | % of peak |") == 2 and "MAC per cycle per core" in body


def test_card_without_bench_says_so():
    manifest = manifest_from_dict({"schema": 4, "artifacts": {XNN: _entry()}}, "test")
    body = render_card(manifest, None, [])
    assert "no benchmark was run" in body and "not measured" in body and "Host benchmark" not in body


def _entry() -> dict:
    return sample_entry(XNN)
