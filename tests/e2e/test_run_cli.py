"""`rne-export run` (the hook's forward() in Python) through a child process: an overlay on a photo
and a clean error on bad input; a bare .pte without its manifest says what it cannot check; `--rne
0.10` writes a mask PNG of the source's size and an overlay."""

from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
from support import foreign_stderr_lines, run_cli
from support.checks import photo_path


def test_cli_run_writes_overlay_and_fails_cleanly(tiny_by_contract, tmp_path):
    pte, _, _ = tiny_by_contract["rne-0.5"]
    out = tmp_path / "overlay.png"
    proc = run_cli(
        "run", str(pte), str(photo_path("chelsea")), "--classes", "CAT,PERSON", "--resize", "--overlay", str(out)
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    h, w = cv2.imread(str(photo_path("chelsea"))).shape[:2]
    assert summary["keys"]["ARGMAX"] == {"shape": [h, w], "dtype": "int32"}
    assert summary["keys"]["CAT"]["dtype"] == "float32" and summary["contract"] == "rne-0.5"
    img = cv2.imread(str(out))
    assert img.shape[1] == w and img.shape[0] > h  # photo plus legend rows
    # quiet by default: the runtime's log lines (cpuinfo) and torch's warnings are not on the terminal; -v shows them
    assert foreign_stderr_lines(proc.stderr) == [], proc.stderr
    loud = run_cli("-v", "run", str(pte), str(photo_path("chelsea")))
    assert loud.returncode == 0 and foreign_stderr_lines(loud.stderr), loud.stderr  # the filter is what hid them
    bad = run_cli("run", str(pte), str(tmp_path / "nope.jpg"))
    assert bad.returncode == 2 and "no such file" in bad.stderr and "Traceback" not in bad.stderr
    bad = run_cli("run", str(pte), str(photo_path("chelsea")), "--classes", "KITTEN")
    assert bad.returncode == 2 and "valid labels" in bad.stderr


def test_run_on_a_bare_pte_says_what_it_cannot_check(tiny_build, tmp_path):
    """The tool's own advice (`--contract` for a file without a manifest) works: labels are class
    ids, and a note says the file's hash could not be checked."""
    pte = tmp_path / "tiny_segnet_xnnpack_fp32.pte"
    shutil.copy(tiny_build / pte.name, pte)
    proc = run_cli("run", str(pte), str(photo_path("chelsea")), "--contract", "rne-0.5")
    assert proc.returncode == 0, proc.stderr
    assert f"note: no manifest.json beside {pte}: its sha256 cannot be checked" in proc.stderr
    assert all(k.startswith("CLASS_") for k in json.loads(proc.stdout)["classes_present"])


def test_run_rne_0_10_writes_a_mask_png_of_the_source_size_and_an_overlay(tiny_build, tmp_path):
    src = photo_path("chelsea")
    h, w = cv2.imread(str(src)).shape[:2]
    mask, over = tmp_path / "m" / "mask.png", tmp_path / "overlay.png"
    (tmp_path / "m").mkdir()
    colormap = json.dumps({"cat": [255, 0, 0, 255]})
    proc = run_cli(
        "run", str(tiny_build / "tiny_segnet_xnnpack_fp32.pte"), str(src), "--rne", "0.10",
        "--mask", str(mask), "--overlay", str(over), "--colormap", colormap,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["hook"] == "useSemanticSegmenter" and summary["rne"] == "0.10.0 – 0.10.2"
    assert summary["modelOpts"]["normalizeOpts"]["feed"] == "pixel/255"
    assert summary["modelOpts"]["interpolation"] == "linear" and summary["modelOpts"]["outInterpolation"] == "nearest"
    png = cv2.imread(str(mask), cv2.IMREAD_UNCHANGED)
    assert png.shape == (h, w, 4) and png.dtype == np.uint8
    rgba = cv2.cvtColor(png, cv2.COLOR_BGRA2RGBA)
    colours = {tuple(c) for c in rgba.reshape(-1, 4)}
    assert colours <= {(255, 0, 0, 255), (0, 0, 0, 0)}  # 'cat' red, every other label transparent
    assert cv2.imread(str(over)).shape[1] == w
    # the forward-only flags and the segment-only ones are refused on the other path
    bad = run_cli("run", str(tiny_build / "tiny_segnet_xnnpack_fp32.pte"), str(src), "--rne", "0.10", "--resize")
    assert bad.returncode == 2 and "--classes / --resize are forward()'s" in bad.stderr
    bad = run_cli("run", str(tiny_build / "tiny_segnet_xnnpack_fp32.pte"), str(src), "--mask", str(mask))
    assert bad.returncode == 2 and "--mask: only with --rne" in bad.stderr
    bad = run_cli("run", str(tiny_build / "tiny_segnet_xnnpack_fp32.pte"), str(src), "--rne", "0.9")
    assert (
        bad.returncode == 2
        and "runs useSemanticSegmentation, whose forward() `run` replays without --rne" in bad.stderr
    )
