"""Publishing with the real huggingface_hub client over HTTP to a local Hub-protocol server."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, run_cli
from hub_server import HubServer
from test_codegen import tsc

TOKEN = "hf_TESTtoken_9f8e7d6c5b4a"  # what the local server accepts; must never be printed
REPO = "rne-test/deeplab"
XNN_PATH = "xnnpack/tiny_segnet_xnnpack_fp32.pte"
CML_PATH = "coreml/tiny_segnet_coreml_fp16.pte"
Q_PATH = "xnnpack/tiny_segnet_xnnpack_int8.pte"


@pytest.fixture
def arts(tiny_build, tmp_path):
    out = tmp_path / "artifacts"
    shutil.copytree(tiny_build, out)
    return out


@pytest.fixture
def hub():
    with HubServer(TOKEN) as server:
        yield server


def publisher(arts: Path, hub, tag="v1.0.0", token=TOKEN):
    from export.publish import Publisher

    return Publisher(arts / "manifest.json", REPO, tag, endpoint=hub.url, token=token)


def writes(hub) -> list:
    return [(m, p, s) for m, p, s in hub.state.log if m in ("POST", "PUT", "DELETE") and "paths-info" not in p]


def test_dry_run_prints_plan_and_changes_nothing(arts, hub, capsys):
    plan = publisher(arts, hub).dry_run()
    out = capsys.readouterr().out
    assert [p.status for p in plan] == ["new"] * 8
    assert {p.path_in_repo for p in plan} == {
        XNN_PATH,
        CML_PATH,
        Q_PATH,
        "manifest.json",
        "manifest.schema.json",  # consumers validate the manifest without this tool
        *(p.replace(".pte", ".bpte") for p in (XNN_PATH, CML_PATH, Q_PATH)),
    }
    assert f"{hub.url}/{REPO}/resolve/v1.0.0/{XNN_PATH}" in out
    assert "dry run: nothing was changed" in out
    assert writes(hub) == [] and hub.state.repos == {}
    assert not (arts / "published.json").exists()


def test_push_then_second_push_changes_nothing(arts, hub, capsys):
    pub = publisher(arts, hub).push()
    repo = hub.state.repos[REPO]
    assert repo.tags["v1.0.0"] == pub["commit"] == repo.branches["main"]
    assert hub.state.count("POST", r"/commit/main") == 1 and hub.state.count("PUT", r"^/lfs/") == 6
    published = json.loads((arts / "published.json").read_text())
    urls = {f["path_in_repo"]: f["url"] for f in published["files"]}
    assert urls[XNN_PATH] == f"{hub.url}/{REPO}/resolve/v1.0.0/{XNN_PATH}"
    assert published["manifest"] == json.loads((arts / "manifest.json").read_text())
    assert (arts / "modelUrls.ts").exists() and (arts / "model_urls.py").exists()
    ts = (arts / "modelUrls.ts").read_text()
    assert f"{hub.url}/{REPO}/resolve/v1.0.0/{CML_PATH}" in ts and f"{hub.url}/{REPO}/resolve/v1.0.0/{XNN_PATH}" in ts
    proc = tsc(arts, "modelUrls.ts")  # what was really published compiles
    assert proc.returncode == 0, proc.stdout
    # every file was downloaded back from the tag URL
    assert hub.state.count("GET", r"/resolve/v1.0.0/") == 8  # 6 files, manifest, its schema
    # a second publish: zero uploads, zero commits, tag untouched, still verified
    before = list(hub.state.log)
    capsys.readouterr()
    publisher(arts, hub).push()
    new = hub.state.log[len(before) :]
    assert not [
        r for r in new if r[0] in ("PUT", "DELETE") or "/commit/" in r[1] or "/tag/" in r[1] or "preupload" in r[1]
    ]
    assert "no file changed: no commit" in capsys.readouterr().out
    assert repo.tags["v1.0.0"] == pub["commit"]


def _change_manifest(arts: Path) -> None:
    from export.manifest import read_manifest, write_entry

    entry = read_manifest(arts / "manifest.json").artifacts["tiny_segnet_xnnpack_fp32.pte"]
    write_entry(
        arts, "tiny_segnet_xnnpack_fp32.pte", dataclasses.replace(entry, exported_at="2030-01-01T00:00:00+00:00")
    )


def test_existing_tag_is_immutable(arts, hub, capsys):
    from export.publish import PublishError

    first = publisher(arts, hub).push()["commit"]
    _change_manifest(arts)
    commits = hub.state.count("POST", r"/commit/")
    with pytest.raises(PublishError, match=r"tag v1.0.0 already exists .* tags are immutable"):
        publisher(arts, hub).push()
    assert hub.state.count("POST", r"/commit/") == commits  # failed before writing anything
    assert hub.state.repos[REPO].tags["v1.0.0"] == first
    # a new version tag publishes only the changed file
    puts = hub.state.count("PUT", r"^/lfs/")
    publisher(arts, hub, tag="v1.0.1").push()
    assert hub.state.count("PUT", r"^/lfs/") == puts  # manifest.json is a regular file, .pte unchanged
    assert hub.state.repos[REPO].tags["v1.0.0"] == first != hub.state.repos[REPO].tags["v1.0.1"]


def test_move_tag_is_explicit_and_loud(arts, hub, capsys):
    first = publisher(arts, hub).push()["commit"]
    _change_manifest(arts)
    second = publisher(arts, hub).push(move_tag=True)["commit"]
    assert second != first and hub.state.repos[REPO].tags["v1.0.0"] == second
    assert "WARNING: --move-tag: moving v1.0.0" in capsys.readouterr().err


@pytest.mark.parametrize(
    "method,path,action",
    [
        ("POST", r"/preupload/", 429),
        ("POST", r"/commit/", 503),
        ("POST", r"\.git/info/lfs/objects/batch", 502),
        ("PUT", r"^/lfs/", "drop"),
        ("GET", r"/resolve/", 503),
        ("POST", r"/tag/", 429),
    ],
)
def test_transient_faults_are_retried(arts, hub, method, path, action):
    hub.state.inject(method, path, action)
    pub = publisher(arts, hub).push()
    assert hub.state.repos[REPO].tags["v1.0.0"] == pub["commit"]
    assert [f.times for f in hub.state.faults] == [0], "the fault was not hit"
    assert (arts / "published.json").exists()


def test_rejected_commit_leaves_nothing_half_done_and_rerun_succeeds(arts, hub):
    from export.publish import PublishError

    hub.state.inject("POST", r"/commit/", 422)
    with pytest.raises(PublishError, match="commit failed: HTTP 422"):
        publisher(arts, hub).push()
    assert hub.state.repos[REPO].tags == {}
    assert not (arts / "published.json").exists() and not (arts / "modelUrls.ts").exists()
    pub = publisher(arts, hub).push()
    assert hub.state.repos[REPO].tags["v1.0.0"] == pub["commit"]


def test_tampered_remote_file_fails_verification(arts, hub):
    from export.publish import PublishError

    commit = publisher(arts, hub).push()["commit"]
    for name in ("published.json", "modelUrls.ts", "model_urls.py"):
        (arts / name).unlink()
    hub.state.tamper(REPO, commit, XNN_PATH, b"not the artifact")
    with pytest.raises(PublishError, match=r"verification failed: .*tiny_segnet_xnnpack_fp32.pte serves 16 bytes"):
        publisher(arts, hub).push()
    assert not (arts / "published.json").exists() and not (arts / "modelUrls.ts").exists()


def test_missing_token_fails_before_any_network_write(arts, hub):
    from export.publish import PublishError

    with pytest.raises(PublishError, match="needs a Hugging Face token"):
        publisher(arts, hub, token="").push()
    assert hub.state.log == []


def test_unwritable_output_folder_fails_before_any_network_write(arts, hub, tmp_path):
    """published.json must be writable before the Hub sees a commit or a tag (exit 2)."""
    from export.errors import ExportError

    (tmp_path / "file").write_text("x")
    with pytest.raises(ExportError, match=r"published.json folder .*file/sub: cannot write there"):
        publisher(arts, hub).push(out_dir=tmp_path / "file" / "sub")
    assert hub.state.log == []


def test_missing_artifact_file_is_named(arts, hub):
    """A local problem is bad input (exit 2), found before any request, not a publishing failure."""
    from export.errors import ExportError
    from export.publish import PublishError

    (arts / "tiny_segnet_coreml_fp16.pte").unlink()
    with pytest.raises(ExportError, match="tiny_segnet_coreml_fp16.pte is missing") as e:
        publisher(arts, hub)
    assert not isinstance(e.value, PublishError) and e.value.exit_code == 2


def _hf_env(tmp_path, hub, token=TOKEN) -> dict:
    return {"HF_TOKEN": token, "HF_HOME": str(tmp_path / "hf-home"), "HF_ENDPOINT": hub.url}


def test_cli_dry_run_push_and_token_never_printed(arts, hub, tmp_path):
    env = _hf_env(tmp_path, hub)
    args = ["publish", "--manifest", str(arts / "manifest.json"), "--repo", REPO, "--tag", "v2.0.0"]
    outputs = [run_cli(*args, env=env)]
    assert outputs[-1].returncode == 0 and "dry run" in outputs[-1].stdout
    outputs.append(run_cli(*args, "--push", env=env))
    assert outputs[-1].returncode == 0, outputs[-1].stderr
    _change_manifest(arts)
    outputs.append(run_cli(*args, "--push", env=env))  # immutable tag: an error path
    assert outputs[-1].returncode == 4 and "tags are immutable" in outputs[-1].stderr
    hub.state.inject("POST", r"/commit/", 500, times=99)  # persistent server error: another error path
    outputs.append(run_cli(*args[:-1], "v2.0.1", "--push", env=env))
    assert outputs[-1].returncode == 4 and "HTTP 500" in outputs[-1].stderr
    bad = run_cli(*args[:-1], "v3.0.0", "--push", env={**env, "HF_TOKEN": TOKEN + "x"})  # rejected token
    assert bad.returncode == 4 and "401" in bad.stderr
    outputs.append(bad)
    for proc in outputs:
        assert TOKEN not in proc.stdout + proc.stderr
    for f in arts.rglob("*"):
        if f.is_file():
            assert TOKEN.encode() not in f.read_bytes(), f


def test_cli_missing_token(arts, hub, tmp_path):
    env = {**_hf_env(tmp_path, hub), "HF_TOKEN": ""}
    proc = run_cli(
        "publish", "--manifest", str(arts / "manifest.json"), "--repo", REPO, "--tag", "v1.0.0", "--push", env=env
    )
    assert proc.returncode == 4 and "set HF_TOKEN" in proc.stderr
    assert writes(hub) == []


@pytest.mark.parametrize(
    "repo, tag, words",
    [
        ("org/repo", "latest", "expected a version tag"),
        ("org/repo", "v1.0.0\n", "expected a version tag"),  # `$` alone would take it
        ("org/repo", "v1.0", "expected a version tag"),
        ("no-slash", "v1.0.0", "expected OWNER/NAME"),
        ("org/repo\n", "v1.0.0", "expected OWNER/NAME"),
        ("org--x/repo", "v1.0.0", "Cannot have -- or .."),  # the Hub's own validator
        ("org/re..po", "v1.0.0", "Cannot have -- or .."),
        ("org/repo-", "v1.0.0", "cannot start or end"),
    ],
)
def test_bad_tag_and_repo_names(arts, hub, repo, tag, words):
    """Bad --repo/--tag is bad input (exit 2), refused before any request."""
    from export.errors import ExportError
    from export.publish import Publisher, PublishError

    before = len(hub.state.log)
    with pytest.raises(ExportError, match=re.escape(words)) as e:
        Publisher(arts / "manifest.json", repo, tag, endpoint=hub.url, token=TOKEN)
    assert not isinstance(e.value, PublishError) and len(hub.state.log) == before


def test_publish_and_codegen_never_import_torch():
    code = (
        "import sys, export.cli, export.publish, export.codegen, export.manifest; "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_check_urls_against_published_modules(arts, hub, tmp_path):
    publisher(arts, hub).push()
    env = _hf_env(tmp_path, hub)
    ok = run_cli("check-urls", str(arts / "modelUrls.ts"), str(arts / "model_urls.py"), env=env)
    assert ok.returncode == 0 and "all URLs resolve" in ok.stdout
    del hub.state.repos[REPO].tags["v1.0.0"]  # the tag disappears: every URL now 404s
    bad = run_cli("check-urls", str(arts / "modelUrls.ts"), env=env)
    assert bad.returncode == 4 and bad.stderr.count("does not resolve: HTTP 404") == 3  # Core ML, fp32, int8
