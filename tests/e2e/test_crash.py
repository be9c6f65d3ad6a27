"""`kill -9` during an export, at every point where the output folder changes on disk (before and
after each rename): the manifest is the commit point, so at every instant it describes files that
are there (at their names, or at their pending names until the export moves them), publish ships
exactly those bytes, and the next `build` finishes the committed export (up to date) or redoes it."""

from __future__ import annotations

import shutil
import subprocess
import sys

from support import ROOT, TINY

from export import cli
from export.files import sha256_file
from export.release.publish import Publisher
from export.store.manifest import checked_files, read_manifest

# The real CLI in a child that SIGKILLs itself at its Nth os.replace (the only way a finished file
# reaches its name): "before" kills just ahead of the rename, "after" just behind it.
KILLER = """
import os, signal, sys
n, when = int(sys.argv[1]), sys.argv[2]
real, calls = os.replace, [0]
def replace(src, dst):
    calls[0] += 1
    if calls[0] == n and when == "before":
        os.kill(os.getpid(), signal.SIGKILL)
    real(src, dst)
    if calls[0] == n and when == "after":
        os.kill(os.getpid(), signal.SIGKILL)
os.replace = replace
from export.cli import main
sys.exit(main(sys.argv[3:]))
"""
# renames of one rebuilt variant, in order: .pte and .bpte to their pending names, the schema, the
# manifest (the commit point), then the pending .pte and .bpte to their names


def _state(folder, old_manifest: str) -> str:
    """'old' or 'new' (which manifest the folder has); asserts that every file it describes is
    there, at its name or its pending name, with the recorded bytes."""
    manifest = read_manifest(folder / "manifest.json")
    for name, e in manifest.artifacts.items():
        checked_files(folder, name, e)  # raises when a described file is not there as described
    return "old" if (folder / "manifest.json").read_text() == old_manifest else "new"


# Every distinct state the folder passes through (killing before rename k+1 leaves what killing
# after rename k does): untouched but for temp files; both new files pending under the old
# manifest; the new manifest with both pending; with the .pte in place and the .bpte pending.
# 4 children of ~15 s each: the budget for this test.
KILL_POINTS = [(1, "before", "old"), (2, "after", "old"), (4, "after", "new"), (5, "after", "new")]


def test_kill_at_every_rename_leaves_the_folder_as_its_manifest_says(tiny_build, tmp_path, capsys):
    changed = tmp_path / "tiny_segnet.yaml"  # other weights: xnnpack_fp32 is rebuilt with other bytes
    changed.write_text(TINY.read_text().replace("random_seed: 0", "random_seed: 1"))
    argv = ["build", "--config", str(changed), "--variant", "xnnpack_fp32", "--weights", "random"]
    old_manifest = (tiny_build / "manifest.json").read_text()
    for n, when, expected in KILL_POINTS:
        folder = tmp_path / f"{when}-{n}"
        shutil.copytree(tiny_build, folder)
        proc = subprocess.run(
            [sys.executable, "-c", KILLER, str(n), when, *argv, "--out", str(folder)],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        assert proc.returncode == -9, f"not killed at rename {n} {when}: {proc.stderr[-500:]}"
        # consistent at this instant: the manifest (old before the commit, new after) describes files
        # that are there; publish plans exactly those bytes, whatever name they wait under
        assert _state(folder, old_manifest) == expected, (n, when)
        plan = Publisher(folder / "manifest.json", "o/r", "v1.0.0", token="").plan(None)
        for p in plan:
            assert sha256_file(p.local) == p.sha256, (n, when, p)
        assert (
            cli.main(["publish", "--manifest", str(folder / "manifest.json"), "--repo", "o/r", "--tag", "v1.0.0"]) == 0
        )
        capsys.readouterr()
        # the next build finishes a committed export (up to date) or redoes an uncommitted one
        assert cli.main([*argv, "--out", str(folder)]) == 0
        err = capsys.readouterr().err
        assert ("up to date: tiny_segnet_xnnpack_fp32.pte" in err) == (expected == "new"), (n, when, err[-800:])
        left = [p.name for p in folder.iterdir() if p.name.startswith((".pending-", ".tmp-"))]
        assert not left, f"strays, unfinished or half-written files left behind: {left}"
        _state(folder, old_manifest)
        for e in read_manifest(folder / "manifest.json").artifacts.values():  # each file at its own name
            assert sha256_file(folder / e.path) == e.sha256 and sha256_file(folder / e.bundle.path) == e.bundle.sha256
