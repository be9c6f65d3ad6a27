"""`verify-coreml` (issue 24): what can run on Linux. The refusal on a host without Core ML; the
manifest merge of a macOS proof and the failure path, with the Core ML execution stood in by the
fp16 emulation (what a Core ML fp16 run is compared against) or by broken outputs; publish then
takes the file without --skip-compat. The real execution: the release's macOS job."""

from __future__ import annotations

import pytest
import torch
from support import ROOT, TINY, core_ml_runs

from export import cli
from export.checks.coreml_proof import unexecuted_coreml, verify_coreml
from export.errors import GateError
from export.store.manifest import read_manifest

CML = "tiny_segnet_coreml_fp16.pte"


def _emulated_core_ml(pte):
    """A stand-in for the runtime executing the Core ML file: the fp16 emulation of its graph."""
    from export.config_file import load_config
    from export.convert.lower import export_program
    from export.convert.verify import fp16_emulation
    from export.convert.wrap import example_input, wrap
    from export.sources import load_model

    cfg = load_config(TINY)
    variant = cfg.variant("coreml_fp16")
    module = wrap(load_model(cfg, "random").module, cfg, variant)
    emulated = fp16_emulation(export_program(module, example_input(variant)))
    return lambda x: emulated(x)


def test_without_core_ml_it_refuses_in_one_line_and_changes_nothing(arts, capsys):
    """Linux: one line, exit 3. Where Core ML runs (macOS), the real command proves the file."""
    before = (arts / "manifest.json").read_bytes()
    argv = ["verify-coreml", "--manifest", str(arts / "manifest.json"), "--config", str(TINY)]
    if core_ml_runs():
        assert cli.main(argv) == 0
        assert read_manifest(arts / "manifest.json").artifacts[CML].parity.mode == "executed"
        return
    assert cli.main(argv) == 3
    err = capsys.readouterr().err
    [line] = [ln for ln in err.splitlines() if ln.startswith("error: ")]
    assert "CoreMLBackend is not in this host's ExecuTorch runtime (Linux" in line and "macOS" in line
    assert (arts / "manifest.json").read_bytes() == before


def test_a_macos_proof_is_merged_into_the_manifest_and_publish_then_takes_the_file(arts):
    before = read_manifest(arts / "manifest.json").artifacts
    assert unexecuted_coreml(before) == ([] if core_ml_runs() else [CML])
    bundles = []
    done = verify_coreml(
        arts / "manifest.json",
        None,
        TINY,
        ROOT / "configs",
        execute=_emulated_core_ml,
        check_bundle=lambda *a: bundles.append(a),
    )
    after = read_manifest(arts / "manifest.json").artifacts
    assert done == [CML] and unexecuted_coreml(after) == [] and len(bundles) == 1
    e = after[CML]
    assert e.parity.mode == "executed" and "compute units requested: ALL" in e.parity.why
    assert e.bundle.verified == "executed" and e.fp16_drift_vs_fp32.mode == "executed"
    assert e.parity.worst.decisive_agreement >= e.tolerances.min_decisive_agreement
    assert e.sha256 == before[CML].sha256  # the file itself is untouched
    assert {n: after[n] for n in after if n != CML} == {n: before[n] for n in before if n != CML}


def test_a_core_ml_file_that_does_not_match_fails_and_nothing_is_recorded(arts):
    before = (arts / "manifest.json").read_bytes()

    def broken(pte):
        run = _emulated_core_ml(pte)
        return lambda x: run(x) + torch.randn_like(run(x)) * 5  # what a wrong kernel would give

    with pytest.raises(GateError, match=r"parity gate \(executed\): tiny_segnet_coreml_fp16.pte"):
        verify_coreml(arts / "manifest.json", None, TINY, ROOT / "configs", broken, lambda *a: None)
    assert (arts / "manifest.json").read_bytes() == before


def _emulated_bundle_check(pte):
    """Bundled verification as ExecuTorch does it (|got - want| <= atol, each case), with the fp16
    emulation standing in for the Core ML runtime this host lacks."""
    from export.checks.compat import bundled_cases

    run = _emulated_core_ml(pte)

    def check(bpte, n, atol, artifact):
        cases = bundled_cases(bpte)
        assert len(cases) == n
        for i, (x, want) in enumerate(cases):
            worst = float((run(x) - want).abs().max())
            if worst > atol:
                raise GateError(f"bundled verification: {artifact}: case {i} differs by {worst:g} > atol={atol:g}")

    return check


def _rewrite_bundle(arts, change):
    """The .bpte written again with each expected output changed, the manifest updated to match (as a
    build that bundled wrong outputs would leave it): only the bundle check can tell."""
    import json

    from export.checks.compat import bundled_cases
    from export.convert.bundle import write_bundle
    from export.files import sha256_file

    bpte = arts / CML.replace(".pte", ".bpte")
    cases = [(x, change(y)) for x, y in bundled_cases(bpte)]
    write_bundle(arts / CML, bpte, cases)
    data = json.loads((arts / "manifest.json").read_text())
    data["artifacts"][CML]["bundle"].update(sha256=sha256_file(bpte), bytes=bpte.stat().st_size)
    (arts / "manifest.json").write_text(json.dumps(data))


def test_verify_coreml_runs_the_bundle_check_on_the_bpte_and_refuses_a_wrong_one(arts):
    """The bundle step is not a formality: the check gets the .bpte, its case count and the manifest's
    atol; a bundle whose expected outputs are off by 10 atol is refused, nothing recorded; one whose
    bytes changed behind the manifest's back is refused before any check."""
    entry = read_manifest(arts / "manifest.json").artifacts[CML]
    check = _emulated_bundle_check(arts / CML)
    seen = []
    verify_coreml(
        arts / "manifest.json",
        None,
        TINY,
        ROOT / "configs",
        _emulated_core_ml,
        lambda *a: (seen.append(a), check(*a)),
    )
    assert [(p.name, n, atol) for p, n, atol, _ in seen] == [
        (CML.replace(".pte", ".bpte"), entry.bundle.cases, entry.bundle.atol)
    ]
    _rewrite_bundle(arts, lambda y: y + 10 * entry.bundle.atol)
    before = (arts / "manifest.json").read_bytes()
    with pytest.raises(GateError, match=r"bundled verification: tiny_segnet_coreml_fp16.pte: case 0 differs"):
        verify_coreml(arts / "manifest.json", None, TINY, ROOT / "configs", _emulated_core_ml, check)
    assert (arts / "manifest.json").read_bytes() == before
    bpte = arts / CML.replace(".pte", ".bpte")
    data = bytearray(bpte.read_bytes())
    data[len(data) // 2] ^= 0xFF
    bpte.write_bytes(bytes(data))
    from export.errors import ExportError

    with pytest.raises(ExportError, match="tiny_segnet_coreml_fp16.bpte"):
        verify_coreml(arts / "manifest.json", None, TINY, ROOT / "configs", _emulated_core_ml, check)
    assert (arts / "manifest.json").read_bytes() == before
