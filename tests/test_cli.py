"""The CLI as users and release pipelines run it: one clear error line, exit != 0, nothing lost."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch
from conftest import DEEPLAB, ROOT, TINY, foreign_stderr_lines, run_cli

from export import cli
from export.config_file import list_configs
from export.convert.models import TinySegNet


def _one_error_line(proc):
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]


def test_help_lists_models_and_variants():
    proc = run_cli("build", "--help")
    assert proc.returncode == 0
    assert "deeplab_v3_resnet50" in proc.stdout
    assert "xnnpack_fp32, xnnpack_int8, coreml_fp16, coreml_fp32, xnnpack_fp32_520, xnnpack_fp32_rne09" in proc.stdout
    for model in (
        "deeplab_v3_resnet101",
        "deeplab_v3_mobilenet_v3_large",
        "lraspp_mobilenet_v3_large",
        "fcn_resnet50",
        "fcn_resnet101",
    ):
        assert model in proc.stdout
    assert "--weights" in proc.stdout and "random" in proc.stdout


def test_unknown_variant_lists_valid_names():
    proc = run_cli("build", "--config", str(DEEPLAB), "--variant", "vulkan_fp32", "--weights", "random")
    assert proc.returncode == 2
    line = _one_error_line(proc)
    assert "unknown variant(s) vulkan_fp32" in line and "xnnpack_fp32_520" in line and "coreml_fp16" in line


def test_missing_config_file(tmp_path):
    proc = run_cli("build", "--config", str(tmp_path / "nope.yaml"))
    assert proc.returncode == 2 and "config file not found" in _one_error_line(proc)


@pytest.mark.e2e
def test_unknown_model_builder_lists_valid_names(tmp_path):
    cfg = tmp_path / "m.yaml"
    cfg.write_text(TINY.read_text().replace("builder: tiny_segnet", "builder: deeplabv4"))
    proc = run_cli("build", "--config", str(cfg), "--weights", "random", "--out", str(tmp_path / "o"))
    line = _one_error_line(proc)
    assert proc.returncode == 2 and "unknown model builder 'deeplabv4'" in line
    assert "deeplabv3_resnet50" in line and "tiny_segnet" in line


def test_unwritable_out(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    proc = run_cli("build", "--config", str(TINY), "--weights", "random", "--out", str(blocker / "sub"))
    assert proc.returncode == 2 and "--out" in _one_error_line(proc) and "cannot write there" in proc.stderr


@pytest.mark.e2e
def test_offline_default_weights_names_cache_path_and_alternatives(tmp_path):
    # An unreachable proxy makes the download fail at once, whether or not this machine has internet.
    env = {"TORCH_HOME": str(tmp_path / "th"), "HTTPS_PROXY": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9"}
    # `make export`'s matrix: every checkpoint to place is named at once, not the first one only
    configs = [a for p in list_configs(ROOT / "configs") for a in ("--config", str(p))]
    proc = run_cli("build", *configs, "--out", str(tmp_path / "o"), env=env)
    line = _one_error_line(proc)
    assert proc.returncode == 2 and line.startswith(f"error: {len(configs) // 2} of {len(configs) // 2} models")
    assert str(tmp_path / "th" / "hub" / "checkpoints" / "deeplabv3_resnet50_coco-cd0a2569.pth") in line
    assert line.count(str(tmp_path / "th" / "hub" / "checkpoints")) == len(configs) // 2
    assert "--weights PATH" in line and "--weights random" in line
    assert not list((tmp_path / "o").rglob("*.pte")), "nothing may be built when weights are missing"


@pytest.mark.e2e
def test_corrupt_checkpoint(tmp_path):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"\x80\x02not a checkpoint")
    proc = run_cli("build", "--config", str(TINY), "--weights", str(bad), "--out", str(tmp_path / "o"))
    line = _one_error_line(proc)
    assert proc.returncode == 2 and str(bad) in line and "weights_only=True" in line


@pytest.mark.e2e
def test_wrong_architecture_checkpoint(tmp_path):
    ckpt = tmp_path / "other.pth"
    torch.save(torch.nn.Conv2d(3, 8, 3).state_dict(), ckpt)
    proc = run_cli("build", "--config", str(TINY), "--weights", str(ckpt), "--out", str(tmp_path / "o"))
    line = _one_error_line(proc)
    assert proc.returncode == 2 and "does not fit model builder 'tiny_segnet'" in line


def test_missing_weights_file(tmp_path):
    proc = run_cli("build", "--config", str(TINY), "--weights", str(tmp_path / "x.pth"))
    assert proc.returncode == 2 and "valid values: default, random, or a checkpoint PATH" in _one_error_line(proc)


@pytest.mark.e2e
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


@pytest.mark.e2e
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


@pytest.mark.e2e
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


def test_config_errors_come_before_any_torch_import(tmp_path):
    """Bad configs and arguments are answered without importing torch (which alone takes seconds):
    checked by what is loaded, not by timing."""
    import subprocess
    import sys

    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nbogus: 1\n")
    code = (
        "import sys; from export.cli import main; rc = main(['build', '--config', sys.argv[1]]); "
        "print('torch' in sys.modules, rc)"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(bad)], cwd=ROOT, capture_output=True, text=True)
    assert proc.stdout.split() == ["False", "2"], proc.stdout + proc.stderr
    assert "bogus: unknown key" in proc.stderr


def test_rne_export_is_installed_with_its_version_and_the_same_subcommands(tmp_path):
    """The venv the Makefile makes has the `rne-export` command beside python."""
    import subprocess
    import sys
    from pathlib import Path

    exe = Path(sys.executable).parent / "rne-export"
    assert exe.is_file(), "pip install -e . did not install [project.scripts]"
    version = subprocess.run([exe, "--version"], capture_output=True, text=True)
    assert version.returncode == 0 and version.stdout.startswith("rne-export 0.1.0 (torch 2.14.1, "), version
    assert "executorch 1.5.1" in version.stdout and "coremltools 9.0" in version.stdout
    proc = subprocess.run([exe, "build", "--config", str(tmp_path / "none.yaml")], capture_output=True, text=True)
    assert proc.returncode == 2 and "config file not found" in proc.stderr


@pytest.mark.e2e
def test_a_pickled_object_checkpoint_gets_the_fix_not_pytorch_s_colours(tmp_path):
    import fractions

    ckpt = tmp_path / "obj.pth"
    torch.save({"state": fractions.Fraction(1, 3)}, ckpt)  # a Python object weights_only=True refuses
    proc = run_cli("build", "--config", str(TINY), "--weights", str(ckpt), "--out", str(tmp_path / "o"))
    line = _one_error_line(proc)
    assert proc.returncode == 2 and "holds Python objects" in line and "torch.save(model.state_dict()" in line
    assert "\x1b[" not in proc.stderr


def test_check_urls_does_not_retry_a_refused_connection(tmp_path, monkeypatch, capsys):
    """A refused port is not transient: one attempt, no backoff sleeps (timeouts and 5xx are retried)."""
    import socket
    import time

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    module = tmp_path / "model_urls.py"
    module.write_text(f'X = "http://127.0.0.1:{port}/x.pte"\n')
    sleeps = []
    monkeypatch.setattr(time, "sleep", sleeps.append)
    assert cli.main(["check-urls", str(module)]) == 4
    assert sleeps == [] and "Connection refused" in capsys.readouterr().err


@pytest.mark.parametrize("bad", ["0", "two", "-1", "1.5"])
def test_a_thread_limit_that_is_not_a_count_is_one_error(bad, tmp_path):
    proc = run_cli("build", "--config", str(TINY), "--out", str(tmp_path / "o"), env={"RNE_EXPORT_THREADS": bad})
    assert proc.returncode == 2
    line = _one_error_line(proc)
    assert f"RNE_EXPORT_THREADS={bad!r}" in line and "whole number >= 1" in line
    assert not (tmp_path / "o").exists()


def test_the_thread_limit_sizes_torch_and_the_executorch_threadpool():
    """What a process started with RNE_EXPORT_THREADS=n computes on: n below the cores, so neither
    count can be its library's default (one core: n=2, above it; torch caps at the cores)."""
    import os
    import subprocess
    import sys

    cores = len(os.sched_getaffinity(0))
    n = 1 if cores > 1 else 2
    code = (
        "from export import threads; threads.apply(); import torch; threads.runtime(); "
        "print(torch.get_num_threads(), threads.executorch_threads())"
    )
    env = {**os.environ, "RNE_EXPORT_THREADS": str(n)}
    env.pop("OMP_NUM_THREADS", None)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert list(map(int, out.split())) == [min(n, cores), n]
