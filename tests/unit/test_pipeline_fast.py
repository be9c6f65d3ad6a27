"""Fast tier: the tiny segmentation net through every stage, and every gate shown failing."""

from __future__ import annotations

import contextlib
import copy
import json
import re
import shutil

import pytest
import torch
from support import TINY, WEIGHT_KINDS, core_ml_runs, write_yaml

from export.config import Tolerances
from export.config_file import load_config
from export.convert import lower as lowering
from export.convert import pipeline
from export.convert.pte import delegate_ids
from export.convert.verify import gate_bounds
from export.errors import ExportError, GateError
from export.files import TMP_PREFIX, sha256_file
from export.metrics import compare, worst_of
from export.provenance import TOOL_PACKAGES
from export.records import check
from export.sources.models import MODELS, ModelBuilder, TinySegNet


@pytest.fixture(params=WEIGHT_KINDS)
def kind(request):
    return request.param


@pytest.fixture
def weights(kind, tiny_weights):
    return tiny_weights[kind]


@pytest.fixture
def prev(tiny_builds, kind, tmp_path):
    """A copy of a good previous export (per weight kind) to prove failures leave it intact."""
    out = tmp_path / "out"
    shutil.copytree(tiny_builds[kind], out)
    return out, {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}


def _unchanged(out, before):
    after = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    assert not [n for n in after if n.startswith(TMP_PREFIX)], "temp files left behind"
    assert after == before


def test_build_writes_verified_artifacts_and_manifest(tiny_builds, kind):
    out = tiny_builds[kind]
    manifest = json.loads((out / "manifest.json").read_text())
    assert sorted(manifest["artifacts"]) == [
        "tiny_segnet_coreml_fp16.pte",
        "tiny_segnet_xnnpack_fp32.pte",
        "tiny_segnet_xnnpack_int8.pte",
    ]
    for name, entry in manifest["artifacts"].items():
        bundle = entry["bundle"]
        assert bundle["path"] == name.replace(".pte", ".bpte") and bundle["cases"] == 2
        assert bundle["sha256"] == sha256_file(out / bundle["path"]) and len(entry["cache_key"]) == 64
        assert entry["sha256"] == sha256_file(out / name)
        assert entry["bytes"] == (out / name).stat().st_size
        assert entry["delegation"]["non_delegated_compute_nodes"] == 0
        assert entry["delegation"]["delegated_nodes"] > 0
        assert entry["contract"]["name"] == "rne-0.5"
        assert entry["input"] == {
            "shape": [1, 3, 32, 32],
            "dtype": "float32",
            "layout": "NCHW RGB",
            "range": [0.0, 1.0],
        }
        assert entry["output"]["shape"] == [1, 21, 32, 32] and entry["output"]["index"] == 0
        if kind == "random":
            assert entry["weights"] == {"kind": "random", "identity": "random(seed=0)"}
        else:
            assert entry["weights"]["kind"] == "path" and entry["weights"]["identity"].startswith(
                "file tiny_realistic.pth (sha256 "
            )
        assert set(entry["versions"]) == {"python", *TOOL_PACKAGES}
        assert {"torch", "executorch", "torchao", "scikit-image", "opencv-python-headless"} <= set(TOOL_PACKAGES)
        assert entry["platform"]
        assert len(entry["config"]["sha256"]) == 64 and entry["export_seconds"] > 0
        assert entry["parity"]["inputs"] == ["photo:astronaut", "photo:chelsea", "random:0:0", "random:0:1"]
    xnn = manifest["artifacts"]["tiny_segnet_xnnpack_fp32.pte"]
    assert xnn["parity"]["mode"] == "executed" and xnn["parity"]["worst"]["decisive_agreement"] >= 0.999
    # the realistic fixture has a trained net's logit scale; random init does not
    assert (xnn["parity"]["worst"]["ref_range"] > 10) == (kind == "realistic")
    assert xnn["bundle"]["verified"] == "executed" and xnn["accuracy"] is None
    q = manifest["artifacts"]["tiny_segnet_xnnpack_int8.pte"]
    assert q["precision"] == "int8" and q["parity"]["mode"] == "executed"
    assert q["accuracy"]["reference"] == "eager fp32"
    assert q["accuracy"]["bounds"] == "release"  # the gated metrics mean the same for any weights
    assert q["accuracy"]["images"] == ["photo:astronaut", "photo:chelsea"]
    assert not set(q["accuracy"]["calibration"]) & {"astronaut", "chelsea"} and len(q["accuracy"]["calibration"]) == 2
    assert q["accuracy"]["latency_ratio_to_fp32"]["fp32_artifact"] == "tiny_segnet_xnnpack_fp32.pte"
    assert q["accuracy"]["latency_ratio_to_fp32"]["ratio"] > 0
    assert q["delegation"]["non_delegated_compute_nodes"] == 0
    assert delegate_ids((out / "tiny_segnet_xnnpack_fp32.pte").read_bytes()) == ["XnnpackBackend"]
    cml = manifest["artifacts"]["tiny_segnet_coreml_fp16.pte"]
    assert delegate_ids((out / "tiny_segnet_coreml_fp16.pte").read_bytes()) == ["CoreMLBackend"]
    # Core ML cannot run on Linux: the numbers must say they were emulated, not executed (macOS: executed)
    assert cml["parity"]["mode"] == ("executed" if core_ml_runs() else "emulated")
    assert cml["coreml"] == {"deployment_target": "iOS17", "compute_units": "ALL", "lower_full_graph": False}
    assert cml["bundle"]["verified"] == "executed" or not core_ml_runs()
    assert cml["bundle"]["verified"].startswith("not run here: CoreMLBackend") or core_ml_runs()
    assert cml["fp16_drift_vs_fp32"]["reference"] == "eager fp32"
    assert cml["fp16_drift_vs_fp32"]["snr_db"] == cml["parity"]["worst"]["snr_db"] and xnn["fp16_drift_vs_fp32"] is None


def test_stage_seconds_are_the_named_stages_in_order(tiny_builds, kind):
    """The manifest's stage_seconds keys are export/convert/stages.py's names, in its order; a name
    outside the list is refused, naming the valid ones."""
    from export.convert.stages import STAGES, stage

    order = list(STAGES)
    out = tiny_builds[kind]
    for name, entry in json.loads((out / "manifest.json").read_text())["artifacts"].items():
        keys = list(entry["stage_seconds"])
        want = ["load", "wrap", *(["rewrite"] if entry["backend"] == "xnnpack" else []), "export"]
        want += [*(["quantize"] if entry["precision"] == "int8" else []), "lower", "serialize", "verify", "bundle"]
        assert keys == want and keys == sorted(keys, key=order.index), (name, keys)
    with pytest.raises(KeyError, match="unknown stage 'torch.export'; stages: load, wrap, rewrite, export"):
        with stage(pipeline.Timer("v"), "torch.export"):
            pass


def test_aux_head_not_shipped():
    cfg = load_config(TINY)
    from export.convert.wrap import wrap
    from export.sources import load_model

    model = wrap(load_model(cfg, "random").module, cfg, cfg.variants[0])
    assert not [k for k in model.state_dict() if "aux" in k]
    out = model(torch.rand(1, 3, 32, 32))
    assert isinstance(out, torch.Tensor) and out.shape == (1, 21, 32, 32)


@pytest.mark.parametrize("variant", ["xnnpack_fp32", "xnnpack_int8"])
def test_parity_gate_fails_on_perturbed_artifact(prev, weights, monkeypatch, variant):
    """The final conv's weights (21 output channels) nudged by 5 % of their own spread in the file
    only: the same relative change on either weight kind, and the relative bounds catch it on both.
    After int8 quantization the graph reads the folded int8 copy (a buffer), not the fp32
    parameter, so that copy is the one nudged, in whole int8 steps."""
    out, before = prev
    real_lower = lowering.lower

    def lower_perturbed(program, variant, seed):
        gm = copy.deepcopy(program.module())  # the unlifted module shares tensors with eager
        gen = torch.Generator().manual_seed(0)
        used = {n.target for n in gm.graph.nodes if n.op == "get_attr"} | {k for k, _ in gm.named_parameters()}
        nudged = []
        with torch.no_grad():
            for name, t in [*gm.named_parameters(), *gm.named_buffers()]:
                if t.dim() == 4 and t.shape[0] == 21 and name in used:
                    noise = 0.05 * t.float().std() * torch.randn(t.shape, generator=gen)
                    if t.dtype == torch.int8:
                        t.copy_((t.float() + noise).round().clamp(-127, 127).to(torch.int8))
                    else:
                        t.add_(noise)
                    nudged.append((name, t.dtype))
        assert any(d == (torch.int8 if variant.precision == "int8" else torch.float32) for _, d in nudged), nudged
        return real_lower(torch.export.export(gm, program.example_inputs[0]), variant, seed)

    monkeypatch.setattr(lowering, "lower", lower_perturbed)
    with pytest.raises(GateError) as e:
        pipeline.build(load_config(TINY), [variant], weights, out, force=True)
    msg = str(e.value)
    assert f"parity gate (executed): tiny_segnet_{variant}.pte" in msg
    assert "snr_db=" in msg and "(bound >= " in msg  # the failing metric, its value and its bound
    _unchanged(out, before)  # previous artifact and manifest intact, no temp file


class CumsumSegNet(TinySegNet):
    """XNNPACK has no cumsum kernel: this op stays on the portable CPU path."""

    def forward(self, x):
        out = super().forward(x)
        return {"out": out["out"] + torch.cumsum(out["out"], dim=1) * 1e-3}


@pytest.fixture
def cumsum_model():
    MODELS.register("tiny_cumsum", ModelBuilder(lambda n, aux: CumsumSegNet(n, aux)))
    yield
    MODELS.unregister("tiny_cumsum")


def test_delegation_gate_fails_on_op_backend_cannot_take(cumsum_model, prev, weights, tiny_yaml_text, tmp_path):
    out, before = prev
    cfg_path = write_yaml(
        tmp_path / "tiny_segnet.yaml", tiny_yaml_text.replace("builder: tiny_segnet", "builder: tiny_cumsum")
    )
    with pytest.raises(GateError) as e:
        pipeline.build(load_config(cfg_path), ["xnnpack_fp32"], weights, out)
    assert (
        "delegation gate: tiny_segnet_xnnpack_fp32.pte: 1 compute op(s) not delegated to xnnpack: aten.cumsum.default x1"
        in str(e.value)
    )
    _unchanged(out, before)
    # the config can allow it explicitly; then the gate passes and the count is recorded
    allowed = tiny_yaml_text.replace("builder: tiny_segnet", "builder: tiny_cumsum").replace(
        "precision: fp32\n", "precision: fp32\n    allow_non_delegated: [aten.cumsum.default]\n"
    )
    res = pipeline.build(
        load_config(write_yaml(tmp_path / "tiny_segnet.yaml", allowed)), ["xnnpack_fp32"], weights, out
    )
    assert res[0].entry.delegation.non_delegated_ops == {"aten.cumsum.default": 1}


@pytest.mark.parametrize("kind", ["random"])
def test_interrupt_mid_serialize_keeps_previous_artifact(prev, monkeypatch):
    out, before = prev

    serialize = lowering.serialize

    def interrupted(edge, path):
        serialize(edge, path)  # the bytes are in the temp file ...
        raise KeyboardInterrupt  # ... when Ctrl-C arrives, before the rename

    monkeypatch.setattr(lowering, "serialize", interrupted)  # the stages import it where they run
    with pytest.raises(KeyboardInterrupt):
        pipeline.build(load_config(TINY), ["xnnpack_fp32"], "random", out, force=True)
    _unchanged(out, before)


def test_rebuild_replaces_artifact_and_keeps_other_entries(prev, weights, capsys):
    out, before = prev
    old = json.loads(before["manifest.json"])["artifacts"]
    pipeline.build(load_config(TINY), ["xnnpack_fp32"], weights, out, force=True)
    err = capsys.readouterr().err
    # rebuilt, not skipped: its stages ran, and its entry is new
    assert "[xnnpack_fp32] lower (xnnpack)" in err and "up to date" not in err
    manifest = json.loads((out / "manifest.json").read_text())["artifacts"]
    assert (
        manifest["tiny_segnet_xnnpack_fp32.pte"]["stage_seconds"]
        != old["tiny_segnet_xnnpack_fp32.pte"]["stage_seconds"]
    )
    # the same inputs give the same bytes; the other entries are untouched
    assert (out / "tiny_segnet_xnnpack_fp32.pte").read_bytes() == before["tiny_segnet_xnnpack_fp32.pte"]
    assert {n: e for n, e in manifest.items() if n != "tiny_segnet_xnnpack_fp32.pte"} == {
        n: e for n, e in old.items() if n != "tiny_segnet_xnnpack_fp32.pte"
    }


@pytest.mark.parametrize("kind", ["random"])
def test_build_over_a_damaged_manifest_sets_the_old_files_aside_and_says_so_once(prev, capsys):
    """The old manifest cannot vouch for its files any more: the build starts it afresh, moves the
    files it described into unverified-<time>/ (nothing deleted, nothing left undescribed) and says
    so in one note."""
    out, before = prev
    (out / "manifest.json").write_text("[]")
    pipeline.build(load_config(TINY), ["xnnpack_fp32"], "random", out)
    err = capsys.readouterr().err
    notes = [ln for ln in err.splitlines() if ln.startswith("note: ")]
    assert len(notes) == 1 and "a JSON list" in notes[0] and "moved 6 file(s)" in notes[0], notes
    [aside] = out.glob("unverified-*")
    assert sorted(p.name for p in aside.iterdir()) == sorted(n for n in before if n.endswith(("pte", "bpte")))
    described = json.loads((out / "manifest.json").read_text())["artifacts"]
    assert list(described) == ["tiny_segnet_xnnpack_fp32.pte"]
    on_disk = sorted(p.name for p in out.iterdir() if p.suffix in (".pte", ".bpte"))
    assert on_disk == ["tiny_segnet_xnnpack_fp32.bpte", "tiny_segnet_xnnpack_fp32.pte"]


@pytest.mark.parametrize("scale", [0.3, 30.0])
def test_metrics_are_scale_invariant_and_gate_names_metric_value_bound(scale):
    """The same relative error gives the same verdict at random-init scale and at trained scale."""
    gen = torch.Generator().manual_seed(0)
    ref = torch.randn(1, 4, 8, 8, generator=gen) * scale
    got = ref + 0.01 * scale * torch.randn(ref.shape, generator=gen)
    m = compare(ref, got)
    assert (
        0.002 < m.rel_max_abs < 0.02 and 30 < m.snr_db < 45 and m.max_abs == pytest.approx(m.rel_max_abs * m.ref_range)
    )
    same = compare(ref / scale, got / scale)
    assert same.rel_max_abs == pytest.approx(m.rel_max_abs) and same.snr_db == pytest.approx(m.snr_db)
    assert same.decisive_agreement == m.decisive_agreement and same.decisive_fraction == m.decisive_fraction
    tol = Tolerances(max_rel_err=0.001, min_snr_db=50.0, min_cosine=0.0, min_decisive_agreement=0.9)
    failed = "; ".join(check(m.as_dict(), gate_bounds(tol)))  # what verify's parity gate says after its prefix
    assert re.fullmatch(r"rel_max_abs=0\.0\d+ \(bound <= 0\.001\); snr_db=\d+\.?\d* \(bound >= 50\)", failed), failed


def test_near_ties_do_not_count_and_decisive_flips_do():
    ref = torch.zeros(1, 3, 1, 4)
    ref[0, 0] = torch.tensor([10.0, 10.0, 10.0, 10.0])
    ref[0, 1] = torch.tensor([9.99, 0.0, 0.0, 0.0])  # pixel 0: a near-tie (margin 0.01 of range 10)
    got = ref.clone()
    got[0, 1, 0, 0] = 10.01  # the near-tie flips: not counted against the file
    m = compare(ref, got)
    assert m.argmax_agreement == 0.75 and m.decisive_agreement == 1.0 and m.decisive_fraction == 0.75
    got[0, 2, 0, 1] = 11.0  # a decisive pixel flips: counted
    assert compare(ref, got).decisive_agreement == pytest.approx(2 / 3)
    assert worst_of([m, compare(ref, got)]).decisive_agreement == pytest.approx(2 / 3)


@pytest.mark.parametrize("kind", ["random"])
def test_unchanged_variants_are_up_to_date_and_changes_rebuild(prev, monkeypatch, tiny_yaml_text, tmp_path):
    out, before = prev
    calls = []
    real_lower = lowering.lower
    monkeypatch.setattr(lowering, "lower", lambda *a, **k: calls.append(a[1].name) or real_lower(*a, **k))
    res = pipeline.build(load_config(TINY), None, "random", out)
    assert calls == [] and all(r.up_to_date for r in res)
    _unchanged(out, before)
    # a tampered file is not "up to date"
    (out / "tiny_segnet_xnnpack_fp32.bpte").write_bytes(b"x")
    pipeline.build(load_config(TINY), None, "random", out)
    assert calls == ["xnnpack_fp32"]
    # a changed config (here a tolerance of one variant) rebuilds that variant only
    changed = write_yaml(
        tmp_path / "tiny_segnet.yaml", tiny_yaml_text.replace("min_snr_db: 50.0,", "min_snr_db: 49.0,")
    )
    pipeline.build(load_config(changed), None, "random", out)
    assert calls == ["xnnpack_fp32", "coreml_fp16"]


def test_accuracy_gate_fails_on_broken_calibration(prev, kind, weights, tiny_yaml_text, tmp_path):
    """Calibrating on flat grey frames sets activation ranges that real photos overflow: the same
    bounds fail it on random weights and on the realistic fixture."""
    import numpy as np
    from PIL import Image

    out, before = prev
    grey = tmp_path / "grey"
    grey.mkdir()
    for i in range(2):
        Image.fromarray(np.full((64, 64, 3), 128 + i, np.uint8)).save(grey / f"{i}.png")
    text = tiny_yaml_text.replace("  count: 2", f"  folder: {grey}\n  count: 2")
    cfg = load_config(write_yaml(tmp_path / "tiny_segnet.yaml", text))
    with pytest.raises(
        GateError, match=r"accuracy gate \(release bounds\): tiny_segnet_xnnpack_int8.pte: centered_snr_db="
    ):
        pipeline.build(cfg, ["xnnpack_int8"], weights, out)
    _unchanged(out, before)
    # the same bounds pass with the photos the config normally calibrates on
    good = load_config(write_yaml(tmp_path / "tiny_segnet.yaml", text.replace(f"  folder: {grey}\n", "")))
    res = pipeline.build(good, ["xnnpack_int8"], weights, out)
    assert res[0].entry.accuracy.worst.centered_snr_db >= 24.0 and res[0].entry.accuracy.bounds == "release"


def test_bundled_verification_fails_on_wrong_expected_output(tiny_builds, kind, tmp_path):
    """An expected output off by 1 % of the logit range fails a bound of 0.01 % of it, at either scale."""
    from executorch.runtime import Runtime

    from export.convert.bundle import verify_bundle, write_bundle

    pte = tiny_builds[kind] / "tiny_segnet_xnnpack_fp32.pte"
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    y = Runtime.get().load_program(pte).load_method("forward").execute([x])[0].clone()
    scale = float(y.max() - y.min())
    write_bundle(pte, tmp_path / "ok.bpte", [(x, y)])
    verify_bundle(tmp_path / "ok.bpte", 1, atol=1e-4 * scale, rtol=0.0, artifact="ok.bpte")
    write_bundle(pte, tmp_path / "bad.bpte", [(x, y + 0.01 * scale)])
    with pytest.raises(GateError, match="bundled verification: bad.bpte: case 0 differs"):
        verify_bundle(tmp_path / "bad.bpte", 1, atol=1e-4 * scale, rtol=0.0, artifact="bad.bpte")


def test_coreml_options_reach_the_partitioner():
    import dataclasses

    import coremltools as ct

    from export.config import CoreMLOptions
    from export.convert.lower import PARTITIONERS

    cfg = load_config(TINY)
    v = dataclasses.replace(cfg.variant("coreml_fp16"), coreml=CoreMLOptions("iOS18", "CPU_ONLY", True))
    [p] = PARTITIONERS.get("coreml")(v)
    assert p.lower_full_graph is True
    specs = {s.key: s.value for s in p.delegation_spec.compile_specs}
    assert specs["compute_units"].decode() == ct.ComputeUnit.CPU_ONLY.name.lower()
    assert specs["min_deployment_target"].decode() == str(ct.target.iOS18.value)
    # the project's own error (one line for the CLI), naming the option, the value and what is valid
    with pytest.raises(ExportError, match=r"^unknown coreml\.deployment_target 'iOS99'; valid: .*\biOS18\b"):
        PARTITIONERS.get("coreml")(dataclasses.replace(v, coreml=CoreMLOptions("iOS99")))
    with pytest.raises(ExportError, match=r"^unknown coreml\.compute_units 'GPU_ONLY'; valid: .*\bCPU_ONLY\b"):
        PARTITIONERS.get("coreml")(dataclasses.replace(v, coreml=CoreMLOptions("iOS18", "GPU_ONLY")))


def test_static_contract_and_delegate_checks_fail_on_the_wrong_file(tiny_build):
    """The file's own I/O and delegate ids are checked against the variant before any run."""
    import dataclasses

    from export.config import InputSpec
    from export.convert.verify import check_program

    out = tiny_build
    cfg = load_config(TINY)
    pte = out / "tiny_segnet_xnnpack_fp32.pte"
    check_program(pte, cfg, cfg.variant("xnnpack_fp32"))  # the right file passes
    bigger = dataclasses.replace(cfg.variant("xnnpack_fp32"), input=InputSpec(64, 64))
    with pytest.raises(
        GateError,
        match=r"contract: tiny_segnet_xnnpack_fp32.pte: input 0 is \(1, 3, 32, 32\).*expected \(1, 3, 64, 64\)",
    ):
        check_program(pte, cfg, bigger)
    with pytest.raises(GateError, match=r"delegates in file are \['XnnpackBackend'\], expected only CoreMLBackend"):
        check_program(pte, cfg, cfg.variant("coreml_fp16"))


def test_manifest_is_typed_and_ships_its_json_schema(tiny_builds, tmp_path):
    """The schema beside the manifest is the one generated from the records, an independent
    validator accepts the manifest with it and rejects a broken one; old or broken manifests make
    readers say "re-export", and an export starts them afresh."""
    import jsonschema

    from export.store.manifest import SCHEMA_NAME, json_schema, read_manifest

    out = tiny_builds["random"]
    data = json.loads((out / "manifest.json").read_text())
    shipped = json.loads((out / SCHEMA_NAME).read_text())
    assert shipped == json_schema() and data["schema"] == 4
    jsonschema.validate(data, shipped)
    entry = data["artifacts"]["tiny_segnet_xnnpack_int8.pte"]
    for broken in (
        {k: v for k, v in entry.items() if k != "sha256"},  # a required key gone
        {**entry, "parity": {**entry["parity"], "mode": "guessed"}},  # not a parity mode
        {**entry, "surprise": 1},  # a key this schema does not know
        {**entry, "path": "../secret.txt"},  # a file outside the manifest's folder
        {**entry, "bundle": {**entry["bundle"], "path": "/etc/passwd"}},
    ):
        bad = {**data, "artifacts": {**data["artifacts"], "tiny_segnet_xnnpack_int8.pte": broken}}
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, shipped)
        (tmp_path / "manifest.json").write_text(json.dumps(bad))
        with pytest.raises(ExportError, match=r"tiny_segnet_xnnpack_int8.pte.*re-export"):
            read_manifest(tmp_path / "manifest.json")
    assert read_manifest(out / "manifest.json").artifacts["tiny_segnet_xnnpack_int8.pte"].accuracy.worst.miou > 0
    # and at write: a stage that built a wrong record is stopped before the manifest is touched
    import dataclasses

    from export.store.manifest import checked_entry

    good = read_manifest(out / "manifest.json").artifacts["tiny_segnet_xnnpack_int8.pte"]
    assert checked_entry(good, "x.pte") == good
    for wrong in ({"bytes": "12"}, {"path": "../x.pte"}, {"precision": "int4"}):
        with pytest.raises(ExportError, match=r"x.pte \(a bug in this tool: its record does not match"):
            checked_entry(dataclasses.replace(good, **wrong), "x.pte")
    (tmp_path / "manifest.json").write_text(json.dumps({**data, "schema": 2}))
    with pytest.raises(ExportError, match=r"schema 2, this tool reads schema 4; re-export"):
        read_manifest(tmp_path / "manifest.json")
    # an export over that old manifest: nothing counts as up to date, the new entry starts it afresh
    from export.store.manifest import write_entry

    stale = tmp_path / "manifest.json"
    from export.store.uptodate import up_to_date

    assert up_to_date(tmp_path, "tiny_segnet_xnnpack_int8.pte", entry["cache_key"]) is None
    write_entry(
        tmp_path,
        "tiny_segnet_xnnpack_int8.pte",
        read_manifest(out / "manifest.json").artifacts["tiny_segnet_xnnpack_int8.pte"],
    )
    assert list(read_manifest(stale).artifacts) == ["tiny_segnet_xnnpack_int8.pte"]


def test_calibration_problems_stop_the_build_before_any_work(tmp_path, tiny_yaml_text):
    """A missing calibration folder fails in step 1, naming file and key, before fp32 is built."""
    text = tiny_yaml_text.replace("  count: 2", f"  folder: {tmp_path / 'nowhere'}\n  count: 2")
    cfg = load_config(write_yaml(tmp_path / "tiny_segnet.yaml", text))
    out = tmp_path / "out"
    with pytest.raises(ExportError, match=r"tiny_segnet.yaml: calibration.folder .*nowhere is not a folder"):
        pipeline.build(cfg, None, "random", out)
    assert not list(out.iterdir())  # nothing built, nothing written


def test_manifest_that_is_a_folder_stops_the_build_before_any_work(tmp_path):
    out = tmp_path / "out"
    (out / "manifest.json").mkdir(parents=True)
    with pytest.raises(ExportError, match=r"manifest.json is not a file; move it away"):
        pipeline.build(load_config(TINY), None, "random", out)
    assert [p.name for p in out.iterdir()] == ["manifest.json"]  # nothing built


def test_fp16_overflow_names_the_layer_and_by_how_much(tmp_path):
    """Weights whose activations leave fp16's range: the Core ML fp16 gate says where and how far,
    instead of only 'snr_db=nan'."""
    model = TinySegNet(21)
    with torch.no_grad():
        model.backbone[0].weight.mul_(1e5)  # the first conv's output reaches ~1e5, over fp16's 65504
    ckpt = tmp_path / "hot.pth"
    torch.save(model.state_dict(), ckpt)
    with pytest.raises(
        GateError,
        match=r"fp16 output is not finite on photo:astronaut: activations overflow fp16 first at model\.backbone\.0 .*x fp16's largest value 65504",
    ):
        pipeline.build(load_config(TINY), ["coreml_fp16"], str(ckpt), tmp_path / "out")


def test_stage_lines_count_seconds_on_a_terminal_and_stay_plain_in_ci_logs(monkeypatch):
    """Long steps show their elapsed time while they run on a terminal; a log file gets exactly the
    start and the end line. No sleeping: the test is the clock (export.progress's time.perf_counter)
    and grants the ticker its seconds (its Event.wait(1.0)), so a busy machine cannot miss a tick."""
    import io
    import sys
    import threading
    import types

    from export import progress

    class Tty(io.StringIO):
        def isatty(self):
            return True

    now = [100.0]  # what progress.time.perf_counter() returns

    class Ticks:
        """The stage's `done` event. The ticker's first two wait(1.0) calls each move the clock one
        second on and report "not done"; its next one says so (`idle`) and blocks until the stage ends."""

        def __init__(self):
            self.ended, self.idle, self.granted, self.waits = threading.Event(), threading.Event(), 2, 0

        def set(self):
            self.ended.set()

        def wait(self, timeout=None):
            self.waits += 1
            if self.granted:
                self.granted -= 1
                now[0] += timeout
                return self.ended.is_set()
            self.idle.set()
            return self.ended.wait()

    events: list[Ticks] = []
    threads: list[threading.Thread] = []

    def event():
        events.append(Ticks())
        return events[-1]

    def thread(**kw):
        threads.append(threading.Thread(**kw))
        return threads[-1]

    monkeypatch.setattr(progress, "time", types.SimpleNamespace(perf_counter=lambda: now[0]))
    monkeypatch.setattr(progress, "threading", types.SimpleNamespace(Event=event, Thread=thread))
    head, up = "[v] lower (xnnpack)", "\r\x1b[1A\x1b[2K"  # up: back to the line above, cleared
    for stream, tty in ((io.StringIO(), False), (Tty(), True)):
        monkeypatch.setattr(sys, "stderr", stream)
        now[0], events[:], threads[:] = 100.0, [], []
        timer = pipeline.Timer("v")
        with timer.stage("lower", "xnnpack"):
            if threads:  # a sync with the ticker thread, not a timing: it has printed its two seconds
                assert events[-1].idle.wait(timeout=10), "the ticker never finished its granted ticks"
            now[0] = 102.4  # the stage ends 2.4 s after it started
        assert timer.seconds == {"lower": 2.4}
        if tty:  # the start line counts 1 s, 2 s, then becomes the result
            expected = f"{head} ...\n{up}{head} ... 1 s\n{up}{head} ... 2 s\n{up}{head} 2.4 s\n"
        else:  # a CI log: no ticker, exactly the start and the end line
            expected = f"{head} ...\n{head} 2.4 s\n"
        assert stream.getvalue() == expected
        assert (len(threads), events[-1].waits) == ((1, 3) if tty else (0, 0))


@pytest.mark.parametrize("kind", ["random"])
def test_the_bundle_gate_stops_a_build_and_keeps_the_old_files(prev, monkeypatch):
    """Expected outputs off by the logits' whole range: the runtime's bundled verification refuses
    the file inside the build, which stops before anything is replaced."""
    import export.convert.bundle as bundle

    out, before = prev
    write = bundle.write_bundle

    def off(pte, target, cases):
        write(pte, target, [(x, y + (y.max() - y.min())) for x, y in cases])

    monkeypatch.setattr(bundle, "write_bundle", off)  # the bundle stage imports it where it runs
    with pytest.raises(GateError, match=r"bundled verification: tiny_segnet_xnnpack_fp32.bpte: case 0 differs"):
        pipeline.build(load_config(TINY), ["xnnpack_fp32"], "random", out, force=True)
    _unchanged(out, before)


def test_a_bundles_expected_outputs_are_eager_pytorchs_and_its_atol_the_parity_bound(tiny_builds, kind, weights):
    """If the bundle stage bundled the file's own outputs, bundled verification could never fail:
    each expected output is eager PyTorch's on that input (bit for bit), not the file's, and the
    manifest's atol is the parity bound scaled by the expected logits' range."""
    from export.checks.compat import bundled_cases
    from export.convert.verify import executed
    from export.convert.wrap import wrap
    from export.sources import load_model

    out = tiny_builds[kind]
    cfg = load_config(TINY)
    variant = cfg.variant("xnnpack_fp32")
    entry = json.loads((out / "manifest.json").read_text())["artifacts"]["tiny_segnet_xnnpack_fp32.pte"]
    cases = bundled_cases(out / "tiny_segnet_xnnpack_fp32.bpte")
    assert len(cases) == entry["bundle"]["cases"] == 2
    eager = wrap(load_model(cfg, weights).module, cfg, variant)
    run = executed(out / "tiny_segnet_xnnpack_fp32.pte")
    with torch.no_grad():
        assert all(torch.equal(want, eager(x)) for x, want in cases)
    assert any(not torch.equal(want, run(x)) for x, want in cases)  # the file differs (summation order)
    atol = variant.tolerances.max_rel_err * max(float(y.max() - y.min()) for _, y in cases)
    assert entry["bundle"]["atol"] == pytest.approx(atol, rel=1e-12) and entry["bundle"]["rtol"] == 0.0


def test_the_fp16_emulation_matches_an_independent_half_precision_run(tiny_builds, kind, weights):
    """The Core ML fp16 file's emulated parity (Linux) against eager PyTorch in half precision on
    the same inputs: within 1 dB of SNR (measured: equal to 0.01 dB on both weight kinds, CPU half ops
    round each output as the emulation does). An emulation that rounded only the weights and the input
    (skipping every op's output) reads 4.1-4.5 dB cleaner than fp16 is, and this bound catches it."""
    from export.convert.feeds import parity_inputs
    from export.convert.lower import export_program
    from export.convert.verify import fp16_emulation
    from export.convert.wrap import example_input, wrap
    from export.sources import load_model

    cfg = load_config(TINY)
    variant = cfg.variant("coreml_fp16")
    module = wrap(load_model(cfg, weights).module, cfg, variant)
    inputs = parity_inputs(cfg, variant)
    half = copy.deepcopy(module).half()

    def worst(run) -> float:
        with torch.no_grad():
            return min(compare(run(x).float(), module(x), near_tie=0.02).snr_db for x in inputs.values())

    emulated = worst(fp16_emulation(export_program(module, example_input(variant))))
    independent = worst(lambda x: half(x.half()))
    recorded = json.loads((tiny_builds[kind] / "manifest.json").read_text())["artifacts"]["tiny_segnet_coreml_fp16.pte"]
    if not core_ml_runs():
        assert recorded["parity"]["worst"]["snr_db"] == pytest.approx(emulated, abs=0.5)
    assert abs(emulated - independent) <= 1.0, (emulated, independent)
    weak = copy.deepcopy(module)  # weights and input rounded, every op in fp32
    with torch.no_grad():
        for t in weak.parameters():
            t.copy_(t.half().float())
    assert abs(worst(lambda x: weak(x.half().float())) - independent) > 3.0


def test_lower_shares_provenance_and_the_files_are_the_same_bytes(tiny_builds, monkeypatch, tmp_path):
    """export.convert.lower.shared_provenance: inside it, a node a pass re-makes gets a new list of the
    same sources, not deep copies of the chain (the lowering time it saves: docs/performance.md);
    outside it, torch's deep copy is back. The tiny net's fp32 and int8 files lowered without it are
    byte for byte the shared build's, which was lowered with it."""
    from torch.fx.traceback import NodeSource

    node = next(iter(torch.fx.symbolic_trace(torch.nn.ReLU()).graph.nodes))
    node.meta["from_node"] = chain = [NodeSource(None, "an earlier pass")]
    with lowering.shared_provenance():
        inside = NodeSource(node, "a pass")
    outside = NodeSource(node, "a pass")
    assert inside.from_node == chain and inside.from_node is not chain and inside.from_node[0] is chain[0]
    assert len(outside.from_node) == 1 and outside.from_node[0] is not chain[0]

    monkeypatch.setattr(lowering, "shared_provenance", contextlib.nullcontext)
    pipeline.build(load_config(TINY), ["xnnpack_fp32", "xnnpack_int8"], "random", tmp_path)
    for name in ("tiny_segnet_xnnpack_fp32.pte", "tiny_segnet_xnnpack_int8.pte"):
        assert sha256_file(tmp_path / name) == sha256_file(tiny_builds["random"] / name), name
