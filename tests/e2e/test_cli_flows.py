"""Whole CLI flows through child processes: errors that name the fix (unknown builder, offline weights,
bad checkpoints), Core ML bytes across processes, several configs in one build, in turn and side by side."""

from __future__ import annotations

import hashlib
import json

import torch
from support import ROOT, TINY, foreign_stderr_lines, one_error_line, run_cli

from export.config_file import list_configs
from export.sources.models import TinySegNet


def test_unknown_model_builder_lists_valid_names(tmp_path):
    cfg = tmp_path / "m.yaml"
    cfg.write_text(TINY.read_text().replace("builder: tiny_segnet", "builder: deeplabv4"))
    proc = run_cli("build", "--config", str(cfg), "--weights", "random", "--out", str(tmp_path / "o"))
    line = one_error_line(proc)
    assert proc.returncode == 2 and "unknown model builder 'deeplabv4'" in line
    assert "deeplabv3_resnet50" in line and "tiny_segnet" in line


def test_offline_default_weights_names_cache_path_and_alternatives(tmp_path):
    # An unreachable proxy makes the download fail at once, whether or not this machine has internet.
    env = {"TORCH_HOME": str(tmp_path / "th"), "HTTPS_PROXY": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9"}
    # `make export`'s matrix: every checkpoint to place is named at once, not the first one only
    configs = [a for p in list_configs(ROOT / "configs") for a in ("--config", str(p))]
    proc = run_cli("build", *configs, "--out", str(tmp_path / "o"), env=env)
    line = one_error_line(proc)
    assert proc.returncode == 2 and line.startswith(f"error: {len(configs) // 2} of {len(configs) // 2} models")
    assert str(tmp_path / "th" / "hub" / "checkpoints" / "deeplabv3_resnet50_coco-cd0a2569.pth") in line
    assert line.count(str(tmp_path / "th" / "hub" / "checkpoints")) == len(configs) // 2
    assert "--weights PATH" in line and "--weights random" in line
    assert not list((tmp_path / "o").rglob("*.pte")), "nothing may be built when weights are missing"


def test_corrupt_checkpoint(tmp_path):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"\x80\x02not a checkpoint")
    proc = run_cli("build", "--config", str(TINY), "--weights", str(bad), "--out", str(tmp_path / "o"))
    line = one_error_line(proc)
    assert proc.returncode == 2 and str(bad) in line and "weights_only=True" in line


def test_wrong_architecture_checkpoint(tmp_path):
    ckpt = tmp_path / "other.pth"
    torch.save(torch.nn.Conv2d(3, 8, 3).state_dict(), ckpt)
    proc = run_cli("build", "--config", str(TINY), "--weights", str(ckpt), "--out", str(tmp_path / "o"))
    line = one_error_line(proc)
    assert proc.returncode == 2 and "does not fit model builder 'tiny_segnet'" in line


def test_torchvision_format_checkpoint_with_aux_head_loads(tmp_path):
    torch.manual_seed(1)
    ckpt = tmp_path / "tv.pth"
    state = TinySegNet(21, aux_loss=True).state_dict()
    assert any(k.startswith("aux_classifier.") for k in state)
    torch.save(state, ckpt)
    out = tmp_path / "o"
    proc = run_cli(
        "build", "--config", str(TINY), "--variant", "xnnpack_fp32", "--weights", str(ckpt), "--out", str(out)
    )
    assert proc.returncode == 0, proc.stderr
    entry = json.loads((out / "manifest.json").read_text())["artifacts"]["tiny_segnet_xnnpack_fp32.pte"]
    sha = hashlib.sha256(ckpt.read_bytes()).hexdigest()
    assert entry["weights"] == {"kind": "path", "identity": f"file tv.pth (sha256 {sha})"}
    assert "tiny_segnet_xnnpack_fp32.pte" in proc.stdout  # the summary table


def test_reproducible_across_processes(tiny_build, tmp_path):
    """Same config + weights -> byte-identical files, Core ML included (its random UUIDs are seeded):
    a fresh CLI process against the session's build (made in the test process)."""
    shas = []
    proc = run_cli("build", "--config", str(TINY), "--weights", "random", "--out", str(tmp_path / "o0"))
    assert proc.returncode == 0, proc.stderr
    # quiet by default: fp32, int8 and Core ML lowered, and stderr holds only the tool's own lines
    assert foreign_stderr_lines(proc.stderr) == [] and "[coreml_fp16] lower (coreml)" in proc.stderr
    for out in (tiny_build, tmp_path / "o0"):
        shas.append({p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.glob("*.*pte"))})
    assert len(shas[0]) == 6 and shas[0] == shas[1]  # .pte and .bpte of fp32, int8 and Core ML fp16
    # the seeded Core ML package manifest is still a valid mlpackage manifest
    data = (tmp_path / "o0" / "tiny_segnet_coreml_fp16.pte").read_bytes()
    start = data.index(b'{\n    "fileFormatVersion"')
    manifest, _ = json.JSONDecoder().raw_decode(data[start:].decode("latin-1"))
    assert manifest["rootModelIdentifier"] in manifest["itemInfoEntries"]
    assert {e["path"] for e in manifest["itemInfoEntries"].values()} == {
        "com.apple.CoreML/model.mlmodel",
        "com.apple.CoreML/weights",
    }
    assert b"conversion_date" not in data


def test_matrix_of_configs_goes_to_one_folder_per_model(tmp_path):
    other = tmp_path / "tiny_two.yaml"
    other.write_text(TINY.read_text().replace("name: tiny_segnet", "name: tiny_two"))
    out = tmp_path / "o"
    both = ["build", "--config", str(TINY), "--config", str(other), "--variant", "xnnpack_fp32"]
    proc = run_cli(*both, "--weights", "random", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    for model in ("tiny_segnet", "tiny_two"):
        manifest = json.loads((out / model / "manifest.json").read_text())
        assert list(manifest["artifacts"]) == [f"{model}_xnnpack_fp32.pte"]
    again = run_cli(*both, "--weights", "random", "--out", str(out))
    assert again.returncode == 0 and "everything up to date" in again.stdout
    bad = run_cli("build", "--config", str(TINY), "--config", str(other), "--weights", str(tmp_path / "x.pth"))
    assert bad.returncode == 2 and "--weights PATH fits one model" in bad.stderr


def test_models_side_by_side_give_the_same_files_and_the_failed_one_is_named(tiny_build, tmp_path):
    """`build --jobs 2`: each model in its own process on its share of the cores; the files are the
    ones an in-process build makes; a model that fails a gate is named in one error line with its log,
    its exit code is the command's, and the other model is still built."""
    bad = tmp_path / "tiny_bad.yaml"
    bad.write_text(
        TINY.read_text()
        .replace("name: tiny_segnet", "name: tiny_bad")
        .replace("min_snr_db: 100.0", "min_snr_db: 900.0")
    )
    out = tmp_path / "o"
    proc = run_cli("build", "--config", str(TINY), "--config", str(bad), "--weights", "random", "--out", str(out),
                   "--variant", "xnnpack_fp32", "--variant", "xnnpack_int8", "--jobs", "2")  # fmt: skip
    assert proc.returncode == 3, proc.stderr[-2000:]
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1 and errors[0].startswith("error: tiny_bad: parity gate"), errors
    assert (
        str(out / "logs" / "tiny_bad.log") in errors[0]
        and "tiny_bad_xnnpack_fp32.pte" in (out / "logs" / "tiny_bad.log").read_text()
    )
    built = json.loads((out / "tiny_segnet" / "manifest.json").read_text())["artifacts"]
    kept = json.loads((tiny_build / "manifest.json").read_text())["artifacts"]
    assert sorted(built) == ["tiny_segnet_xnnpack_fp32.pte", "tiny_segnet_xnnpack_int8.pte"]
    for name, entry in built.items():  # the same bytes as the in-process build of the same weights
        assert entry["sha256"] == kept[name]["sha256"] and entry["bundle"]["sha256"] == kept[name]["bundle"]["sha256"]
    assert "tiny_segnet_xnnpack_int8.pte" in proc.stdout  # the finished model's table


def test_a_pickled_object_checkpoint_gets_the_fix_not_pytorch_s_colours(tmp_path):
    import fractions

    ckpt = tmp_path / "obj.pth"
    torch.save({"state": fractions.Fraction(1, 3)}, ckpt)  # a Python object weights_only=True refuses
    proc = run_cli("build", "--config", str(TINY), "--weights", str(ckpt), "--out", str(tmp_path / "o"))
    line = one_error_line(proc)
    assert proc.returncode == 2 and "holds Python objects" in line and "torch.save(model.state_dict()" in line
    assert "\x1b[" not in proc.stderr
