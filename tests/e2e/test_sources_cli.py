"""The maintainer's path for a model source (a python builder) through child processes: `make export
CONFIG=…`, then `run --rne 0.10`, `bench` against ONNX Runtime and `card` from the command line."""

from __future__ import annotations

import json
import shutil
import subprocess

from support import PERSON, ROOT, run_cli
from support.checks import LINE_0_10

from export.config import bundled_photos


def test_make_export_then_run_bench_and_card_from_the_command_line(tmp_path):
    """The maintainer's path through child processes: `make export CONFIG=…` (every default variant),
    `run --rne 0.10` on a photo, `bench` against ONNX Runtime, `card`."""
    out = tmp_path / "out"
    proc = subprocess.run(
        ["make", "--no-print-directory", "export", f"CONFIG={PERSON}", "WEIGHTS=random", f"OUT={out}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    folder = out / "person_mask"
    assert sorted(p.name for p in folder.glob("*.pte")) == [
        "person_mask_coreml_fp16.pte",
        "person_mask_xnnpack_fp32.pte",
        "person_mask_xnnpack_int8.pte",
    ]
    photo = str(bundled_photos()["astronaut"])
    run = run_cli("run", str(folder / "person_mask_xnnpack_int8.pte"), photo, "--rne", "0.10")
    assert run.returncode == 0, run.stderr
    said = json.loads(run.stdout)
    assert said["contract"] == "rne-0.10" and said["modelOpts"]["normalizeOpts"]["beta"] == [-1.0, -1.0, -1.0]
    bench = run_cli("bench", "--manifest", str(folder / "manifest.json"), "--runs", "2")
    assert bench.returncode == 0, bench.stderr
    engines = set(json.loads((folder / "bench.json").read_text())["engines"])
    assert {"onnxruntime fp32", "onnxruntime int8", "person_mask_xnnpack_int8.pte"} <= engines
    card = run_cli("card", "--manifest", str(folder / "manifest.json"))
    assert card.returncode == 0, card.stderr
    text = (folder / "README.md").read_text()
    assert LINE_0_10 in text and "0.4.0" not in text.split("## ")[0]
    shutil.rmtree(out)
