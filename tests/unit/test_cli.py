"""The CLI as users and release pipelines run it: one clear error line, exit != 0, nothing lost."""

from __future__ import annotations

import pytest
from support import DEEPLAB, ROOT, TINY, one_error_line, run_cli

from export import cli


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
    line = one_error_line(proc)
    assert "unknown variant(s) vulkan_fp32" in line and "xnnpack_fp32_520" in line and "coreml_fp16" in line


def test_missing_config_file(tmp_path):
    proc = run_cli("build", "--config", str(tmp_path / "nope.yaml"))
    assert proc.returncode == 2 and "config file not found" in one_error_line(proc)


def test_unwritable_out(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    proc = run_cli("build", "--config", str(TINY), "--weights", "random", "--out", str(blocker / "sub"))
    assert proc.returncode == 2 and "--out" in one_error_line(proc) and "cannot write there" in proc.stderr


def test_missing_weights_file(tmp_path):
    proc = run_cli("build", "--config", str(TINY), "--weights", str(tmp_path / "x.pth"))
    assert proc.returncode == 2 and "valid values: default, random, or a checkpoint PATH" in one_error_line(proc)


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
    line = one_error_line(proc)
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
