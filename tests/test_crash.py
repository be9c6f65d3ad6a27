"""`kill -9` during an export, at every point where the output folder changes on disk (before and
after each rename of a finished file over its target): afterwards no reader uses a file its
manifest does not describe by sha256 (publish plans only matching files, or refuses with exit 2),
and the next `build` ends with a consistent folder, up to date or rebuilt."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

from conftest import ROOT, TINY

from export import cli
from export.files import sha256_file

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
# renames of one rebuilt variant, in order: .bpte, .pte, manifest.json, manifest.schema.json


def _consistent(folder) -> bool:
    manifest = json.loads((folder / "manifest.json").read_text())
    for e in manifest["artifacts"].values():
        for path, sha in ((e["path"], e["sha256"]), (e["bundle"]["path"], e["bundle"]["sha256"])):
            if not (folder / path).is_file() or sha256_file(folder / path) != sha:
                return False
    return True


# Every distinct state the folder passes through (killing before rename k+1 leaves what killing
# after rename k does): untouched, new .bpte only, new .pte and .bpte under the old manifest, new
# manifest beside the old schema. 4 children of ~15 s each: the budget for this test.
KILL_POINTS = [(1, "before"), (1, "after"), (2, "after"), (3, "after")]


def test_kill_at_every_rename_leaves_nothing_shipped_wrong(tiny_build, tmp_path, capsys):
    changed = tmp_path / "tiny_segnet.yaml"  # other weights: xnnpack_fp32 is rebuilt with other bytes
    changed.write_text(TINY.read_text().replace("random_seed: 0", "random_seed: 1"))
    argv = ["build", "--config", str(changed), "--variant", "xnnpack_fp32", "--weights", "random"]
    seen = set()
    for n, when in KILL_POINTS:
        folder = tmp_path / f"{when}-{n}"
        shutil.copytree(tiny_build, folder)
        proc = subprocess.run(
            [sys.executable, "-c", KILLER, str(n), when, *argv, "--out", str(folder)],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        assert proc.returncode == -9, f"not killed at rename {n} {when}: {proc.stderr[-500:]}"
        consistent = _consistent(folder)
        seen.add(consistent)
        # a reader: publish plans only files that match (exit 0), or refuses naming the file (exit 2)
        rc = cli.main(["publish", "--manifest", str(folder / "manifest.json"), "--repo", "o/r", "--tag", "v1.0.0"])
        err = capsys.readouterr().err
        assert (rc, consistent) in ((0, True), (2, False)), (n, when, rc, err)
        if rc == 2:
            assert "does not match its manifest sha256/size; re-run the export" in err
        # the next build ends consistent (up to date, or rebuilt), and publish takes it
        assert cli.main([*argv, "--out", str(folder)]) == 0, capsys.readouterr().err
        assert _consistent(folder)
        assert (
            cli.main(["publish", "--manifest", str(folder / "manifest.json"), "--repo", "o/r", "--tag", "v1.0.0"]) == 0
        )
        capsys.readouterr()
    # the kill points reach both states: the old files still described, and new bytes under an old entry
    assert seen == {True, False}
