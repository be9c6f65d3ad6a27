"""bench, card and run through child processes refuse what they cannot trust: a manifest built from
other weights or another config, and a file changed since its export."""

from __future__ import annotations

import shutil

from support import TINY, run_cli, write_yaml

from export.config import bundled_photos

XNN = "tiny_segnet_xnnpack_fp32.pte"


def test_bench_refuses_mismatched_weights_or_config(arts, tmp_path):
    out = arts  # refused before any timing: the build's manifest is all it reads
    proc = run_cli("bench", "--manifest", str(out / "manifest.json"), "--config", str(TINY), "--weights", "default")
    assert proc.returncode == 2 and "was exported with random(seed=0)" in proc.stderr
    # a changed setting (a comment alone does not change the expanded config's hash)
    changed = write_yaml(
        tmp_path / "tiny_segnet.yaml", TINY.read_text().replace("random_inputs: 2", "random_inputs: 3")
    )
    proc = run_cli("bench", "--manifest", str(out / "manifest.json"), "--config", str(changed))
    assert proc.returncode == 2 and "changed since" in proc.stderr


def test_bench_card_and_run_refuse_a_file_changed_since_export(tiny_build, tmp_path):
    """bench, card and run check each file against its manifest sha256 and size before using it:
    exit 2, one line naming the file, and nothing written from the wrong file. The swapped-in file
    is a valid program of the same size (the int8 file's bytes, cut or padded), so only the hash
    can tell."""
    out = tmp_path / "artifacts"
    shutil.copytree(tiny_build, out)
    pte = out / XNN
    size = pte.stat().st_size
    pte.write_bytes((out / "tiny_segnet_xnnpack_int8.pte").read_bytes()[:size].ljust(size, b"\0"))
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    for args in (
        ("bench", "--manifest", str(out / "manifest.json"), "--runs", "1", "--warmup", "0", "--config", str(TINY)),
        ("card", "--manifest", str(out / "manifest.json")),
        ("run", str(pte), str(bundled_photos()["chelsea"])),  # a good image: the file is what is wrong
    ):
        proc = run_cli(*args)
        errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
        assert proc.returncode == 2 and len(errors) == 1 and "Traceback" not in proc.stderr, (args[0], proc.stderr)
        assert f"{XNN} does not match its manifest sha256/size; re-run the export" in errors[0], errors[0]
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before  # no bench.json, no card
