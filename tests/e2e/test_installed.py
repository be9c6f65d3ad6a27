"""The tool as a maintainer gets it: `pip install` of this project into a fresh venv (no editable link
to the checkout; its dependencies the runtime ones alone, linked from the project venv:
support.installed), used from an empty folder outside it with a builder file of their own: `new`,
`build` (every gate, the RNE schema check set up on first use in an empty cache), `run --rne 0.10`,
`publish` (dry run against the local Hub)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from support import DATA, OUTPUTS, ROOT
from support.hub_server import HubServer
from support.installed import fresh_venv

TOKEN = "hf_installed_test_token_0123456789"


def checkout_copy(dest: Path) -> Path:
    """The project's files as git sees them (tracked and new, not ignored), links kept as links."""
    names = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split("\0")
    for name in filter(None, names):
        src, dst = ROOT / name, dest / name
        if not src.exists() and not src.is_symlink():  # deleted in the work tree, not yet committed
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():
            os.symlink(os.readlink(src), dst)
        else:
            shutil.copy2(src, dst)
    return dest


def test_pip_installed_tool_works_in_an_empty_folder_outside_the_checkout(tmp_path):
    src = checkout_copy(tmp_path / "src")
    venv = fresh_venv(tmp_path)
    pip = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", str(src)],
        capture_output=True,
        text=True,
        timeout=3000,
    )
    assert pip.returncode == 0, pip.stderr[-3000:]
    shutil.rmtree(src)  # nothing may still read the copy it was installed from
    [site] = (venv / "lib").glob("python3*/site-packages")
    assert not (site / "torch").exists()  # pip found every pinned dependency, installed only the tool
    probe = [str(venv / "bin" / "python"), "-c", "import pytest"]
    assert subprocess.run(probe, capture_output=True).returncode != 0  # test extras are not there
    work = tmp_path / "maintainer"
    work.mkdir()
    shutil.copy(DATA / "models" / "person_mask.py", work / "model.py")
    from PIL import Image
    from skimage import data

    Image.fromarray(data.astronaut()).save(work / "astronaut.png")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(PATH=f"{venv / 'bin'}{os.pathsep}{env['PATH']}", RNE_EXPORT_CACHE=str(tmp_path / "cache"))

    def tool(*args: str) -> subprocess.CompletedProcess:
        proc = subprocess.run(
            [str(venv / "bin" / "rne-export"), *args], cwd=work, env=env, capture_output=True, text=True, timeout=1800
        )
        OUTPUTS.append((f"installed `rne-export {args[0]}`", proc.stdout + proc.stderr))
        assert proc.returncode == 0, (args, proc.stdout[-2000:], proc.stderr[-3000:])
        return proc

    where = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import export; print(export.__file__)"],
        cwd=work, env=env, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert str(venv) in where and str(ROOT) not in where, where
    assert "new" in tool("--help").stdout
    tool("new", "--python", "model.py:build", "--labels", "background,person", "--mask", "probability",
         "--size", "64", "--normalize", "0.5/0.5")  # fmt: skip
    build = tool("build", "--config", "configs/model.yaml", "--weights", "random", "--out", "artifacts/model")
    assert "rne-schema: first use: installing the react-native-executorch checker" in build.stderr
    manifest = json.loads((work / "artifacts" / "model" / "manifest.json").read_text())
    entries = manifest["artifacts"]
    assert set(entries) == {"model_xnnpack_fp32.pte", "model_xnnpack_int8.pte", "model_coreml_fp16.pte"}
    for name, entry in entries.items():  # the schema gate ran for every file, with the installed checker
        assert entry["rne_schema"] and entry["rne_schema"]["package"] == "react-native-executorch@0.10.2", name
    assert (tmp_path / "cache" / "ts").is_dir()
    run = tool("run", "--rne", "0.10", "artifacts/model/model_xnnpack_fp32.pte", "astronaut.png", "--mask", "m.png")
    summary = json.loads(run.stdout)
    assert summary["hook"] == "useSemanticSegmenter" and summary["input"] == [64, 64]
    assert (work / "m.png").is_file()
    with HubServer(TOKEN) as hub:
        published = tool(
            "publish", "--manifest", "artifacts/model/manifest.json", "--repo", "someone/model", "--tag", "v1.0.0",
            "--endpoint", hub.url, "--allow-random-weights",
        )  # fmt: skip
    assert "dry run: nothing was changed" in published.stdout
    assert sorted(p.name for p in work.iterdir()) == ["artifacts", "astronaut.png", "configs", "m.png", "model.py"]
