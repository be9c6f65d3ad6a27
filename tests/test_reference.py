"""Reference runtime: the hook's forward() on a .pte with native preprocessing, image sources, bad
images, contract tests (artifact vs eager with the same preprocessing) and overlays."""

from __future__ import annotations

import base64
import functools
import http.server
import json
import shutil
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from conftest import DEEPLAB, TINY, run_cli, write_yaml

from export import pipeline
from export.config import CONTRACTS, load_config
from export.errors import ExportError
from export.reference import ARGMAX, ImageError, SegmentationModel, decode, preprocess, read_source
from export.weights import load_model
from export.wrap import wrap

FP32_AGREEMENT = 0.999  # the bar for fp32 artifacts vs eager on real photos
PHOTOS = ["astronaut", "chelsea", "coffee", "motorcycle_left", "rocket"]


def photo_path(name: str) -> Path:
    import skimage

    return next(p for p in Path(skimage.data_dir).iterdir() if p.stem == name)


@pytest.fixture(scope="module")
def tiny_by_contract(tmp_path_factory):
    """The tiny net's XNNPACK artifact under each runtime contract, with its eager reference."""
    out = {}
    for contract in CONTRACTS.names():
        folder = tmp_path_factory.mktemp(contract)
        cfg_path = write_yaml(
            folder / "tiny.yaml", TINY.read_text().replace("contract: rne-0.5", f"contract: {contract}")
        )
        cfg = load_config(cfg_path)
        pipeline.build(cfg, ["xnnpack_fp32"], "random", folder)
        eager = wrap(load_model(cfg, "random").module, cfg, cfg.variants[0])
        out[contract] = (folder / "tiny_segnet_xnnpack_fp32.pte", eager, cfg)
    return out


def eager_argmax(eager, bgr, cfg, contract_name) -> np.ndarray:
    x = preprocess(bgr, cfg.input.height, cfg.input.width, CONTRACTS.get(contract_name))
    with torch.no_grad():
        return eager(torch.from_numpy(x))[0].argmax(0).numpy()


def agreement(pte, eager, cfg, contract_name, feed_contract=None) -> float:
    model = SegmentationModel(pte, contract=feed_contract)
    scores = []
    for name in PHOTOS:
        bgr = cv2.imread(str(photo_path(name)), cv2.IMREAD_COLOR)
        got = model.forward(bgr)[ARGMAX]
        scores.append(float((got == eager_argmax(eager, bgr, cfg, contract_name)).mean()))
    return min(scores)


@pytest.mark.parametrize("contract", ["rne-0.5", "rne-0.9"])
def test_contract_tiny_artifact_matches_eager(tiny_by_contract, contract):
    pte, eager, cfg = tiny_by_contract[contract]
    assert agreement(pte, eager, cfg, contract) >= FP32_AGREEMENT


def test_wrong_contract_is_caught(tiny_by_contract, tmp_path):
    pte, eager, cfg = tiny_by_contract["rne-0.5"]
    with pytest.raises(ExportError, match="contract mismatch: tiny_segnet_xnnpack_fp32.pte was exported for rne-0.5"):
        SegmentationModel(pte, contract="rne-0.9")
    # without a manifest to check against, the contract test's agreement bar catches it
    lone = tmp_path / pte.name
    shutil.copy(pte, lone)
    assert agreement(lone, eager, cfg, "rne-0.5", feed_contract="rne-0.9") < FP32_AGREEMENT


def test_forward_output_dict_and_resize(tiny_by_contract):
    pte, _, _ = tiny_by_contract["rne-0.5"]
    model = SegmentationModel(pte)
    assert (model.height, model.width) == (32, 32)  # read from the program's static input shape
    src = str(photo_path("chelsea"))
    res = model.forward(src, ["CAT", "PERSON"])
    assert set(res) == {ARGMAX, "CAT", "PERSON"}
    assert res[ARGMAX].dtype == np.int32 and res[ARGMAX].shape == (32, 32)
    assert res["CAT"].dtype == np.float32 and 0 <= res["CAT"].min() and res["CAT"].max() <= 1
    big = model.forward(src, ["CAT"], resize=True)
    h, w = cv2.imread(src).shape[:2]
    assert big[ARGMAX].shape == (h, w) and big["CAT"].shape == (h, w) and big[ARGMAX].dtype == np.int32
    assert set(np.unique(big[ARGMAX])) <= set(np.unique(res[ARGMAX]))  # nearest-neighbour: no new classes
    with pytest.raises(ExportError, match="unknown label.*KITTEN.*valid labels: BACKGROUND, AEROPLANE"):
        model.forward(src, ["KITTEN"])


def test_contract_coreml_artifact_runs_or_says_it_cannot(tmp_path):
    """Core ML: the same contract test where the runtime has CoreMLBackend (macOS), else a clear refusal."""
    from executorch.runtime import Runtime

    cfg = load_config(TINY)
    pipeline.build(cfg, ["coreml_fp16"], "random", tmp_path)
    pte = tmp_path / "tiny_segnet_coreml_fp16.pte"
    if Runtime.get().backend_registry.is_available("CoreMLBackend"):
        eager = wrap(load_model(cfg, "random").module, cfg, cfg.variants[0])
        bar = cfg.variant("coreml_fp16").tolerances.min_decisive_agreement  # fp16: the variant's own bar
        assert agreement(pte, eager, cfg, "rne-0.5") >= bar
    else:
        with pytest.raises(ExportError, match="needs CoreMLBackend.*Core ML runs only on Apple platforms"):
            SegmentationModel(pte)


@pytest.fixture
def served(tmp_path):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *a: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield tmp_path, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def test_every_image_source_form_decodes_the_same(served):
    folder, base = served
    src = photo_path("coffee")
    shutil.copy(src, folder / "coffee.png")
    data = src.read_bytes()
    b64 = base64.b64encode(data).decode()
    forms = [str(src), f"file://{src}", f"{base}/coffee.png", b64, f"data:image/png;base64,{b64}"]
    ref = decode(data)
    for form in forms:
        assert np.array_equal(decode(read_source(form), form), ref), form[:40]


def test_bad_images_fail_clearly(tmp_path, served):
    folder, base = served
    png = photo_path("chelsea").read_bytes()
    (tmp_path / "truncated.png").write_bytes(png[: len(png) // 3])
    (tmp_path / "text.png").write_text("hello, not an image")
    (tmp_path / "empty.png").write_bytes(b"")
    ok, huge = cv2.imencode(".png", np.zeros((9000, 8000), np.uint8))  # 72 MP: over OpenCV's pixel cap
    (tmp_path / "huge.png").write_bytes(huge.tobytes())
    cases = {
        str(tmp_path / "missing.png"): "no such file",
        str(tmp_path / "truncated.png"): "not a decodable image",
        str(tmp_path / "text.png"): "not a decodable image",
        str(tmp_path / "empty.png"): "empty",
        str(tmp_path / "huge.png"): "8000x9000 pixels, over the 67108864-pixel limit",
        str(tmp_path): "is a folder",
        f"{base}/nope.png": "cannot download",
        "data:image/png,rawbytes": "only base64 data URIs",
    }
    for source, msg in cases.items():
        with pytest.raises(ImageError, match=msg):
            decode(read_source(source), source)


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
    bad = run_cli("run", str(pte), str(tmp_path / "nope.jpg"))
    assert bad.returncode == 2 and "no such file" in bad.stderr and "Traceback" not in bad.stderr
    bad = run_cli("run", str(pte), str(photo_path("chelsea")), "--classes", "KITTEN")
    assert bad.returncode == 2 and "valid labels" in bad.stderr


@pytest.mark.slow
def test_contract_deeplab_xnnpack_matches_eager(tmp_path):
    cfg = load_config(DEEPLAB)
    pipeline.build(cfg, ["xnnpack_fp32"], "random", tmp_path)
    eager = wrap(load_model(cfg, "random").module, cfg, cfg.variants[0])
    assert agreement(tmp_path / "deeplab_v3_resnet50_xnnpack_fp32.pte", eager, cfg, "rne-0.5") >= FP32_AGREEMENT


def test_run_on_a_bare_pte_says_what_it_cannot_check(tiny_build, tmp_path):
    """The tool's own advice (`--contract` for a file without a manifest) works: labels are class
    ids, and a note says the file's hash could not be checked."""
    pte = tmp_path / "tiny_segnet_xnnpack_fp32.pte"
    shutil.copy(tiny_build / pte.name, pte)
    proc = run_cli("run", str(pte), str(photo_path("chelsea")), "--contract", "rne-0.5")
    assert proc.returncode == 0, proc.stderr
    assert f"note: no manifest.json beside {pte}: its sha256 cannot be checked" in proc.stderr
    assert all(k.startswith("CLASS_") for k in json.loads(proc.stdout)["classes_present"])
