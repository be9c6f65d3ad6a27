"""`rne-export new`: a config from a model's own files for each source; missing or contradictory facts
refused in one line before anything is written; `--config NAME` lookup; help that lists what a user
can run."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from support import new, segformer_folder

from export import cli
from export.config_file import find_config, load_config
from export.data import CONFIGS
from export.rne.runtimes import PASCAL_VOC_LABELS


def refused(capsys, folder: Path, *argv: str) -> str:
    """One error line, exit 2, no config written."""
    code, out, err = new(capsys, *argv)
    lines = [ln for ln in err.splitlines() if ln.startswith("error: ")]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, (code, out, err)
    assert not (folder / "configs").exists() or not list((folder / "configs").iterdir())
    return lines[0]


def test_help_lists_every_command_a_user_can_run_and_nothing_else(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["--help"])
    out = capsys.readouterr().out
    assert e.value.code == 0
    commands = out.split("  COMMAND\n", 1)[1].split("\noptions:")[0]
    listed = {ln.split()[0] for ln in commands.splitlines() if ln.startswith("    ") and ln[4] != " "}
    assert listed == {
        "new", "build", "publish", "run", "bench", "card", "codegen", "compat", "explain-int8", "verify-coreml",
        "check-urls",
    }  # fmt: skip
    assert "SUPPRESS" not in out and "bench-probe" not in out
    with pytest.raises(SystemExit):
        cli.main(["new", "--help"])
    out = capsys.readouterr().out
    for flag in ("--smp", "--transformers", "--python", "--torchvision", "--labels", "--size", "--normalize"):
        assert flag in out


def test_python_builder_written_from_flags_and_usable_from_any_folder(here, capsys, monkeypatch):
    code, out, _ = new(capsys, "--python", "person.py:build", "--labels", "background,person", "--mask", "probability")
    assert code == 0
    target = here / "configs" / "person.yaml"
    assert out.startswith(f"wrote {Path('configs') / 'person.yaml'}\n")
    assert "ASSUMED ImageNet mean/std" in out  # a bare builder's normalization is said to be assumed
    assert "rne-export build --config configs/person.yaml --weights random" in out
    assert "rne-export run --rne 0.10 artifacts/person/person_xnnpack_fp32.pte" in out
    text = target.read_text()
    assert text.count("NOT measured") >= 3 and "AUTO" not in text
    data = yaml.safe_load(text)
    assert data["model"] == {
        "source": "python",
        "builder": "../person.py:build",
        "mask": "probability",
        "num_classes": 2,
    }
    elsewhere = here / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the builder is found relative to the config, not the working folder
    cfg = load_config(target)
    assert cfg.labels == ("background", "person") and cfg.contract == "rne-0.10"
    assert [v.name for v in cfg.variants] == ["xnnpack_fp32", "xnnpack_int8", "coreml_fp16"]
    assert cfg.normalize is not None and cfg.normalize.mean_std()[0] == (0.485, 0.456, 0.406)


def test_python_builder_missing_or_contradictory_facts_refused_before_anything_is_written(here, capsys):
    line = refused(capsys, here, "--python", "three.py:build")
    assert "--labels: a python builder's files do not name its classes" in line and "(3 names)" in line
    line = refused(capsys, here, "--python", "three.py:build", "--labels", "a,b")
    assert "--labels: 2 label(s), but the model outputs 3 channel(s)" in line
    line = refused(capsys, here, "--python", "person.py:build", "--labels", "background,person")
    assert line.startswith("error: --mask: the model outputs one channel")
    line = refused(capsys, here, "--python", "person.py:build")
    assert "--labels" in line and "--mask logit|probability" in line
    assert "no such file" in refused(capsys, here, "--python", "nothere.py:build", "--labels", "a,b,c")
    assert "expected" in refused(capsys, here, "--python", "three.py", "--labels", "a,b,c")
    assert "--size" in refused(capsys, here, "--python", "three.py:build", "--labels", "a,b,c", "--size", "0")
    line = refused(capsys, here, "--python", "three.py:build", "--labels", "a,b,c", "--normalize", "0.5")
    assert line.startswith("error: --normalize '0.5': expected")
    assert "labels: " in refused(capsys, here, "--python", "three.py:build", "--labels", "a,a,b")  # config's own check


def test_an_existing_config_is_kept_unless_forced(here, capsys):
    assert new(capsys, "--python", "three.py:build", "--labels", "a,b,c")[0] == 0
    before = (here / "configs" / "three.yaml").read_text()
    code, _, err = new(capsys, "--python", "three.py:build", "--labels", "x,y,z")
    assert code == 2 and "exists; pass --force" in err
    assert (here / "configs" / "three.yaml").read_text() == before
    assert new(capsys, "--python", "three.py:build", "--labels", "x,y,z", "--force")[0] == 0
    assert load_config(here / "configs" / "three.yaml").labels == ("x", "y", "z")


def test_smp_needs_labels_and_a_size_its_stride_takes(here, capsys):
    line = refused(capsys, here, "--smp", "Unet:resnet18")
    assert line.startswith("error: --labels: segmentation-models-pytorch builds the head from the class count")
    line = refused(capsys, here, "--smp", "Unet:resnet18", "--classes", "bg,road,car", "--size", "100")
    assert "--size 100x100" in line and "output stride 32" in line and "--size 96x96" in line
    assert "unknown segmentation-models-pytorch encoder" in refused(
        capsys, here, "--smp", "Unet:resnet9", "--classes", "a,b"
    )
    assert "ARCH:ENCODER" in refused(capsys, here, "--smp", "Unet", "--classes", "a,b")
    code, out, _ = new(capsys, "--smp", "Unet:resnet18", "--classes", "bg,road,car", "--size", "96x128")
    assert code == 0
    cfg = load_config(here / "configs" / "unet_resnet18.yaml")
    assert (cfg.model.arch, cfg.model.encoder, cfg.model.num_classes) == ("Unet", "resnet18", 3)
    assert (cfg.input.height, cfg.input.width) == (96, 128)


def test_transformers_folder_gives_labels_size_and_normalization(here, capsys):
    segformer_folder(here / "SegFormer-b0", size=64)
    line = refused(capsys, here, "--transformers", "SegFormer-b0", "--labels", "a,b,c,d")
    assert "contradicts SegFormer-b0/config.json's id2label" in line
    line = refused(capsys, here, "--transformers", "SegFormer-b0", "--size", "128")
    assert "--size 128x128: contradicts preprocessor_config.json's size (64x64)" in line
    assert "--name 'Seg'" in refused(capsys, here, "--transformers", "SegFormer-b0", "--name", "Seg")
    code, out, _ = new(capsys, "--transformers", "SegFormer-b0")
    assert code == 0 and "(SegFormer-b0/config.json's id2label)" in out and "(preprocessor_config.json's size)" in out
    cfg = load_config(here / "configs" / "segformer_b0.yaml")  # the name: the folder's, as a config name
    assert cfg.labels == ("background", "sky", "tree", "person") and (cfg.input.height, cfg.input.width) == (64, 64)
    assert cfg.model.path == "../SegFormer-b0" and cfg.normalize is not None


def test_torchvision_labels_and_normalization_from_its_weights_metadata(here, capsys):
    code, out, _ = new(capsys, "--torchvision", "lraspp_mobilenet_v3_large", "--size", "64")
    assert code == 0 and "LRASPP_MobileNet_V3_Large_Weights.COCO_WITH_VOC_LABELS_V1 categories" in out
    cfg = load_config(here / "configs" / "lraspp_mobilenet_v3_large.yaml")
    assert cfg.labels == PASCAL_VOC_LABELS and cfg.model.weights == "COCO_WITH_VOC_LABELS_V1"
    assert cfg.normalize is not None and cfg.normalize.mean_std()[1] == (0.229, 0.224, 0.225)
    # MobileNetV3's layout copies, allowed as the built-in config of the same builder allows them
    allowed = {v.name: v.allow_non_delegated for v in cfg.variants}
    assert allowed == {
        "xnnpack_fp32": ("dim_order_ops._to_dim_order_copy.default",),
        "xnnpack_int8": ("dim_order_ops._to_dim_order_copy.default",),
        "coreml_fp16": (),
    }
    assert (
        "configs/lraspp_mobilenet_v3_large.yaml's" in (here / "configs" / "lraspp_mobilenet_v3_large.yaml").read_text()
    )
    assert "valid model builders" in refused(capsys, here / "x", "--torchvision", "deeplabv4")


def test_config_by_name_in_the_working_folder_then_built_in(here, capsys):
    assert find_config("deeplab_v3_resnet50") == CONFIGS / "deeplab_v3_resnet50.yaml"
    assert new(capsys, "--python", "three.py:build", "--labels", "a,b,c", "--name", "deeplab_v3_resnet50")[0] == 0
    assert find_config("deeplab_v3_resnet50") == Path("configs") / "deeplab_v3_resnet50.yaml"
    with pytest.raises(Exception, match=r"no model of that name.*deeplab_v3_resnet101.*rne-export new"):
        find_config("nothing_here")
