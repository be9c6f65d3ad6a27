"""react-native-executorch 0.10's own load-time check (its compiled JavaScript, run by node) on the
files this toolchain builds and on hand-written descriptions it must refuse."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess

import pytest
from support import ROOT, TINY

from export.config_file import load_config
from export.convert import pipeline
from export.errors import ExportError, GateError
from export.files import TMP_PREFIX
from export.rne import rne_schema
from export.rne.rne_schema import SCRIPT, check_pte, default_rne, program_spec, schema_release, validate_spec

RNE = "0.10.2"


def const(*sizes: int) -> list[dict]:
    return [{"kind": "constant", "value": s} for s in sizes]


def tensor(dtype: str, shape: list[dict]) -> dict:
    return {"kind": "Tensor", "dtype": dtype, "shape": shape}


# What the native loader reads from a good file's MethodMeta: [f32(1,3,H,W)] -> [f32(1,K,H,W)].
GOOD = {
    "forward": {
        "inputs": [tensor("float32", const(1, 3, 32, 32))],
        "outputs": [tensor("float32", const(1, 21, 32, 32))],
        "runtimeConstraints": [],
    }
}


def test_the_table_checks_schemas_with_the_release_it_type_checks():
    assert default_rne() == RNE
    pins = json.loads((ROOT / "scripts" / "ts" / "package.json").read_text())["devDependencies"]
    assert pins[f"rne-{RNE}"] == f"npm:react-native-executorch@{RNE}"


def test_a_good_description_passes_batched_and_unbatched():
    assert validate_spec(GOOD, 21, RNE) == [1, 21, 32, 32]
    unbatched = {"forward": {**GOOD["forward"], "inputs": [tensor("float32", const(3, 32, 32))]}}
    unbatched["forward"]["outputs"] = [tensor("float32", const(21, 32, 32))]
    assert validate_spec(unbatched, 21, RNE) == [21, 32, 32]


def _bad(change) -> dict:
    spec = copy.deepcopy(GOOD)
    change(spec["forward"])
    return spec


@pytest.mark.parametrize(
    "spec,labels,rule",
    [
        # torchvision's aux head left in: a second output
        (_bad(lambda m: m["outputs"].append(tensor("float32", const(1, 21, 32, 32)))), 21, "Output count mismatch"),
        # a dynamic H (as a get_model_schema JSON would declare it): the task needs static H/W
        (
            _bad(
                lambda m: m["inputs"][0]["shape"].__setitem__(
                    2, {"kind": "range", "range": {"min": 8, "max": 64, "step": 1}}
                )
            ),
            21,
            "input #0 Tensor dim #2: Cannot match symbolic 'static' with concrete 'range'",
        ),
        # int64 logits (or an argmax map): the task reads float32
        (_bad(lambda m: m["outputs"][0].__setitem__("dtype", "int64")), 21, "output #0: DType mismatch"),
        (_bad(lambda m: m["inputs"][0].__setitem__("dtype", "uint8")), 21, "input #0: DType mismatch"),
        # H and W of the output differ from the input's
        (
            _bad(lambda m: m["outputs"][0]["shape"].__setitem__(3, const(16)[0])),
            21,
            "Symbol 'W' has inconsistent bindings",
        ),
        # two input tensors
        (_bad(lambda m: m["inputs"].append(tensor("float32", const(1)))), 21, "Input count mismatch"),
        # K = 21 classes, 20 labels
        (GOOD, 20, "labels: Model outputs 21 classes, but 20 labels were provided"),
    ],
    ids=["aux-second-output", "dynamic-dim", "int64-output", "uint8-input", "output-size", "two-inputs", "K-vs-labels"],
)
def test_the_package_refuses_bad_descriptions_naming_the_rule(spec, labels, rule):
    with pytest.raises(
        GateError, match="rne-schema: spec: react-native-executorch 0.10.2's useSemanticSegmenter refuses it"
    ) as e:
        validate_spec(spec, labels, RNE)
    assert rule in str(e.value), str(e.value)


def test_the_script_reports_usage_errors(tmp_path):
    proc = subprocess.run(
        ["node", str(rne_schema.checker_dir() / SCRIPT), "--rne", "0.0.0"], input="{}", capture_output=True, text=True
    )
    assert proc.returncode == 2 and "cannot load react-native-executorch 0.0.0" in proc.stderr


def test_the_tiny_builds_files_pass_the_packages_check(tiny_build):
    """The fast tier's real files (fp32 and int8 XNNPACK, Core ML fp16), read back with MethodMeta."""
    for name in ("tiny_segnet_xnnpack_fp32.pte", "tiny_segnet_xnnpack_int8.pte", "tiny_segnet_coreml_fp16.pte"):
        assert program_spec(tiny_build / name) == GOOD, name
        assert check_pte(tiny_build / name, 21, RNE) == [1, 21, 32, 32]
    with pytest.raises(GateError, match="tiny_segnet_xnnpack_fp32.pte: .*labels: Model outputs 21 classes, but 5"):
        check_pte(tiny_build / "tiny_segnet_xnnpack_fp32.pte", 5, RNE)


def _program(path, module, example, constant_methods=None):
    import torch
    from executorch.exir import to_edge_transform_and_lower

    ep = torch.export.export(module.eval(), example)
    path.write_bytes(to_edge_transform_and_lower(ep, constant_methods=constant_methods).to_executorch().buffer)
    return path


def test_a_file_with_the_aux_head_and_one_with_a_declared_dynamic_size_are_refused(tmp_path):
    """Real programs: a second (aux) output read from MethodMeta, and a get_model_schema JSON that
    declares a dynamic H, which RNE's loader puts in place of the MethodMeta description."""
    import torch
    from torch import nn

    class TwoHeads(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 21, 1)

        def forward(self, x):
            y = self.conv(x)
            return y, y * 2

    x = (torch.zeros(1, 3, 8, 8),)
    with pytest.raises(GateError, match="aux.pte: .*Output count mismatch"):
        check_pte(_program(tmp_path / "aux.pte", TwoHeads(), x), 21, RNE)

    dynamic = copy.deepcopy(GOOD)
    dynamic["forward"]["inputs"][0]["shape"] = const(1, 3) + [
        {"kind": "range", "range": {"min": 8, "max": 64, "step": 1}},
        const(8)[0],
    ]
    dynamic["forward"]["outputs"][0]["shape"] = const(1, 21, 8, 8)
    pte = _program(tmp_path / "dyn.pte", nn.Conv2d(3, 21, 1), x, {"get_model_schema": json.dumps(dynamic)})
    assert program_spec(pte) == dynamic
    with pytest.raises(GateError, match="dyn.pte: .*Cannot match symbolic 'static' with concrete 'range'"):
        check_pte(pte, 21, RNE)
    plain = _program(tmp_path / "plain.pte", nn.Conv2d(3, 21, 1), x)
    assert check_pte(plain, 21, RNE) == [1, 21, 8, 8]


# --- the export gate: every file a schema-checking line serves passes the package's check -------


def test_the_gate_checks_every_contract_the_010_line_serves():
    assert schema_release("rne-0.5") == schema_release("rne-0.9") == RNE
    assert schema_release("rne-0.5", min_rne="0.10.0") == RNE
    assert schema_release("rne-0.5", min_rne="0.11.0") is None  # claims no release the line covers


def test_every_tiny_build_entry_records_the_packages_check(tiny_builds):
    for out in tiny_builds.values():
        manifest = json.loads((out / "manifest.json").read_text())
        assert len(manifest["artifacts"]) == 3
        for name, entry in manifest["artifacts"].items():
            assert entry["rne_schema"] == {"package": f"react-native-executorch@{RNE}", "passed": True}, name


def _files(out):
    return {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}


@pytest.mark.parametrize(
    "change,rule",
    [
        # K = 20 in the file, 21 labels in the config (what a wrong num_classes would give)
        (lambda m: m["outputs"][0]["shape"].__setitem__(1, const(20)[0]), "labels: Model outputs 20 classes, but 21"),
        # torchvision's aux head left in
        (lambda m: m["outputs"].append(copy.deepcopy(m["outputs"][0])), "Output count mismatch"),
    ],
    ids=["K-vs-labels", "aux-output"],
)
def test_a_file_the_package_refuses_fails_the_export_and_nothing_is_committed(
    tiny_build, tmp_path, monkeypatch, change, rule
):
    out = tmp_path / "out"
    shutil.copytree(tiny_build, out)  # a good previous export: the failed one must leave it as it was
    before = _files(out)
    real = rne_schema.program_spec

    def refused(pte, method="forward", name=None):
        spec = real(pte, method, name)
        change(spec[method])
        return spec

    monkeypatch.setattr(rne_schema, "program_spec", refused)
    with pytest.raises(
        GateError,
        match=f"rne-schema: tiny_segnet_xnnpack_fp32.pte: react-native-executorch {RNE}'s useSemanticSegmenter refuses",
    ) as e:
        pipeline.build(load_config(TINY), ["xnnpack_fp32"], "random", out, force=True)
    assert rule in str(e.value), str(e.value)
    after = _files(out)
    assert not [n for n in after if n.startswith(TMP_PREFIX)], "temp files left behind"
    assert after == before


def test_without_node_or_the_package_the_export_fails_before_any_work_naming_the_fix(tmp_path, monkeypatch):
    cfg = load_config(TINY)
    real_which = shutil.which
    monkeypatch.setattr(shutil, "which", lambda cmd, *a, **k: None if cmd == "node" else real_which(cmd, *a, **k))
    with pytest.raises(ExportError, match=r"node is not on PATH.*install Node.js"):
        pipeline.build(cfg, ["xnnpack_fp32"], "random", tmp_path / "a")
    monkeypatch.undo()
    # a cache without the checker, and no npm to set it up: refused naming the fix, never skipped
    monkeypatch.setenv("RNE_EXPORT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(shutil, "which", lambda cmd, *a, **k: None if cmd == "npm" else real_which(cmd, *a, **k))
    with pytest.raises(ExportError, match=r"npm not on PATH.*install Node.js \(>= 18\) with npm"):
        pipeline.build(cfg, ["xnnpack_fp32"], "random", tmp_path / "b")
    with pytest.raises(ExportError, match="npm not on PATH"):
        validate_spec(GOOD, 21, RNE)
    assert not list((tmp_path / "a").iterdir()) and not list((tmp_path / "b").iterdir())  # nothing built
    assert not (tmp_path / "cache" / "ts").exists() or not any((tmp_path / "cache" / "ts").iterdir())
    monkeypatch.undo()
    # a release the checker does not pin: named, with the line to add
    with pytest.raises(ExportError, match=r"react-native-executorch 0\.99\.0 is not among the checker's packages"):
        validate_spec(GOOD, 21, "0.99.0")
