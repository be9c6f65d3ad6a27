"""`rne-export publish` through a child process against the local Hub: the dry run, a push, the
immutable tag, a persistent server error and a rejected token each give their exit code, and the
token is in no output and no file."""

from __future__ import annotations

from support import HF_TEST_TOKEN, change_manifest, hf_env, run_cli

TOKEN = HF_TEST_TOKEN  # what the local server accepts; must never be printed
REPO = "rne-test/deeplab"


def test_cli_dry_run_push_and_token_never_printed(arts, hub, tmp_path):
    env = hf_env(tmp_path, hub)
    args = ["publish", "--manifest", str(arts / "manifest.json"), "--repo", REPO, "--tag", "v2.0.0"]
    outputs = [run_cli(*args, env=env)]
    assert outputs[-1].returncode == 0 and "dry run" in outputs[-1].stdout
    outputs.append(run_cli(*args, "--push", "--allow-random-weights", "--skip-compat", env=env))
    assert outputs[-1].returncode == 0, outputs[-1].stderr
    change_manifest(arts)
    outputs.append(
        run_cli(*args, "--push", "--allow-random-weights", "--skip-compat", env=env)
    )  # immutable tag: an error path
    assert outputs[-1].returncode == 4 and "tags are immutable" in outputs[-1].stderr
    hub.state.inject("POST", r"/commit/", 500, times=99)  # persistent server error: another error path
    outputs.append(run_cli(*args[:-1], "v2.0.1", "--push", "--allow-random-weights", "--skip-compat", env=env))
    assert outputs[-1].returncode == 4 and "HTTP 500" in outputs[-1].stderr
    bad = run_cli(
        *args[:-1], "v3.0.0", "--push", "--allow-random-weights", "--skip-compat", env={**env, "HF_TOKEN": TOKEN + "x"}
    )  # rejected token
    assert bad.returncode == 4 and "401" in bad.stderr
    outputs.append(bad)
    for proc in outputs:
        assert TOKEN not in proc.stdout + proc.stderr
    for f in arts.rglob("*"):
        if f.is_file():
            assert TOKEN.encode() not in f.read_bytes(), f
