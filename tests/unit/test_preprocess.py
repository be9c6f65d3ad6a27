"""The app's preprocessing, pinned to the contract with hand-computed values, and every consumer
shown to use it (one owner: export.rne.preprocess)."""

from __future__ import annotations

import ast

import numpy as np
import pytest
import torch
from support import ROOT

from export.config import IMAGENET_MEAN, IMAGENET_STD
from export.rne.preprocess import NEAR_DUPLICATE, load_photo, model_input, preprocess, similarity


def ramp_bgr() -> np.ndarray:
    """8x8 BGR uint8 of quadratic ramps (curved, so area, cubic and antialiased filters differ from
    linear): B = 4*col^2, G = 4*row^2, R = 4*(7-col)^2."""
    row, col = np.mgrid[0:8, 0:8]
    return np.stack([4 * col**2, 4 * row**2, 4 * (7 - col) ** 2], axis=-1).astype(np.uint8)


# By hand: 8 -> 2 with INTER_LINEAR (no antialias) samples source coordinate 4*i + 1.5, i.e. the
# mean of source pixels 4i+1 and 4i+2 in each axis (weights 1/2, 1/2):
# B at x=0: (4*1 + 4*4)/2 = 10, at x=1: (4*25 + 4*36)/2 = 122; G likewise by row;
# R at x=0: (4*36 + 4*25)/2 = 122, at x=1: (4*4 + 4*1)/2 = 10.
# Channel order after BGR->RGB is R, G, B; then /255.
EXPECTED_RNE05 = (
    np.array(
        [
            [[122, 10], [122, 10]],  # R
            [[10, 10], [122, 122]],  # G
            [[10, 122], [10, 122]],  # B
        ],
        np.float32,
    )[None]
    / 255
)


def test_hand_computed_values_rne05():
    got = preprocess(ramp_bgr(), 2, 2)
    assert got.shape == (1, 3, 2, 2) and got.dtype == np.float32 and got.flags["C_CONTIGUOUS"]
    np.testing.assert_allclose(got, EXPECTED_RNE05, atol=1e-7)


def test_hand_computed_values_rne09_apply_imagenet_mean_std_after_div255():
    got = model_input(ramp_bgr(), 2, 2, "rne-0.9").numpy()
    want = (EXPECTED_RNE05 - np.array(IMAGENET_MEAN, np.float32).reshape(1, 3, 1, 1)) / np.array(
        IMAGENET_STD, np.float32
    ).reshape(1, 3, 1, 1)
    np.testing.assert_allclose(got, want, atol=1e-6)
    # rne-0.5 feeds [0,1] and leaves mean/std to the graph
    np.testing.assert_allclose(model_input(ramp_bgr(), 2, 2, "rne-0.5").numpy(), EXPECTED_RNE05, atol=1e-7)


@pytest.mark.parametrize("wrong", ["bgr_not_swapped", "no_div255", "antialias", "area", "nearest", "cubic"])
def test_the_pin_catches_each_wrong_pipeline(wrong):
    """Each plausible mistake gives values the hand-computed table rejects."""
    import cv2
    from torchvision.transforms.v2 import functional as TF

    bgr = ramp_bgr()
    if wrong == "antialias":  # torchvision's default (what parity and calibration used before)
        t = torch.from_numpy(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)).permute(2, 0, 1)
        t = TF.resize(t, [2, 2], interpolation=TF.InterpolationMode.BILINEAR, antialias=True)
        got = (t.float() / 255).unsqueeze(0).numpy()
    else:
        interp = {"area": cv2.INTER_AREA, "nearest": cv2.INTER_NEAREST, "cubic": cv2.INTER_CUBIC}.get(
            wrong, cv2.INTER_LINEAR
        )
        resized = cv2.resize(bgr, (2, 2), interpolation=interp)
        img = resized if wrong == "bgr_not_swapped" else cv2.cvtColor(resized, cv2.COLOR_BGR2RGB)
        got = img.astype(np.float32).transpose(2, 0, 1)[None] / (1.0 if wrong == "no_div255" else 255.0)
    assert not np.allclose(got, EXPECTED_RNE05, atol=0.5 / 255), wrong


def test_photos_are_decoded_by_opencv_as_bgr():
    """scikit-image's chelsea (an orange cat): red dominates blue, so channel 2 of BGR is the larger."""
    bgr = load_photo("chelsea")
    assert bgr.dtype == np.uint8 and bgr.shape == (300, 451, 3)
    assert bgr[..., 2].mean() > bgr[..., 0].mean() + 20
    x = model_input(bgr, 224, 224, "rne-0.5")
    assert x[0, 0].mean() > x[0, 2].mean()  # RGB: red first


def test_near_duplicate_check_catches_stereo_twin_and_mirror_not_distinct_photos():
    left, right, cat = load_photo("motorcycle_left"), load_photo("motorcycle_right"), load_photo("chelsea")
    assert similarity(left, right) >= NEAR_DUPLICATE
    assert similarity(cat, np.ascontiguousarray(cat[:, ::-1])) >= NEAR_DUPLICATE
    assert (
        similarity(cat, left) < NEAR_DUPLICATE
        and similarity(load_photo("astronaut"), load_photo("coffee")) < NEAR_DUPLICATE
    )


RESIZE_CALLS = ("cv2.resize", "F.interpolate", "TF.resize", "torch.nn.functional.interpolate")
# resizing that is not input preprocessing: model outputs back to the photo's size, the toy net's
# own upsampling layer, ground-truth label maps (nearest: class ids); and the RNE 0.10 hook's own
# input resize (in the ImageBuffer's format, with the constant's interpolation: test_hook
# shows it feeds the same argmax as this path)
ALLOWED = {
    ("hook.py", "resize_outputs"),
    ("hook.py", "overlay"),
    ("models.py", "forward"),
    ("voc.py", "read_label"),
    ("hook.py", "_resize"),
    ("wrap.py", "forward"),  # logits smaller than the input upsampled inside the graph, not the input
}


def test_no_other_resize_path_in_the_package():
    """Only export/rne/preprocess.py resizes model inputs; nothing imports torchvision's transforms."""
    offenders = []
    for path in sorted((ROOT / "export").glob("*.py")):
        text = path.read_text()
        tree = ast.parse(text)
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [getattr(node, "module", None) or ""] + [a.name for a in node.names]
                if any("transforms" in n for n in names):
                    offenders.append(f"{path.name}: imports {names}")
        if path.name == "preprocess.py":
            continue
        for fn in [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]:
            for call in [n for n in ast.walk(fn) if isinstance(n, ast.Call)]:
                name = ast.get_source_segment(text, call.func) or ""
                if name in RESIZE_CALLS and (path.name, fn.name) not in ALLOWED:
                    offenders.append(f"{path.name}:{fn.name}: {name}")
    assert offenders == []


def test_consumers_feed_exactly_the_preprocessed_photo(tmp_path):
    """Calibration, parity/bundles and the reference runtime (export.checks.replay) give the same
    tensor for a photo: every one of them goes through export.rne.preprocess."""
    from support import TINY

    from export.checks import replay
    from export.config import CONTRACTS
    from export.config_file import load_config
    from export.convert.feeds import calibration_inputs, parity_inputs

    cfg = load_config(TINY)
    v = cfg.variant("xnnpack_int8")
    want = model_input(load_photo("astronaut"), 32, 32, "rne-0.5")
    assert torch.equal(parity_inputs(cfg, v)["photo:astronaut"], want)
    [cal] = calibration_inputs(cfg, v, ["astronaut"])[:1]
    assert torch.equal(cal, want)
    assert np.array_equal(preprocess(load_photo("astronaut"), 32, 32, CONTRACTS.get("rne-0.5")), want.numpy())
    assert replay.preprocess is preprocess  # the reference runtime has no copy of its own


def test_the_reference_runs_once_per_feed_and_again_for_another_tensor():
    """verify and bundle share the reference's outputs (export.convert.feeds.OnceEach): one run per
    input tensor, whichever stage asks first; a new tensor, even an equal one, runs again."""
    from export.convert.feeds import OnceEach

    calls = []
    reference = OnceEach(lambda x: calls.append(x) or x * 2)
    a, b = torch.ones(1, 3, 2, 2), torch.ones(1, 3, 2, 2)
    assert torch.equal(reference(a), a * 2) and reference(a) is reference(a)
    reference(b)
    assert len(calls) == 2 and calls[0] is a and calls[1] is b


def test_the_bundled_photos_reference_runs_on_one_thread_the_others_on_every_thread():
    """The outputs written into the .bpte are computed on one thread (their bytes must not depend on
    the thread count); verify's other inputs keep the threads it has."""
    from export.convert.feeds import OnceEach

    threads = {}
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        photo, noise = torch.ones(1, 3, 2, 2), torch.zeros(1, 3, 2, 2)
        reference = OnceEach(lambda x: threads.setdefault(id(x), torch.get_num_threads()) or x, pinned=[photo])
        reference(photo), reference(noise)
        assert threads == {id(photo): 1, id(noise): 2} and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
