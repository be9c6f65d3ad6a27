"""The release pipeline: `make release` end to end on two tiny model configs against the local Hub
(the steps the GitHub workflow runs), a failed gate failing its model, and the workflows passing
actionlint and zizmor (and each failing on a broken workflow)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

from support import HF_TEST_TOKEN, OUTPUTS, ROOT, TINY
from support.typescript import tsc

WORKFLOWS = ROOT / ".github" / "workflows"
BIN = ROOT / ".venv" / "bin"
RELEASE = ROOT / "scripts" / "release.py"


def _tiny_config(folder, name: str, seed: int, **replace: str) -> None:
    """The tiny net, xnnpack fp32 only (the release's logic, not the variants, is under test)."""
    text = TINY.read_text()
    text = text[: text.index("  - backend: xnnpack\n    precision: int8")]
    text = text.replace("name: tiny_segnet", f"name: {name}").replace("random_seed: 0", f"random_seed: {seed}")
    for old, new in replace.items():
        text = text.replace(old, new)
    (folder / f"{name}.yaml").write_text(text)


def _make_release(configs, out, hub, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_ENDPOINT": hub.url, "HF_TOKEN": HF_TEST_TOKEN, "HF_HOME": str(out / "hf-home")}
    cmd = ["make", "-s", "release", "MODELS=tiny_a tiny_b", f"CONFIG_DIR={configs}", f"OUT={out}"]
    # compat has its own test (a real older runtime); here it is skipped, and that is recorded
    cmd += [
        "REPO=rne-test/{model}",
        "TAG=v1.0.0",
        "WEIGHTS=random",
        "J=2",
        "ALLOW_RANDOM=1",
        "SKIP_COMPAT=1",
        "BENCH_RUNS=1",
        *extra,
    ]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    OUTPUTS.append(("make release output", proc.stdout + proc.stderr))
    return proc


def test_make_release_exports_publishes_and_merges_constants(tmp_path, hub):
    configs, out = tmp_path / "configs", tmp_path / "artifacts"
    configs.mkdir()
    _tiny_config(configs, "tiny_a", 0)
    _tiny_config(configs, "tiny_b", 1)
    proc = _make_release(configs, out, hub)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "export tiny_a: ok" in proc.stdout and "export tiny_b: ok" in proc.stdout
    for model in ("tiny_a", "tiny_b"):  # each model in its own repo, tagged at a verified commit
        repo = hub.state.repos[f"rne-test/{model.replace('_', '-')}"]
        pub = json.loads((out / model / "published.json").read_text())
        assert repo.tags["v1.0.0"] == pub["commit"] and (out / model / "README.md").is_file()
        assert pub["compat_not_proven"] and pub["random_weights"]
        assert {f["path_in_repo"] for f in pub["files"]} >= {"README.md", f"xnnpack/{model}_xnnpack_fp32.pte"}
    ts = (out / "release" / "modelUrls.ts").read_text()
    assert "export const TINY_A = {" in ts and "export const TINY_B = {" in ts
    assert "rne-test/tiny-a/resolve/v1.0.0/" in ts and "rne-test/tiny-b/resolve/v1.0.0/" in ts
    assert tsc(out / "release", "modelUrls.ts").returncode == 0
    # a second release of the same tag: nothing changes, nothing is re-sent
    commits = hub.state.count("POST", r"/commit/")
    again = _make_release(configs, out, hub)
    assert again.returncode == 0 and hub.state.count("POST", r"/commit/") == commits, again.stderr[-2000:]


def test_a_failed_gate_fails_its_model_and_nothing_is_published(tmp_path, hub):
    """tiny_b's parity bound cannot hold: its leg fails with the gate's message (exit 3), tiny_a's leg
    still finishes, and no repo is touched."""
    configs, out = tmp_path / "configs", tmp_path / "artifacts"
    configs.mkdir()
    _tiny_config(configs, "tiny_a", 0)
    _tiny_config(configs, "tiny_b", 1, **{"min_snr_db: 100.0": "min_snr_db: 1000.0"})
    proc = _make_release(configs, out, hub)
    assert proc.returncode != 0
    assert "export tiny_a: ok" in proc.stdout and "export tiny_b: FAILED (exit 3)" in proc.stdout
    assert "error: export tiny_b failed (exit 3): error: " in proc.stderr and "snr" in proc.stderr.lower()
    assert (out / "tiny_a" / "manifest.json").is_file() and hub.state.repos == {} and hub.state.log == []


def test_matrix_is_every_model_config():
    proc = subprocess.run([sys.executable, str(RELEASE), "matrix"], capture_output=True, text=True, check=True)
    models = json.loads(proc.stdout)
    assert models == sorted(p.stem for p in (ROOT / "configs").glob("*.yaml")) and "deeplab_v3_resnet50" in models
    bad = subprocess.run([sys.executable, str(RELEASE), "matrix", "--models", "nope"], capture_output=True, text=True)
    assert bad.returncode != 0 and "no model config nope" in bad.stderr and "deeplab_v3_resnet50" in bad.stderr


def _lint(folder) -> tuple[subprocess.CompletedProcess, subprocess.CompletedProcess]:
    files = sorted(str(p) for p in folder.glob("*.yml"))
    actionlint = subprocess.run([str(BIN / "actionlint"), "-no-color", *files], capture_output=True, text=True)
    zizmor = subprocess.run([str(BIN / "zizmor"), "--offline", *files], capture_output=True, text=True)
    return actionlint, zizmor


def test_workflows_pass_actionlint_and_zizmor():
    assert {p.name for p in WORKFLOWS.glob("*.yml")} == {"ci.yml", "release.yml"}
    actionlint, zizmor = _lint(WORKFLOWS)
    assert actionlint.returncode == 0, actionlint.stdout + actionlint.stderr
    assert zizmor.returncode == 0, zizmor.stdout + zizmor.stderr


def test_the_workflow_checks_can_fail(tmp_path):
    """A job that needs a job that does not exist (actionlint), an action by a movable tag and an
    input pasted into a shell script (zizmor): both tools refuse."""
    text = (WORKFLOWS / "release.yml").read_text()
    text = text.replace("needs: [matrix, export, coreml]", "needs: [matrix, exports, coreml]")
    text = text.replace(
        "actions/download-artifact@d3f86a106a0bac45b974a628896c90dbdf5c8093", "actions/download-artifact@v4"
    )
    text = text.replace(
        'read -r -a models <<< "$MODELS"\n          make venv', 'echo "${{ inputs.models }}"\n          make venv'
    )
    folder = tmp_path / "workflows"
    folder.mkdir()
    (folder / "release.yml").write_text(text)
    shutil.copy(WORKFLOWS / "ci.yml", folder / "ci.yml")
    actionlint, zizmor = _lint(folder)
    assert actionlint.returncode != 0 and '"exports"' in actionlint.stdout, actionlint.stdout
    assert zizmor.returncode != 0 and "unpinned-uses" in zizmor.stdout + zizmor.stderr
    assert "template-injection" in zizmor.stdout + zizmor.stderr
