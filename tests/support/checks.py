"""Checks several test files make of a finished build: every gate recorded, the constants type-checked,
the hook's run agreeing with eager PyTorch on photos."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import torch

from export.checks.replay import ARGMAX, SegmentationModel
from export.config import CONTRACTS
from export.config_file import load_config
from export.convert.wrap import wrap
from export.records import Entry
from export.rne.preprocess import load_photo, preprocess
from export.rne.runtimes import load_runtimes, runtimes_to_prove
from export.sources import load_model
from export.store.manifest import read_manifest
from support.paths import TINY
from support.records import published_file, published_record, typed
from support.typescript import tsc

LINE_0_10 = "0.10.0 – 0.10.2"


def check_gates(out: Path, cfg_path: Path, rewrites: tuple[str, ...] = ()) -> dict[str, Entry]:
    """Every default variant of the config is in the manifest with every gate's record: nothing
    outside the delegate (or each op named), parity, RNE 0.10.2's own schema check with the model's
    label count, the bundle verified where the backend runs, int8 accuracy; the contract carries the
    model's normalization; the release lines claimed are 0.10's alone unless the labels are VOC's."""
    cfg = load_config(cfg_path)
    entries = read_manifest(out / "manifest.json").artifacts
    assert sorted(entries) == sorted(cfg.artifact_name(v) for v in cfg.variants)
    mean, std = cfg.contract_for(cfg.variants[0]).runtime_mean, cfg.contract_for(cfg.variants[0]).runtime_std
    for name, e in entries.items():
        assert e.delegation.non_delegated_ops == {}, (name, e.delegation)
        assert e.delegation.delegated_subgraphs >= 1
        assert e.parity.worst is not None or e.parity.mode == "not executed"
        assert (
            e.rne_schema is not None
            and e.rne_schema.passed
            and e.rne_schema.package == "react-native-executorch@0.10.2"
        )
        assert e.labels == cfg.labels and e.output.shape == (1, len(cfg.labels), cfg.input.height, cfg.input.width)
        assert (e.contract.name, e.contract.runtime_mean, e.contract.runtime_std) == ("rne-0.10", mean, std)
        assert e.output_adapter is not None
        if e.backend == "xnnpack":
            assert e.bundle.verified == "executed" and e.parity.mode == "executed"
            assert all(any(r in line for line in e.graph_rewrites) for r in rewrites), e.graph_rewrites
        if e.precision == "int8":
            assert e.accuracy is not None and e.accuracy.bounds == "smoke" and e.accuracy.worst
        proven = runtimes_to_prove(e, load_runtimes())
        assert {v: [ln.label for ln in lines] for v, lines in proven.items()} == {"1.3.1": [LINE_0_10]}
    return entries


def check_constants(tmp: Path, outs: list[Path]) -> str:
    """The published constants of these builds: one useSemanticSegmenter group per model (no constant for
    the VOC-only hooks), with its labels as a typed union and its own normalizeOpts; modelUrls.ts and
    each group's snippet compile with a real tsc against react-native-executorch 0.10.2."""
    from export.release import codegen
    from export.release.snippets import group_snippet

    pubs = []
    for out in outs:
        arts = json.loads((out / "manifest.json").read_text())["artifacts"]
        files = [
            published_file(n, f"{e['backend']}/{n}", f"https://hf.example/{e['model']}/{n}") for n, e in arts.items()
        ]
        pubs.append(
            typed(published_record(f"org/{next(iter(arts.values()))['model']}", "v1.0.0", "c" * 40, files, arts))
        )
    assert codegen.constants_from(pubs) == []  # the hooks before 0.10 hard-code VOC's 21 labels
    groups = codegen.groups_from(pubs)
    assert len(groups) == len(outs) and all(g.family.label == LINE_0_10 and g.feed == "model" for g in groups)
    ts = codegen.render_ts(pubs)
    (tmp / "modelUrls.ts").write_text(ts)
    files = ["modelUrls.ts"]
    for g in groups:
        (tmp / f"{g.name}.tsx").write_text(group_snippet(g))
        files.append(f"{g.name}.tsx")
    proc = tsc(tmp, *files, rne="0.10.2")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return ts


def check_run_agrees_with_eager(out: Path, cfg_path: Path, photo: str = "astronaut") -> float:
    """`run --rne 0.10`'s segment() on a photo (the constant's modelOpts, the app's resize) against the
    eager model fed the same input: argmax agreement on the pixels eager does not near-tie."""
    import torch

    from export.checks.replay import SegmentationModel
    from export.metrics import compare

    cfg = load_config(cfg_path)
    variant = cfg.variant("xnnpack_fp32")
    seg = SegmentationModel(out / cfg.artifact_name(variant)).segment(load_photo(photo), rne="0.10")
    eager = wrap(load_model(cfg, "random").module, cfg, variant)
    with torch.no_grad():
        want = eager(torch.from_numpy(seg.model_input))
    got = torch.from_numpy(SegmentationModel(out / cfg.artifact_name(variant)).logits(seg.model_input))[None]
    m = compare(got, want, near_tie=0.02)
    assert m.decisive_agreement >= 0.999 and m.snr_db > 80, m
    assert np.array_equal(seg.argmax, want[0].argmax(0).numpy()) or m.argmax_agreement >= 0.999
    return m.decisive_agreement


FP32_AGREEMENT = 0.999  # the bar for fp32 artifacts vs eager on real photos


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


PHOTOS = ["astronaut", "chelsea", "coffee", "motorcycle_left", "rocket"]


def photo_path(name: str) -> Path:
    import skimage

    return next(p for p in Path(skimage.data_dir).iterdir() if p.stem == name)


def bounds_split_healthy_from_broken(checkpoint, member: str, tmp_path) -> None:
    """The eager quantized model (the file's arithmetic) of each int8 recipe vs fp32 on a tiny-net
    family member, held to the config's bounds: the shipped recipe on a healthy member passes, every
    broken recipe and every broken member fails."""
    from export.checks import int8_family, weight_family
    from export.config_file import load_config

    cfg = load_config(TINY)
    broken_member = member in {m.name for m in weight_family.BROKEN_MEMBERS}
    recipes = ["shipped"] if broken_member else list(int8_family.RECIPES)
    res = int8_family.measure(cfg, cfg.variant("xnnpack_int8"), checkpoint, recipes, tmp_path)
    for recipe, per in res["rows"].items():
        failed = cfg.accuracy.bounds.failures(int8_family.worst_of(per))
        healthy = recipe == "shipped" and not broken_member
        assert bool(failed) != healthy, (member, recipe, failed, int8_family.worst_of(per))
