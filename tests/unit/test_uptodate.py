"""A re-export with nothing to do answers from what the last build recorded, without torch; anything
it cannot vouch for goes to the full check (which hashes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from support import ROOT, TINY

from export.config_file import load_config
from export.convert import pipeline
from export.store.uptodate import INPUTS_NAME, fresh_entries

# `export build` in a fresh process, then whether torch was imported
BUILD = (
    "import sys; from export.cli import main; rc = main(['build', '--config', sys.argv[1], '--weights', 'random', "
    "'--out', sys.argv[2]]); print('torch imported:', 'torch' in sys.modules); sys.exit(rc)"
)


def test_a_checkpoint_resolved_once_is_vouched_for_by_path_size_and_mtime(tiny_builds, tiny_weights):
    cfg = load_config(TINY)
    realistic = tiny_builds["realistic"]  # built from a checkpoint PATH
    assert fresh_entries(realistic, cfg, list(cfg.variants), tiny_weights["realistic"]) is not None
    assert fresh_entries(realistic, cfg, list(cfg.variants), "random") is None  # other weights: rebuild


def test_a_no_op_re_export_skips_torch_and_declines_what_it_cannot_vouch_for(arts):
    inputs = json.loads((arts / INPUTS_NAME).read_text())
    assert set(inputs["files"]) == {p.name for p in arts.glob("*.pte")} | {p.name for p in arts.glob("*.bpte")}
    proc = subprocess.run(
        [sys.executable, "-c", BUILD, str(TINY), str(arts)], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "everything up to date" in proc.stdout and "torch imported: False" in proc.stdout
    assert "[xnnpack_int8] up to date: tiny_segnet_xnnpack_int8.pte" in proc.stderr
    assert "tiny_segnet_xnnpack_fp32.pte" in proc.stdout and "up to date" in proc.stdout  # the summary table

    cfg = load_config(TINY)
    assert fresh_entries(arts, cfg, list(cfg.variants), "random") is not None
    assert fresh_entries(arts, cfg, list(cfg.variants), str(arts / "none.pth")) is None  # never resolved here
    fp32 = arts / "tiny_segnet_xnnpack_fp32.pte"
    st = fp32.stat()
    os.utime(fp32, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))  # same bytes, new mtime
    assert fresh_entries(arts, cfg, list(cfg.variants), "random") is None
    # the full check hashes it, finds it intact, and records the new mtime: fast again next time
    assert all(r.up_to_date for r in pipeline.build(cfg, None, "random", arts))
    assert fresh_entries(arts, cfg, list(cfg.variants), "random") is not None
    (arts / ".tmp-999999-tiny_segnet_xnnpack_fp32.pte.x").write_bytes(b"half")  # a killed writer's file
    assert fresh_entries(arts, cfg, list(cfg.variants), "random") is None  # the build settles it first
    # A changed byte with its mtime put back is not seen here; publish, bench and card still hash
    # every file and refuse it (test_bench_card, test_publish).
