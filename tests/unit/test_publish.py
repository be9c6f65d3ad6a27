"""Publishing with the real huggingface_hub client over HTTP to a local Hub-protocol server."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from support import HF_TEST_TOKEN, ROOT, change_manifest, core_ml_runs, hf_env, run_cli, token_leaks
from support.typescript import tsc, typecheck_card

TOKEN = HF_TEST_TOKEN  # what the local server accepts; must never be printed
REPO = "rne-test/deeplab"
XNN_PATH = "xnnpack/tiny_segnet_xnnpack_fp32.pte"
CML_PATH = "coreml/tiny_segnet_coreml_fp16.pte"
Q_PATH = "xnnpack/tiny_segnet_xnnpack_int8.pte"


def publisher(arts: Path, hub, tag="v1.0.0", token=TOKEN):
    from export.release.publish import Publisher

    # the tiny build has random weights and no compat results: a test build, published as one
    return Publisher(
        arts / "manifest.json", REPO, tag, endpoint=hub.url, token=token, allow_random_weights=True, skip_compat=True
    )


def pushed(arts: Path, hub, **kw):
    """push, then the constants from its published.json, as `export publish --push` does."""
    from export.release.codegen import write_modules

    pub = publisher(arts, hub, **kw).push()
    write_modules(arts / "published.json", arts)
    return pub


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
    pub = pushed(arts, hub)
    repo = hub.state.repos[REPO]
    assert repo.tags["v1.0.0"] == pub.commit == repo.branches["main"]
    assert hub.state.count("POST", r"/commit/main") == 1 and hub.state.count("PUT", r"^/lfs/") == 6
    published = json.loads((arts / "published.json").read_text())
    urls = {f["path_in_repo"]: f["url"] for f in published["files"]}
    assert urls[XNN_PATH] == f"{hub.url}/{REPO}/resolve/v1.0.0/{XNN_PATH}"
    assert published["manifest"] == json.loads((arts / "manifest.json").read_text())
    # its JSON Schema beside it: what was written is what the schema describes, and a wrong file is not
    import jsonschema

    schema = json.loads((arts / "published.schema.json").read_text())
    jsonschema.validate(published, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**published, "files": [{"url": "x"}]}, schema)
    assert (arts / "modelUrls.ts").exists() and (arts / "model_urls.py").exists()
    ts = (arts / "modelUrls.ts").read_text()
    assert f"{hub.url}/{REPO}/resolve/v1.0.0/{CML_PATH}" in ts and f"{hub.url}/{REPO}/resolve/v1.0.0/{XNN_PATH}" in ts
    proc = tsc(arts, "modelUrls.ts")  # what was really published compiles
    assert proc.returncode == 0, proc.stdout
    # every file was downloaded back from the commit, before the tag pointed at it
    assert hub.state.count("GET", rf"/resolve/{pub.commit}/") == 8  # 6 files, manifest, its schema
    # a second publish: zero uploads, zero commits, tag untouched, still verified
    before = list(hub.state.log)
    capsys.readouterr()
    publisher(arts, hub).push()
    new = hub.state.log[len(before) :]
    assert not [
        r for r in new if r[0] in ("PUT", "DELETE") or "/commit/" in r[1] or "/tag/" in r[1] or "preupload" in r[1]
    ]
    assert "no file changed: no commit" in capsys.readouterr().out
    assert repo.tags["v1.0.0"] == pub.commit


def test_existing_tag_is_immutable(arts, hub, capsys):
    from export.release.publish import PublishError

    first = publisher(arts, hub).push().commit
    change_manifest(arts)
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
    first = publisher(arts, hub).push().commit
    change_manifest(arts)
    second = publisher(arts, hub).push(move_tag=True).commit
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
    assert hub.state.repos[REPO].tags["v1.0.0"] == pub.commit
    assert [f.times for f in hub.state.faults] == [0], "the fault was not hit"
    assert (arts / "published.json").exists()


def test_rejected_commit_leaves_nothing_half_done_and_rerun_succeeds(arts, hub):
    from export.release.publish import PublishError

    hub.state.inject("POST", r"/commit/", 422)
    with pytest.raises(PublishError, match="commit failed: HTTP 422"):
        publisher(arts, hub).push()
    assert hub.state.repos[REPO].tags == {}
    assert not (arts / "published.json").exists() and not (arts / "modelUrls.ts").exists()
    pub = publisher(arts, hub).push()
    assert hub.state.repos[REPO].tags["v1.0.0"] == pub.commit


def test_tampered_remote_file_fails_verification(arts, hub):
    from export.release.publish import PublishError

    commit = publisher(arts, hub).push().commit
    (arts / "published.json").unlink()
    hub.state.tamper(REPO, commit, XNN_PATH, b"not the artifact")
    with pytest.raises(PublishError, match=r"verification failed: .*tiny_segnet_xnnpack_fp32.pte serves 16 bytes"):
        publisher(arts, hub).push()
    assert not (arts / "published.json").exists() and not (arts / "modelUrls.ts").exists()


def test_missing_token_fails_before_any_network_write(arts, hub):
    from export.release.publish import PublishError

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
    from export.release.publish import PublishError

    (arts / "tiny_segnet_coreml_fp16.pte").unlink()
    with pytest.raises(ExportError, match="tiny_segnet_coreml_fp16.pte is missing") as e:
        publisher(arts, hub)
    assert not isinstance(e.value, PublishError) and e.value.exit_code == 2


def test_cli_missing_token(arts, hub, tmp_path):
    env = {**hf_env(tmp_path, hub), "HF_TOKEN": ""}
    proc = run_cli(
        "publish",
        "--manifest",
        str(arts / "manifest.json"),
        "--repo",
        REPO,
        "--tag",
        "v1.0.0",
        "--push",
        "--allow-random-weights",
        env=env,
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
    from export.release.publish import Publisher, PublishError

    before = len(hub.state.log)
    with pytest.raises(ExportError, match=re.escape(words)) as e:
        Publisher(arts / "manifest.json", repo, tag, endpoint=hub.url, token=TOKEN)
    assert not isinstance(e.value, PublishError) and len(hub.state.log) == before


def test_publish_and_codegen_never_import_torch():
    code = (
        "import sys, export.cli, export.release.publish, export.release.codegen, export.store.manifest; "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_check_urls_against_published_modules(arts, hub, tmp_path):
    pushed(arts, hub)
    env = hf_env(tmp_path, hub)
    ok = run_cli("check-urls", str(arts / "modelUrls.ts"), str(arts / "model_urls.py"), env=env)
    assert ok.returncode == 0 and "all URLs resolve" in ok.stdout
    del hub.state.repos[REPO].tags["v1.0.0"]  # the tag disappears: every URL now 404s
    bad = run_cli("check-urls", str(arts / "modelUrls.ts"), env=env)
    assert bad.returncode == 4 and bad.stderr.count("does not resolve: HTTP 404") == 3  # Core ML, fp32, int8


# --- release-grade publishing (issue 13) ------------------------------------------------------------


def _served(hub, rev: str, path: str) -> bytes:
    from support.hub_server import resolve_rev

    repo = hub.state.repos[REPO]
    f = repo.commits[resolve_rev(repo, rev)][path]
    return hub.state.lfs[f.lfs_sha256] if f.lfs_sha256 else f.content


def test_no_tag_before_every_file_is_verified_at_its_commit(arts, hub):
    """A file the commit serves wrong: the push fails and no tag exists (apps resolve tags)."""
    from export.release.publish import PublishError

    hub.state.inject("GET", r"/resolve/[0-9a-f]{40}/" + re.escape(XNN_PATH), "corrupt")
    with pytest.raises(PublishError, match="verification failed: .*no tag was moved or created"):
        publisher(arts, hub).push()
    assert [f.times for f in hub.state.faults] == [0], "the fault was not hit"
    assert hub.state.repos[REPO].tags == {} and hub.state.count("POST", r"/tag/", None) == 0
    assert not (arts / "published.json").exists()


def test_moved_tag_stays_until_verified_and_is_restored_when_recreate_fails(arts, hub):
    from export.release.publish import PublishError

    first = publisher(arts, hub).push().commit
    change_manifest(arts)
    hub.state.inject("GET", r"/resolve/[0-9a-f]{40}/manifest.json", "corrupt")  # verification fails first
    with pytest.raises(PublishError, match="verification failed"):
        publisher(arts, hub).push(move_tag=True)
    assert hub.state.repos[REPO].tags["v1.0.0"] == first and hub.state.count("DELETE", r"/tag/", None) == 0
    hub.state.inject("POST", r"/tag/", 422)  # then the re-create of a verified commit fails
    with pytest.raises(PublishError, match=r"create tag failed: HTTP 422.*v1.0.0 restored to " + first[:12]):
        publisher(arts, hub).push(move_tag=True)
    assert hub.state.repos[REPO].tags["v1.0.0"] == first
    assert hub.state.count("DELETE", r"/tag/") == 1  # it was deleted, and put back


def test_moved_tag_serves_every_local_file_not_mains(arts, hub):
    """--move-tag: files equal to the tag's tree but not to main's are uploaded too (the commit is
    built on main), so the moved tag serves exactly the local files."""
    schema = arts / "manifest.schema.json"
    original = schema.read_bytes()
    first = publisher(arts, hub).push().commit
    schema.write_bytes(original.replace(b'"title"', b'"description": "v2", "title"', 1))
    publisher(arts, hub, tag="v2.0.0").push()  # main now holds another schema file
    change_manifest(arts)  # the manifest differs from both; the schema is v1's again
    schema.write_bytes(original)
    moved = publisher(arts, hub).push(move_tag=True).commit
    assert moved != first and hub.state.repos[REPO].tags["v1.0.0"] == moved
    for name in ("manifest.json", "manifest.schema.json"):
        assert _served(hub, "v1.0.0", name) == (arts / name).read_bytes(), name


def test_no_access_is_not_no_repo(arts, hub, capsys):
    """A private repo the token cannot read: 'no access' (exit 4), not an empty plan of new files."""
    from export.release.publish import PublishError

    publisher(arts, hub).push()
    hub.state.repos[REPO].private = True
    capsys.readouterr()
    plan = publisher(arts, hub, token="hf_someone_else").dry_run()
    out = capsys.readouterr().out
    assert {p.status for p in plan} == {"unknown"} and "remote state unknown: no access to rne-test/deeplab" in out
    with pytest.raises(PublishError, match="no access to rne-test/deeplab .*HTTP 401") as e:
        publisher(arts, hub, token="hf_someone_else").push()
    assert e.value.exit_code == 4 and "hf_someone_else" not in str(e.value)


def test_a_server_echoing_the_token_never_gets_it_printed(arts, hub, capsys):
    from export.release.publish import PublishError

    hub.state.inject("POST", r"/commit/", "echo")
    with pytest.raises(PublishError) as e:
        publisher(arts, hub).push()
    captured = capsys.readouterr()
    assert "***" in str(e.value), str(e.value)  # the echo reached the message, redacted
    assert TOKEN not in str(e.value) + captured.out + captured.err


def test_uploads_go_through_lfs_unless_xet_is_asked_for(tmp_path):
    """Publishing takes the tested (LFS) path by default; `--xet` opts in before huggingface_hub loads."""
    code = (
        "import sys; from export import cli; "
        "cli.main(['publish', '--manifest', sys.argv[1], '--repo', 'o/r', '--tag', 'v1.0.0', *sys.argv[2:]]); "
        "import huggingface_hub.constants as c; print('xet-disabled', c.HF_HUB_DISABLE_XET)"
    )
    env = {k: v for k, v in __import__("os").environ.items() if k != "HF_HUB_DISABLE_XET"}
    missing = str(tmp_path / "manifest.json")  # the command fails (no manifest); the switch is what counts
    for extra, disabled in (([], "True"), (["--xet"], "False")):
        proc = subprocess.run(
            [sys.executable, "-c", code, missing, *extra], cwd=ROOT, capture_output=True, text=True, env=env
        )
        assert proc.stdout.split()[-2:] == ["xet-disabled", disabled], proc.stdout + proc.stderr


def test_check_urls_sends_the_token_only_to_the_hub(arts, hub, tmp_path):
    """A module naming another host: that host is asked anonymously; the Hub (private repo) gets
    the token. The second server records every header it sees."""
    import http.server
    import threading

    seen: list[str | None] = []

    class Recorder(http.server.BaseHTTPRequestHandler):
        def do_HEAD(self):
            seen.append(self.headers.get("Authorization"))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    other = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    try:
        pushed(arts, hub)
        hub.state.repos[REPO].private = True  # resolves only with the token
        module = tmp_path / "urls.ts"
        module.write_text(
            (arts / "modelUrls.ts").read_text()
            + f"\nexport const X = 'http://127.0.0.1:{other.server_address[1]}/m.pte';\n"
        )
        proc = run_cli("check-urls", str(module), env=hf_env(tmp_path, hub))
    finally:
        other.shutdown()
        other.server_close()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert seen == [None]  # asked once, never with the token


@pytest.mark.parametrize(
    "url, endpoint, sent",
    [
        ("https://huggingface.co/o/r/resolve/v1/x.pte", "https://huggingface.co", True),
        ("http://huggingface.co/o/r/resolve/v1/x.pte", "https://huggingface.co", False),  # cleartext
        ("https://huggingface.co.evil.com/x", "https://huggingface.co", False),
        ("https://evil.com/huggingface.co", "https://huggingface.co", False),
        ("https://huggingface.co:8443/x", "https://huggingface.co", False),
        ("http://127.0.0.1:8000/x", "http://127.0.0.1:8000", True),  # a local test Hub, configured
        ("http://127.0.0.1:9000/x", "http://127.0.0.1:8000", False),
        ("http://hub.internal/x", "http://hub.internal", False),  # never in cleartext off the machine
    ],
)
def test_which_urls_carry_the_token(url, endpoint, sent):
    from export.release.hubnames import sends_token

    assert sends_token(url, endpoint) is sent


def test_card_with_overlays_is_published_and_a_bad_card_leaves_no_repo(arts, hub):
    """The card goes through the Hub's /api/validate-yaml before anything is created: a refused
    card leaves no empty repo (exit 2, the card is local input); the good card ships with overlays."""
    from export.errors import ExportError
    from export.release.card import write_card
    from export.release.publish import PublishError

    card = write_card(arts / "manifest.json", with_overlays=True)
    good = card.read_text()
    card.write_text(good.replace("pipeline_tag: image-segmentation", "pipeline_tag: segmenting-images"))
    with pytest.raises(ExportError, match=r"README.md: the Hub refuses its metadata \(\"pipeline_tag\" must be") as e:
        publisher(arts, hub).push()
    assert not isinstance(e.value, PublishError)
    assert hub.state.repos == {} and hub.state.count("POST", r"/api/validate-yaml", None) == 1
    card.write_text(good)
    pub = pushed(arts, hub)
    paths = {f.path_in_repo for f in pub.files}
    assert "README.md" in paths and any(p.startswith("overlays/") and p.endswith(".png") for p in paths)
    assert _served(hub, "v1.0.0", "README.md") == good.encode()
    # the published card's usage compiles with the published constants against the real library
    # fp32 and int8 for 0.4-0.7 (the tiny build is rne-0.5 only); one per-model group for 0.10
    assert typecheck_card(arts, good) == ["0.4.0 – 0.7.3"] * 2 + ["0.10.0 – 0.10.2"]
    assert hub.state.count("POST", r"/api/validate-yaml", None) == 3  # refused; ours; huggingface_hub's in the commit


def test_failed_first_tag_leaves_no_tag_and_a_rerun_tags_the_verified_commit(arts, hub):
    from export.release.publish import PublishError

    hub.state.inject("POST", r"/tag/", 422)
    with pytest.raises(PublishError, match="create tag failed: HTTP 422"):
        publisher(arts, hub).push()
    assert hub.state.repos[REPO].tags == {} and not (arts / "published.json").exists()
    pub = publisher(arts, hub).push()  # the commit is already there: no new commit, only the tag
    assert hub.state.repos[REPO].tags == {"v1.0.0": pub.commit} == {"v1.0.0": hub.state.repos[REPO].branches["main"]}
    assert hub.state.count("POST", r"/commit/") == 1


def test_the_suite_wide_token_search_finds_a_planted_token():
    """The end-of-suite search (conftest: the_token_is_in_no_output) can fail: a token written into
    one file among others, and one printed text among others, are both found (outside this run's
    temp folder, so the real search at the end stays clean)."""
    with tempfile.TemporaryDirectory() as d:
        folder = Path(d)
        (folder / "sub").mkdir()
        (folder / "clean.json").write_text('{"token": "***"}')
        (folder / "sub" / "published.json").write_bytes(b"x" * 5000 + f"Bearer {TOKEN}".encode())
        texts = [("clean", "HTTP 401 for ***"), ("leaky", f"error: server said Authorization: Bearer {TOKEN}")]
        assert token_leaks(TOKEN, texts, folder) == ["leaky", str(folder / "sub" / "published.json")]
        (folder / "sub" / "published.json").write_text('{"token": "***"}')
        assert token_leaks(TOKEN, texts[:1], folder) == []


def _change_bundle(arts: Path) -> None:
    """A new .bpte (an LFS file) described by the manifest: the next push must upload it."""
    from export.files import sha256_file
    from export.store.manifest import read_manifest, write_entry

    name = "tiny_segnet_xnnpack_fp32.pte"
    entry = read_manifest(arts / "manifest.json").artifacts[name]
    bpte = arts / entry.bundle.path
    bpte.write_bytes(bpte.read_bytes() + b"\0")
    bundle = dataclasses.replace(entry.bundle, sha256=sha256_file(bpte), bytes=bpte.stat().st_size)
    write_entry(arts, name, dataclasses.replace(entry, bundle=bundle))


# (step, fault): a permanent failure at each step of a push (upload, commit, verify, tag move, tag create)
STEP_FAULTS = {
    "upload": ("PUT", r"^/lfs/", 400),
    "commit": ("POST", r"/commit/", 422),
    "verify": ("GET", r"/resolve/[0-9a-f]{40}/", "corrupt"),
    "tag delete": ("DELETE", r"/tag/", 422),
    "tag create": ("POST", r"/tag/", 422),
}


@pytest.mark.parametrize(
    "step,move",
    [(s, False) for s in STEP_FAULTS if s != "tag delete"] + [(s, True) for s in STEP_FAULTS],
)
def test_a_failure_at_any_step_leaves_the_old_tag_or_the_new_verified_one(arts, hub, step, move):
    """First publish and --move-tag: after a failure the tag is where it was (absent, or the old
    commit); the rerun without the fault tags the new commit, whose every file is verified."""
    from export.release.publish import PublishError, local_files
    from export.store.manifest import read_manifest

    old = publisher(arts, hub).push().commit if move else None
    if move:
        _change_bundle(arts)
    hub.state.inject(*STEP_FAULTS[step])
    with pytest.raises(PublishError):
        publisher(arts, hub).push(move_tag=move)
    assert [f.times for f in hub.state.faults] == [0], "the fault was not hit"
    assert hub.state.repos[REPO].tags.get("v1.0.0") == old
    new = publisher(arts, hub).push(move_tag=move).commit
    assert new != old and hub.state.repos[REPO].tags["v1.0.0"] == new
    m = arts / "manifest.json"
    for f in local_files(m, read_manifest(m)):  # what the tag serves is every local file
        assert hub.state.served(REPO, "v1.0.0", f.path_in_repo) == f.local.read_bytes(), f.path_in_repo


def test_random_weights_are_not_published_as_a_model(arts, hub, capsys):
    """Without --allow-random-weights a push of random-weight files is refused before any request;
    with it, the push says so and published.json records it."""
    from export.errors import ExportError
    from export.release.publish import Publisher

    with pytest.raises(ExportError, match="seeded random weights, not a model; .*--allow-random-weights"):
        Publisher(arts / "manifest.json", REPO, "v1.0.0", endpoint=hub.url, token=TOKEN, skip_compat=True).push()
    assert hub.state.log == []
    pub = publisher(arts, hub).push()
    assert "WARNING: publishing random-weight test files" in capsys.readouterr().err
    assert list(pub.random_weights) == sorted(read_manifest_names(arts)) and pub.random_weights


def read_manifest_names(arts: Path) -> list[str]:
    return list(json.loads((arts / "manifest.json").read_text())["artifacts"])


def _with_compat(arts: Path, passed: bool) -> None:
    """Compat results for every runtime each file claims (as `export compat` writes them)."""
    from export.records import CompatResult
    from export.rne.runtimes import load_runtimes, runtimes_to_prove
    from export.store.manifest import read_manifest, write_entry

    for name, e in read_manifest(arts / "manifest.json").artifacts.items():
        results = {
            et: CompatResult(et, group[0].label, True, None if passed else "x", None, 0.0, passed)
            for et, group in runtimes_to_prove(e, load_runtimes()).items()
        }
        write_entry(arts, name, dataclasses.replace(e, compat=results))


def test_push_needs_compat_results_or_says_loudly_what_was_not_proven(arts, hub, capsys):
    from export.errors import ExportError
    from export.release.publish import Publisher

    def pub(tag="v1.0.0", **kw):
        return Publisher(
            arts / "manifest.json", REPO, tag, endpoint=hub.url, token=TOKEN, allow_random_weights=True, **kw
        )

    with pytest.raises(
        ExportError,
        match=r"not proven to load .*tiny_segnet_xnnpack_int8.pte in ExecuTorch 0.6.0 \(RNE 0.4.0 – 0.5.6\): not checked.*make compat",
    ):
        pub().push()
    _with_compat(arts, passed=False)
    with pytest.raises(ExportError, match=r"in ExecuTorch 0.7.0 \(RNE 0.5.7 – 0.5.15\): failed"):
        pub().push()
    assert hub.state.log == []  # refused before any request
    published = pub(skip_compat=True).push()
    assert (
        "WARNING: --skip-compat: not proven: tiny_segnet_xnnpack_fp32.pte in ExecuTorch 1.0.1"
        in capsys.readouterr().err
    )
    # 3 files x 4 runtimes: the rne-0.5 lines (0.6.0, 0.7.0, 1.0.1) and 0.10, which serves them
    # (1.3.1); and the Core ML file not executed (Linux: emulated)
    assert len(published.compat_not_proven) == 3 * 4 + (0 if core_ml_runs() else 1)
    _with_compat(arts, passed=True)
    if core_ml_runs():  # macOS: the build executed it
        assert pub("v1.0.1").push().compat_not_proven == ()
        return
    with pytest.raises(ExportError, match=r"tiny_segnet_coreml_fp16.pte: Core ML not executed \(parity emulated\)"):
        pub("v1.0.1").push()  # every runtime passed; Core ML is proven only where it runs (test_coreml_proof)
    assert pub("v1.0.1", skip_compat=True).push().compat_not_proven == (
        "tiny_segnet_coreml_fp16.pte: Core ML not executed (parity emulated); run `make verify-coreml` on macOS",
    )


PLANTED = """
TOKEN = "hf_TEST" + "token_9f8e7d6c5b4a"  # made at run time: this file itself holds no token

def test_writes_a_published_json(tmp_path):
    (tmp_path / "published.json").write_text('{"auth": "Bearer ' + TOKEN + '"}')

def test_reads_back_what_it_printed(capsys):
    print("Authorization: Bearer " + TOKEN)
    assert "Bearer" in capsys.readouterr().out

def test_clean(tmp_path, capsys):
    (tmp_path / "published.json").write_text('{"auth": "***"}')
    print("HTTP 401 for ***")
    assert capsys.readouterr().out
"""


def test_the_per_test_token_search_fails_a_passing_test_that_leaked_it(pytester, monkeypatch):
    """A passing test that writes the token into its own tmp_path (deleted when it passes) or reads it
    back with capsys (never in a report): the search fails each at teardown; a clean one passes."""
    pytester.makepyfile(test_leaks=PLANTED)
    monkeypatch.setenv("PYTHONPATH", str(ROOT / "tests"))
    result = pytester.runpytest_subprocess(
        "-p", "support.token_scan", "-p", "no:cacheprovider", "-o", "tmp_path_retention_policy=failed", "-o", "addopts="
    )
    try:
        result.assert_outcomes(passed=3, errors=2)
        out = result.stdout.str()
        assert "test_writes_a_published_json0/published.json']" in out
        assert "the Hub token leaked into: ['text read back #0']" in out
    finally:  # the inner run's captured output holds the planted token: not this test's leak to report
        for p in pytester.path.rglob("*"):
            if p.is_file() and TOKEN.encode() in p.read_bytes():
                p.unlink()
