"""A re-export with nothing to do answers from what the last build recorded, without torch; anything
it cannot vouch for goes to the full check (which hashes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from conftest import ROOT, TINY

from export.uptodate import INPUTS_NAME

# `export build` in-process, then whether torch was imported
BUILD = (
    "import sys; from export.cli import main; rc = main(['build', '--config', sys.argv[1], '--weights', 'random', "
    "'--out', sys.argv[2]]); print('torch imported:', 'torch' in sys.modules); sys.exit(rc)"
)


def _rebuild(out) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", BUILD, str(TINY), str(out)], cwd=ROOT, capture_output=True, text=True, timeout=600
    )


def test_a_no_op_re_export_skips_torch_and_says_the_same(arts):
    inputs = json.loads((arts / INPUTS_NAME).read_text())
    assert set(inputs["files"]) == {p.name for p in arts.glob("*.pte")} | {p.name for p in arts.glob("*.bpte")}
    proc = _rebuild(arts)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "everything up to date" in proc.stdout and "torch imported: False" in proc.stdout
    assert "[xnnpack_int8] up to date: tiny_segnet_xnnpack_int8.pte" in proc.stderr
    assert "tiny_segnet_xnnpack_fp32.pte" in proc.stdout and "up to date" in proc.stdout  # the summary table


def test_a_touched_file_or_interrupted_export_goes_to_the_full_check(arts):
    fp32 = arts / "tiny_segnet_xnnpack_fp32.pte"
    st = fp32.stat()
    os.utime(fp32, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))  # same bytes, new mtime
    proc = _rebuild(arts)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "everything up to date" in proc.stdout and "torch imported: True" in proc.stdout  # hashed: intact
    # that build recorded the new mtime: the next no-op is fast again
    assert "torch imported: False" in _rebuild(arts).stdout
    (arts / ".tmp-999999-tiny_segnet_xnnpack_fp32.pte.x").write_bytes(b"half")  # a killed writer's file
    proc = _rebuild(arts)
    assert "torch imported: True" in proc.stdout and not list(arts.glob(".tmp-*"))  # settled by the build
    # a changed byte with the mtime put back: the fast path cannot see it; what it skips, publish,
    # bench and card still refuse (they hash every file: test_bench_card, test_publish)
