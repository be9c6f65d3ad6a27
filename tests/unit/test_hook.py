"""Reference runtime: the hook's forward() on a .pte with native preprocessing, image sources, bad
images, contract tests (artifact vs eager with the same preprocessing) and overlays."""

from __future__ import annotations

import base64
import functools
import http.server
import json
import shutil
import struct
import subprocess
import sys
import threading
import zlib

import cv2
import numpy as np
import pytest
from support import TINY
from support.checks import FP32_AGREEMENT, PHOTOS, agreement, photo_path

from export.checks.replay import ARGMAX, ImageError, SegmentationModel, decode, read_source
from export.config_file import load_config
from export.convert import pipeline
from export.convert.wrap import wrap
from export.errors import ExportError
from export.sources import load_model


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

    # a header claiming 20000x20000 (400 MP, past Pillow's own 179 MP refusal): the same one limit, named
    def chunk(body: bytes) -> bytes:
        return struct.pack(">I", len(body) - 4) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = b"IHDR" + struct.pack(">IIBBBBB", 20000, 20000, 8, 0, 0, 0, 0)
    bomb = b"\x89PNG\r\n\x1a\n" + chunk(ihdr) + chunk(b"IDAT" + zlib.compress(b"")) + chunk(b"IEND")
    (tmp_path / "bomb.png").write_bytes(bomb)
    cases = {
        str(tmp_path / "bomb.png"): f"{tmp_path / 'bomb.png'}: over the 67108864-pixel limit",
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


# --- react-native-executorch 0.10: useSemanticSegmenter's segment(imageBuffer) -----------------------


def gray_as_bgr(bgr: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)


@pytest.mark.parametrize("contract", ["rne-0.5", "rne-0.9"])
def test_segment_and_forward_give_the_same_argmax(tiny_by_contract, tiny_builds, contract):
    """The 0.10 path (ImageBuffer in every format, resize in that format, RGB, pixel·alpha + beta with
    the constant's normalizeOpts) and the 0.5/0.9 forward() path, same photo and file: the same argmax
    at the model's resolution, before the output resize; the mask is that argmax coloured and resized
    to the photo's size with the constant's outInterpolation ('nearest')."""
    from export.checks.replay import IMAGE_FORMATS, image_buffer
    from export.rne.hooks import NORMALIZE_OPTS, OUT_INTERPOLATION

    files = [tiny_by_contract[contract][0]]
    if contract == "rne-0.5":  # trained-scale logits too (the realistic fixture)
        files.append(tiny_builds["realistic"] / "tiny_segnet_xnnpack_fp32.pte")
    for pte in files:
        model = SegmentationModel(pte)
        opts = model.segmenter_opts("0.10")
        assert opts.feed == {"rne-0.5": "pixel/255", "rne-0.9": "imagenet"}[contract] and opts.feed in NORMALIZE_OPTS
        for name in PHOTOS:
            bgr = cv2.imread(str(photo_path(name)), cv2.IMREAD_COLOR)
            for fmt in IMAGE_FORMATS:
                seg = model.segment(image_buffer(bgr, fmt))
                want = model.forward(gray_as_bgr(bgr) if fmt == "gray" else bgr)[ARGMAX]
                assert seg.argmax.dtype == np.int32 and seg.argmax.shape == (model.height, model.width)
                assert np.array_equal(seg.argmax, want), (pte.name, name, fmt, float((seg.argmax == want).mean()))
                assert seg.mask.shape == (*bgr.shape[:2], 4) and seg.mask.dtype == np.uint8
            assert OUT_INTERPOLATION == "nearest"
            lut = np.array(list(seg.colormap.values()), np.uint8)  # in label order
            big = cv2.resize(seg.argmax, (bgr.shape[1], bgr.shape[0]), interpolation=cv2.INTER_NEAREST)
            assert np.array_equal(seg.mask, lut[big])


def test_segment_colormap_default_and_given(tiny_build):
    """The package's default colormap (label 0 transparent, hsl(i·137.5, 95 %, 50 %), its own hslToRgb
    run by node for comparison) and a partial one (omitted labels transparent); unknown labels and
    bad colours refused."""
    from export.checks.replay import colormap_for, default_colormap
    from export.rne.rne_schema import checker_dir

    js = (checker_dir() / "node_modules/rne-0.10.2/lib/module/extensions/cv/tasks/semanticSegmentation.js").read_text()
    start = js.index("function hslToRgb(")
    fn = js[start : js.index("\n}\n", start) + 3]
    script = (
        fn
        + "console.log(JSON.stringify(Array.from({length: 256}, (_, i) => [...hslToRgb(i * 137.5 % 360, 95, 50), 255])));"
    )
    theirs = json.loads(subprocess.run(["node", "-e", script], capture_output=True, text=True, check=True).stdout)
    labels = [f"l{i}" for i in range(256)]
    ours = default_colormap(labels)
    assert ours["l0"] == (0, 0, 0, 0)
    assert [list(ours[f"l{i}"]) for i in range(1, 256)] == theirs[1:]

    model = SegmentationModel(tiny_build / "tiny_segnet_xnnpack_fp32.pte")
    bgr = cv2.imread(str(photo_path("chelsea")), cv2.IMREAD_COLOR)
    plain = model.segment(bgr)
    assert plain.colormap == default_colormap(list(plain.colormap))
    top = int(np.bincount(plain.argmax.ravel()).argmax())  # the most frequent label, painted green
    label = list(plain.colormap)[top]
    seg = model.segment(bgr, {label: [0, 255, 0, 255]})
    assert seg.colormap[label] == (0, 255, 0, 255) and all(
        c == (0, 0, 0, 0) for k, c in seg.colormap.items() if k != label
    )
    big = cv2.resize(
        (seg.argmax == top).astype(np.uint8), (bgr.shape[1], bgr.shape[0]), interpolation=cv2.INTER_NEAREST
    )
    green = (seg.mask == (0, 255, 0, 255)).all(-1)
    assert green.any() and np.array_equal(green, big > 0) and (seg.mask[big == 0] == 0).all()
    with pytest.raises(ExportError, match="colormap: unknown label.*CAT.*valid labels: background"):
        colormap_for(list(seg.colormap), {"CAT": [1, 2, 3, 4]})
    with pytest.raises(ExportError, match=r"colormap: cat: expected an RGBA colour"):
        colormap_for(list(seg.colormap), {"cat": [1, 2, 300, 4]})


def test_run_reads_and_runs_a_file_without_importing_the_compiler(tiny_build, tmp_path):
    """`run` reads the file's delegates and runs it with no executorch.exir package loaded (its
    import was 3.2 s of a 6.1 s `run`); a cut file still gets its one error line, and the compiler
    still imports whole afterwards, in the same process."""
    pte = tmp_path / "tiny_segnet_xnnpack_fp32.pte"
    shutil.copy(tiny_build / pte.name, pte)  # no manifest beside it: --contract says
    cut = tmp_path / "cut.pte"
    cut.write_bytes(pte.read_bytes()[:3000])
    code = f"""
import sys
from export import cli
print(cli.main(["run", {str(pte)!r}, {str(photo_path("chelsea"))!r}, "--contract", "rne-0.5"]))
print(cli.main(["run", {str(cut)!r}, {str(photo_path("chelsea"))!r}, "--contract", "rne-0.5"]))
print(sorted(m for m in sys.modules if m.startswith("executorch.exir")))
import executorch.exir
print(callable(executorch.exir.to_edge_transform_and_lower))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    ran, refused, loaded, compiler = proc.stdout.splitlines()[-4:]
    assert (ran, refused, loaded, compiler) == ("0", "2", "[]", "True"), proc.stdout[-2000:]
    assert '"artifact"' in proc.stdout and "truncated or corrupt" in proc.stderr


def test_bench_children_run_a_file_without_importing_the_compiler(tiny_build):
    """bench's memory probe (a fresh process per file) loads and runs the file without executorch.exir's
    package (the runtime bindings import one warning class from it: ~4 s of torch.export and passes
    per child); the compiler still imports whole afterwards, in the same process."""
    code = f"""
import sys
from export.checks.memory_probe import probe
print(probe({str(tiny_build / "tiny_segnet_xnnpack_fp32.pte")!r}, 1)["load_ms"] > 0)
print(sorted(m for m in sys.modules if m.startswith("executorch.exir")))
import executorch.exir
print(callable(executorch.exir.to_edge_transform_and_lower), callable(executorch.exir._warnings.experimental))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    ran, loaded, compiler = proc.stdout.splitlines()[-3:]
    assert (ran, loaded, compiler) == ("True", "[]", "True True"), proc.stdout
