"""Config parsing: strict frozen dataclasses; every error names the file and the key."""

import dataclasses

import pytest
from support import DEEPLAB, TINY, write_yaml

from export.config_file import load_config
from export.errors import ExportError
from export.yaml_records import ConfigError


def test_deeplab_config_is_the_hook_contract():
    cfg = load_config(DEEPLAB)
    assert cfg.name == "deeplab_v3_resnet50"
    assert (cfg.input.height, cfg.input.width) == (224, 224)
    assert cfg.contract == "rne-0.5"
    assert len(cfg.labels) == 21 and cfg.labels[0] == "BACKGROUND" and cfg.labels[-1] == "TVMONITOR"
    assert [v.name for v in cfg.variants] == [
        "xnnpack_fp32",
        "xnnpack_int8",
        "coreml_fp16",
        "coreml_fp32",
        "xnnpack_fp32_520",
        "xnnpack_fp32_rne09",
    ]
    big = cfg.variant("xnnpack_fp32_520")
    assert (big.input.height, big.contract) == (520, "rne-0.5")
    assert cfg.artifact_name(big) == "deeplab_v3_resnet50_xnnpack_fp32_520.pte"
    v09 = cfg.variant("xnnpack_fp32_rne09")
    assert (v09.input.height, v09.contract) == (224, "rne-0.9")
    assert cfg.variant("xnnpack_fp32").input.height == 224  # the model's defaults fill in
    coreml = cfg.variant("coreml_fp16")
    assert coreml.coreml.deployment_target == "iOS17" and coreml.coreml.compute_units == "ALL"
    assert cfg.artifact_name(cfg.variant("xnnpack_fp32")) == "deeplab_v3_resnet50_xnnpack_fp32.pte"
    assert cfg.artifact_name(coreml) == "deeplab_v3_resnet50_coreml_fp16.pte"
    assert cfg.variant("xnnpack_fp32").tolerances.min_decisive_agreement >= 0.999


def test_config_is_frozen():
    cfg = load_config(DEEPLAB)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.name = "x"


def test_unknown_key_names_file_and_key(tmp_path, tiny_yaml_text):
    bad = write_yaml(tmp_path / "bad.yaml", tiny_yaml_text.replace("{max_rel_err: 1.0e-5,", "{max_rel_er: 1.0e-5,"))
    with pytest.raises(ConfigError) as e:
        load_config(bad)
    msg = str(e.value)
    assert (
        str(bad) in msg and "variants[0].tolerances.max_rel_er" in msg and "unknown key" in msg and "max_rel_err" in msg
    )


def test_unknown_top_level_key(tmp_path, tiny_yaml_text):
    bad = write_yaml(tmp_path / "bad.yaml", tiny_yaml_text + "\nextra: 1\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: extra: unknown key"):
        load_config(bad)


def test_missing_key_and_wrong_type(tmp_path, tiny_yaml_text):
    bad = write_yaml(tmp_path / "m.yaml", tiny_yaml_text.replace("contract: rne-0.5\n", ""))
    with pytest.raises(ConfigError, match=r"m.yaml: contract: missing required key"):
        load_config(bad)
    bad = write_yaml(tmp_path / "t.yaml", tiny_yaml_text.replace("height: 32", "height: big"))
    with pytest.raises(ConfigError, match=r"t.yaml: input.height: expected an integer"):
        load_config(bad)


def test_unknown_backend_lists_valid_names(tmp_path, tiny_yaml_text):
    bad = write_yaml(tmp_path / "b.yaml", tiny_yaml_text.replace("backend: xnnpack", "backend: vulkanx"))
    with pytest.raises(ExportError) as e:
        load_config(bad)
    assert "unknown backend 'vulkanx'" in str(e.value) and "coreml, xnnpack" in str(e.value)
    assert "variants[0].backend" in str(e.value)


def test_unknown_precision_and_contract(tmp_path, tiny_yaml_text):
    bad = write_yaml(tmp_path / "p.yaml", tiny_yaml_text.replace("precision: fp32", "precision: int4"))
    with pytest.raises(
        ConfigError,
        match=r"variants\[0\].precision: 'int4' is not supported by backend 'xnnpack' \(valid: fp32, int8\)",
    ):
        load_config(bad)
    bad = write_yaml(tmp_path / "c.yaml", tiny_yaml_text.replace("contract: rne-0.5", "contract: rne-9"))
    with pytest.raises(ExportError, match=r"unknown contract 'rne-9'.*valid contracts: rne-0.10, rne-0.5, rne-0.9"):
        load_config(bad)


def test_label_count_must_match_classes(tmp_path, tiny_yaml_text):
    bad = write_yaml(tmp_path / "l.yaml", tiny_yaml_text.replace("num_classes: 21", "num_classes: 20"))
    with pytest.raises(ConfigError, match="21 labels for model.num_classes=20"):
        load_config(bad)


def test_unknown_variant_lists_valid_names():
    cfg = load_config(TINY)
    with pytest.raises(
        ExportError, match="unknown variant 'xnnpack_fp16'.*valid variants: xnnpack_fp32, xnnpack_int8, coreml_fp16"
    ):
        cfg.variant("xnnpack_fp16")


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")


def test_variant_hash_changes_with_options():
    """One variant, one option changed at a time: every change moves the variant's hash (its files
    are rebuilt and Core ML's ids are seeded by it); an unchanged copy keeps it. The ModelSpec fields
    that are left out of the hash at their defaults (_LATER_MODEL_FIELDS) count once they are set."""
    from pathlib import Path

    from export.config import InputSpec
    from export.records import QuantizationRecipe

    rep = dataclasses.replace
    cfg = load_config(TINY)
    # quantization only exists on an int8 variant and coreml options on a Core ML one: each is
    # changed on its own variant, every other case on the int8 one (it has the most options)
    q8 = rep(cfg.variant("xnnpack_int8"), quantization=QuantizationRecipe())
    ml = cfg.variant("coreml_fp16")
    tol = q8.tolerances
    variant_cases = {
        "coreml.deployment_target": (ml, rep(ml, coreml=rep(ml.coreml, deployment_target="iOS18"))),
        "coreml.compute_units": (ml, rep(ml, coreml=rep(ml.coreml, compute_units="CPU_ONLY"))),
        "coreml.lower_full_graph": (ml, rep(ml, coreml=rep(ml.coreml, lower_full_graph=True))),
        "quantization.activation_observer": (
            q8,
            rep(q8, quantization=QuantizationRecipe(activation_observer="minmax")),
        ),
        "quantization.per_channel": (q8, rep(q8, quantization=QuantizationRecipe(per_channel=False))),
        "quantization.keep_fp32": (q8, rep(q8, quantization=QuantizationRecipe(keep_fp32=("backbone.0",)))),
        "quantization.keep_fp32_cap": (q8, rep(q8, quantization=QuantizationRecipe(keep_fp32_cap=0.1))),
        "tolerances.max_rel_err": (q8, rep(q8, tolerances=rep(tol, max_rel_err=tol.max_rel_err * 2))),
        "tolerances.min_snr_db": (q8, rep(q8, tolerances=rep(tol, min_snr_db=tol.min_snr_db + 1))),
        "tolerances.min_cosine": (q8, rep(q8, tolerances=rep(tol, min_cosine=0.5))),
        "tolerances.min_decisive_agreement": (q8, rep(q8, tolerances=rep(tol, min_decisive_agreement=0.5))),
        "tolerances.near_tie": (q8, rep(q8, tolerances=rep(tol, near_tie=0.05))),
        "input.height": (q8, rep(q8, input=InputSpec(64, q8.input.width))),
        "input.width": (q8, rep(q8, input=InputSpec(q8.input.height, 64))),
        "contract": (q8, rep(q8, contract="rne-0.9")),
        "allow_non_delegated": (q8, rep(q8, allow_non_delegated=("aten.cumsum.default",))),
        "min_rne": (q8, rep(q8, min_rne="0.5.7")),
    }
    model = cfg.model
    config_cases = {  # the config around the variant: what builds it or checks its files
        "parity.images": rep(cfg, parity=rep(cfg.parity, images=("astronaut",))),
        "parity.random_inputs": rep(cfg, parity=rep(cfg.parity, random_inputs=3)),
        "parity.seed": rep(cfg, parity=rep(cfg.parity, seed=1)),
        "calibration.count": rep(cfg, calibration=rep(cfg.calibration, count=3)),
        "calibration.seed": rep(cfg, calibration=rep(cfg.calibration, seed=1)),
        "calibration.views": rep(cfg, calibration=rep(cfg.calibration, views=2)),
        "accuracy.images": rep(cfg, accuracy=rep(cfg.accuracy, images=("astronaut",))),
        "labels": rep(cfg, labels=("background", *cfg.labels[1:])),
        "model.random_seed": rep(cfg, model=rep(model, random_seed=1)),
        "model.output_key": rep(cfg, model=rep(model, output_key="aux")),
        # the fields hashed only when set: a non-default value is a different model
        "model.mask": rep(cfg, model=rep(model, mask="logit")),
        "model.kwargs": rep(cfg, model=rep(model, kwargs={"a": 1})),
        "model.output_index": rep(cfg, model=rep(model, output_index=1)),
        "model.source": rep(cfg, model=rep(model, source="python")),
        "model.arch": rep(cfg, model=rep(model, arch="Unet")),
        "model.encoder": rep(cfg, model=rep(model, encoder="resnet34")),
        "model.path": rep(cfg, model=rep(model, path="weights.pth")),
    }
    unmoved = [k for k, (a, b) in variant_cases.items() if cfg.variant_hash(a) == cfg.variant_hash(b)]
    unmoved += [k for k, c in config_cases.items() if c.variant_hash(q8) == cfg.variant_hash(q8)]
    assert unmoved == [], f"these options do not change the variant hash: {unmoved}"
    # unchanged copies keep it: reloaded, copied, or only the file's place and bytes' hash differ
    same = [
        load_config(TINY).variant_hash(load_config(TINY).variant("xnnpack_int8")),
        cfg.variant_hash(rep(cfg.variant("xnnpack_int8"))),
        rep(cfg, source=Path("elsewhere/tiny_segnet.yaml"), sha256="0" * 64).variant_hash(cfg.variant("xnnpack_int8")),
        rep(cfg, model=rep(model, mask=None, kwargs={}, output_index=0)).variant_hash(cfg.variant("xnnpack_int8")),
    ]
    assert same == [cfg.variant_hash(cfg.variant("xnnpack_int8"))] * 4


def test_calibration_and_accuracy_images_must_be_apart(tmp_path, tiny_yaml_text):
    bad = write_yaml(
        tmp_path / "o.yaml",
        tiny_yaml_text.replace("images: [astronaut, chelsea]   # held", "images: [astronaut, coffee]   # held"),
    )
    with pytest.raises(ConfigError, match="accuracy.images: coffee also calibrate"):
        load_config(bad)


def test_int8_needs_calibration(tmp_path, tiny_yaml_text):
    text = tiny_yaml_text[: tiny_yaml_text.index("calibration:")] + tiny_yaml_text[tiny_yaml_text.index("variants:") :]
    with pytest.raises(ConfigError, match=r"variants\[1\].precision: int8 needs `calibration` and `accuracy`"):
        load_config(write_yaml(tmp_path / "q.yaml", text))


def test_variant_names_only_grow_where_needed(tmp_path, tiny_yaml_text):
    extra = (
        "  - backend: xnnpack\n    precision: fp32\n    input: {height: 48, width: 64}\n    contract: rne-0.9\n"
        "    tolerances: {max_rel_err: 1.0e-5, min_snr_db: 80.0, min_cosine: 0.99999, min_decisive_agreement: 0.999}\n"
    )
    cfg = load_config(write_yaml(tmp_path / "tiny_segnet.yaml", tiny_yaml_text + extra))
    assert [v.name for v in cfg.variants] == ["xnnpack_fp32", "xnnpack_int8", "coreml_fp16", "xnnpack_fp32_48x64_rne09"]
    dup = tiny_yaml_text + extra.replace(
        "input: {height: 48, width: 64}\n    contract: rne-0.9\n", "contract: rne-0.5\n"
    )
    with pytest.raises(ConfigError, match=r"variants\[3\]: duplicate variant 'xnnpack_fp32'"):
        load_config(write_yaml(tmp_path / "d.yaml", dup))


def test_every_shipped_config_loads():
    from support import ROOT

    from export.config_file import list_configs

    names = {load_config(p).name for p in list_configs(ROOT / "configs")}
    assert names == {
        "deeplab_v3_resnet50",
        "deeplab_v3_resnet101",
        "deeplab_v3_mobilenet_v3_large",
        "lraspp_mobilenet_v3_large",
        "fcn_resnet50",
        "fcn_resnet101",
    }


# --- extends: a family base, model files say only what differs ---------------------------------

BASE_TEXT = """\
model: {num_classes: 21}
input: {height: 32, width: 32}
contract: rne-0.5
labels: [BACKGROUND, AEROPLANE, BICYCLE, BIRD, BOAT, BOTTLE, BUS, CAR, CAT, CHAIR, COW,
         DININGTABLE, DOG, HORSE, MOTORBIKE, PERSON, POTTEDPLANT, SHEEP, SOFA, TRAIN, TVMONITOR]
parity: {images: [astronaut]}
tolerances:
  fp32: {max_rel_err: 1.0e-5, min_snr_db: 100.0, min_cosine: 0.99999, min_decisive_agreement: 0.999}
  fp16: {max_rel_err: 0.005, min_snr_db: 50.0, min_cosine: 0.9999, min_decisive_agreement: 0.995}
variants:
  - {backend: xnnpack, precision: fp32}
  - {backend: coreml, precision: fp16}
"""
MODEL_TEXT = "extends: base/family.yaml\nname: toy\nmodel: {builder: tiny_segnet}\n"


def _family(tmp_path, base=BASE_TEXT, model=MODEL_TEXT):
    write_yaml(tmp_path / "base" / "family.yaml", base)
    return write_yaml(tmp_path / "toy.yaml", model)


def test_extends_merges_mappings_and_fills_tolerances(tmp_path):
    cfg = load_config(_family(tmp_path, model=MODEL_TEXT + "input: {height: 48}\n"))
    assert (cfg.model.builder, cfg.model.num_classes) == ("tiny_segnet", 21)  # merged key by key
    assert (cfg.input.height, cfg.input.width) == (48, 32)
    assert [v.name for v in cfg.variants] == ["xnnpack_fp32", "coreml_fp16"]
    assert cfg.variant("coreml_fp16").tolerances.min_snr_db == 50.0  # the precision's default
    assert cfg.variant("coreml_fp16").coreml is not None  # Core ML options default filled in


def test_extra_variants_append_and_variants_replace(tmp_path):
    extra = MODEL_TEXT + (
        "extra_variants:\n  - {backend: xnnpack, precision: fp32, contract: rne-0.9,\n"
        "     tolerances: {max_rel_err: 1.0e-4, min_snr_db: 80.0, min_cosine: 0.9999,"
        " min_decisive_agreement: 0.99}}\n"
    )
    cfg = load_config(_family(tmp_path, model=extra))
    assert [v.name for v in cfg.variants] == ["xnnpack_fp32", "coreml_fp16", "xnnpack_fp32_rne09"]
    assert cfg.variant("xnnpack_fp32_rne09").tolerances.max_rel_err == 1.0e-4  # its own win
    only = load_config(_family(tmp_path / "b", model=MODEL_TEXT + "variants: [{backend: coreml, precision: fp16}]\n"))
    assert [v.name for v in only.variants] == ["coreml_fp16"]


def test_extends_errors_name_the_file_and_key(tmp_path):
    base_bad = BASE_TEXT.replace("parity: {images: [astronaut]}", "parity: {images: [astronaut], sead: 1}")
    model = _family(tmp_path, base=base_bad)
    with pytest.raises(ConfigError) as e:
        load_config(model)
    assert f"{tmp_path / 'base' / 'family.yaml'}: parity.sead: unknown key" in str(e.value)

    with pytest.raises(ConfigError, match=r"toy.yaml: extends: .*nowhere.yaml not found"):
        load_config(_family(tmp_path / "m", model=MODEL_TEXT.replace("base/family.yaml", "nowhere.yaml")))
    with pytest.raises(ConfigError, match=r"toy.yaml: extra_variants: only valid with `extends:`"):
        load_config(_family(tmp_path / "x", model="name: toy\nextra_variants: [{backend: xnnpack, precision: fp32}]\n"))
    no_default = BASE_TEXT.replace(
        "  fp16: {max_rel_err: 0.005, min_snr_db: 50.0, min_cosine: 0.9999, min_decisive_agreement: 0.995}\n", ""
    )
    with pytest.raises(ConfigError, match=r"toy.yaml: variants\[1\].tolerances: missing: .*tolerances.fp16"):
        load_config(_family(tmp_path / "t", base=no_default))
    loop = tmp_path / "loop"
    write_yaml(loop / "a.yaml", "extends: b.yaml\n")
    write_yaml(loop / "b.yaml", "extends: a.yaml\n")
    with pytest.raises(ConfigError, match=r"extends: a.yaml extends itself"):
        load_config(loop / "a.yaml")


def test_a_config_anywhere_extends_a_built_in_base_unless_it_has_its_own(tmp_path):
    """`extends: base/segmenter.yaml` in a maintainer's folder reads the base the tool ships; a file of
    that name beside the config wins."""
    text = "extends: base/segmenter.yaml\nname: mine\nmodel: {source: smp, arch: Unet, encoder: resnet18, num_classes: 2}\n"
    cfg = load_config(write_yaml(tmp_path / "mine.yaml", text + "labels: [a, b]\ninput: {height: 64, width: 64}\n"))
    assert cfg.contract == "rne-0.10" and [v.name for v in cfg.variants][0] == "xnnpack_fp32"
    own = write_yaml(tmp_path / "own" / "base" / "segmenter.yaml", BASE_TEXT)
    cfg = load_config(write_yaml(own.parent.parent / "toy.yaml", MODEL_TEXT.replace("family", "segmenter")))
    assert cfg.contract != "rne-0.10"


def test_expanded_config_is_hashed(tmp_path):
    """A change in the base changes the model's hashes; a comment does not."""
    cfg = load_config(_family(tmp_path))
    same = load_config(_family(tmp_path / "c", model="# a comment\n" + MODEL_TEXT))
    assert same.sha256 == cfg.sha256 and same.variant_hash(same.variants[0]) == cfg.variant_hash(cfg.variants[0])
    moved = load_config(_family(tmp_path / "d", base=BASE_TEXT.replace("images: [astronaut]", "images: [chelsea]")))
    assert moved.sha256 != cfg.sha256 and moved.variant_hash(moved.variants[0]) != cfg.variant_hash(cfg.variants[0])


def test_shipped_family_files_say_only_what_differs():
    """Each shipped model file is short; the bounds and photo lists live once, in the base."""
    from support import ROOT

    from export.config_file import list_configs

    for path in list_configs(ROOT / "configs"):
        text = path.read_text()
        assert "extends: base/voc_segmentation.yaml" in text, path
        assert len(text.splitlines()) <= 25 and "tolerances" not in text and "labels" not in text, path
    assert not list_configs(ROOT / "configs" / "base") or all(
        "name:" not in p.read_text() for p in list_configs(ROOT / "configs" / "base")
    )


def test_coreml_options_are_checked_at_load_against_coremltools_own_members(tmp_path):
    """The static lists the loader checks (no coremltools import per command) are coremltools' own."""
    import coremltools as ct

    from export.config import COREML_COMPUTE_UNITS, COREML_TARGETS

    assert list(COREML_TARGETS) == list(ct.target.__members__)
    assert list(COREML_COMPUTE_UNITS) == list(ct.ComputeUnit.__members__)
    text = TINY.read_text()
    assert "deployment_target: iOS17" in text and "compute_units: ALL" in text
    for old, new, key in (
        ("deployment_target: iOS17", "deployment_target: iOS99", "coreml.deployment_target"),
        ("compute_units: ALL", "compute_units: NPU", "coreml.compute_units"),
    ):
        bad = write_yaml(tmp_path / "tiny_segnet.yaml", text.replace(old, new))
        with pytest.raises(ConfigError, match=rf"tiny_segnet.yaml: variants\[2\]\.{key}: unknown '.*'; valid: "):
            load_config(bad)
