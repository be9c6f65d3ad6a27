"""Bad input across all seven commands, table-driven and in-process (fast): each case exits with the
documented code (2 bad input), prints exactly one `error:` line naming the thing, no traceback,
and leaves every folder it was pointed at byte-identical (nothing written, nothing half-done).
Generated configs and manifests: test_properties. The Hub sees no request for bad --repo/--tag:
test_publish. Config errors without importing torch: test_cli."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from support import DATA, ROOT, TINY, published

from export import cli
from export.bench_records import BENCH_SCHEMA_VERSION
from export.config import bundled_photos

PHOTO = str(bundled_photos()["chelsea"])
XNN = "tiny_segnet_xnnpack_fp32.pte"
INT8 = "tiny_segnet_xnnpack_int8.pte"
BINARY = b"\x89PNG\r\n\x1a\n\x00\xff\xfe"

Case = tuple[str, list[str], int, tuple[str, ...]]  # (what, argv, exit code, words the one error line holds)


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _run_cases(cases: list[Case], capsys) -> list[str]:
    failures = []
    for what, argv, code, words in cases:
        rc = cli.main(argv)
        captured = capsys.readouterr()
        errors = [line for line in captured.err.splitlines() if line.startswith("error: ")]
        if rc != code or len(errors) != 1 or "Traceback" in captured.err or not all(w in errors[0] for w in words):
            failures.append(f"{what}: exit {rc}, {errors or captured.err[-300:]}")
    return failures


# --- configs: each refused at load, naming the file and the key (build never starts) --------------

CONFIGS = [
    # (what, text change (old, new) in the tiny config, the key named, words of the message)
    ("name with a dash", ("name: tiny_segnet", "name: tiny-seg"), "name", "lowercase letters"),
    ("name that climbs out of --out", ("name: tiny_segnet", "name: ../../evil"), "name", "lowercase letters"),
    ("name with a dot", ("name: tiny_segnet", "name: tiny.seg"), "name", "lowercase letters"),
    ("name in capitals", ("name: tiny_segnet", "name: TinySeg"), "name", "lowercase letters"),
    ("name too long", ("name: tiny_segnet", "name: " + "a" * 65), "name", "lowercase letters"),
    ("name a number", ("name: tiny_segnet", "name: 7"), "name", "expected a string"),
    ("duplicate key", ("name: tiny_segnet", "name: tiny_segnet\nname: x"), "", "key 'name' is given twice"),
    ("not YAML", ("name: tiny_segnet", "name: [tiny"), "", "not valid YAML"),
    ("a list, not a mapping", None, "", "mapping"),
    ("empty file", None, "", "mapping"),
    ("unknown top-level key", ("name: tiny_segnet", "name: tiny_segnet\nbogus: 1"), "bogus", "unknown key"),
    ("unknown model key", ("output_key: out", "output_key: out\n  depth: 5"), "model.depth", "unknown key"),
    (
        "unknown builder",
        ("builder: tiny_segnet", "builder: deeplabv4"),
        "model.builder",
        "valid model builders: deeplabv3_mobilenet",
    ),
    ("unknown contract", ("contract: rne-0.5", "contract: rne-9"), "contract", "rne-0.9"),
    (
        "unknown backend",
        ("backend: xnnpack\n    precision: fp32", "backend: vulkan\n    precision: fp32"),
        "",
        "vulkan",
    ),
    ("unknown precision", ("precision: fp32", "precision: fp64"), "", "fp64"),
    ("unknown variant key", ("precision: fp32\n", "precision: fp32\n    speed: fast\n"), "speed", "unknown key"),
    (
        "NaN bound",
        ("min_centered_snr_db: 24.0}", "min_centered_snr_db: .nan}"),
        "accuracy.bounds.min_centered_snr_db",
        "finite number",
    ),
    ("infinite tolerance", ("{max_rel_err: 1.0e-5,", "{max_rel_err: .inf,"), "variants[0].tolerances", "finite"),
    ("tolerance a string", ("{max_rel_err: 1.0e-5,", "{max_rel_err: tight,"), "variants[0].tolerances", "number"),
    ("huge input", ("height: 32", "height: 100000"), "input", "1..2048"),
    ("zero input", ("width: 32", "width: 0"), "input", "1..2048"),
    ("negative input", ("width: 32", "width: -32"), "input", "1..2048"),
    ("input a string", ("width: 32", "width: wide"), "input", "integer"),
    ("labels short of the classes", ("labels: [BACKGROUND, ", "labels: ["), "labels", "21"),
    ("unknown parity photo", ("images: [astronaut, chelsea]\n  random", "images: [selfie]\n  random"), "", "selfie"),
    ("unknown calibration photo", ("images: [coffee, rocket,", "images: [cofee, rocket,"), "", "'cofee'"),
    ("unknown accuracy photo", ("chelsea]   # held", "kitten]   # held"), "accuracy.images[1]", "'kitten'"),
    ("calibration folder missing", ("  count: 2", "  folder: /no/such/photos\n  count: 2"), "", "/no/such/photos"),
    ("zero calibration count", ("  count: 2", "  count: 0"), "calibration.count", "must be positive"),
    ("no variants", ("variants:", "variants: []\nold_variants:"), "", "variants"),
    ("a key the loader sets", ("name: tiny_segnet", "name: tiny_segnet\nsha256: abc"), "sha256", "unknown key"),
    ("a date for a name", ("name: tiny_segnet", "name: 2026-12-04"), "name", "expected a plain value"),
    ("true for a count", ("  count: 2", "  count: true"), "calibration.count", "expected an integer"),
    ("a quoted count", ("  count: 2", "  count: '2'"), "calibration.count", "expected an integer"),
    (
        "keep_fp32 a number",
        ("precision: int8", "precision: int8\n    quantization: {keep_fp32: 5}"),
        "quantization.keep_fp32",
        "expected a string, got 5",
    ),
    (
        "extends a missing base",
        ("name: tiny_segnet", "extends: nowhere.yaml\nname: tiny_segnet"),
        "extends",
        "nowhere.yaml not found",
    ),
]


def _config_cases(tmp: Path) -> list[Case]:
    text = TINY.read_text()
    cases = []
    for what, change, key, words in CONFIGS:
        if change is None:
            new = "- just\n- a list\n" if what.startswith("a list") else ""
        else:
            assert change[0] in text, f"the fixture no longer has {change[0]!r}"
            new = text.replace(change[0], change[1], 1)
        path = tmp / f"{what.replace(' ', '_').replace(',', '')}.yaml"
        path.write_text(new)
        named = (str(path), key)  # the file, and the key (or a word of it) the message names
        argv = ["build", "--config", str(path), "--weights", "random", "--out", str(tmp / "o")]
        cases.append((f"build: config {what}", argv, 2, (*named, words)))
    return cases


# --- model sources (export/sources/): each refused before anything is written -----------------------

SEGMENTER_BASE = ROOT / "configs" / "base" / "segmenter.yaml"
PERSON_MASK = DATA / "models" / "person_mask.py"
BUILDERS = {
    "broken.py": "import no_such_package_here\n",
    "not_a_module.py": "def build():\n    return {'weights': 1}\n",
    "three.py": "from torch import nn\n\ndef build():\n    return nn.Conv2d(3, 3, 1)\n",
    "flat.py": "import torch\nfrom torch import nn\n\n"
    "class M(nn.Module):\n    def forward(self, x):\n        return x.mean(1)\n\ndef build():\n    return M()\n",
    "instances.py": "import torch\nfrom torch import nn\n\n"
    "class M(nn.Module):\n    def forward(self, x):\n        return [{'boxes': x[0, :1], 'masks': x}]\n\n"
    "def build():\n    return M()\n",
}


def _segmenter_yaml(tmp: Path, name: str, model: str, extra: str = "", labels: str = "[background, person]") -> Path:
    path = tmp / f"{name}.yaml"
    path.write_text(
        f"extends: {SEGMENTER_BASE}\nname: {name}\nmodel:\n{model}\nlabels: {labels}\n"
        f"input: {{height: 64, width: 64}}\n{extra}"
    )
    return path


def _hf_folder(tmp: Path, name: str, model_type: str = "segformer", mean: float = 0.485) -> Path:
    folder = tmp / name
    folder.mkdir()
    labels = {"0": "background", "1": "person"}
    (folder / "config.json").write_text(json.dumps({"model_type": model_type, "id2label": labels, "num_labels": 2}))
    pre = {"do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True, "size": {"height": 64, "width": 64}}
    pre |= {"image_mean": [mean, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225]}
    (folder / "preprocessor_config.json").write_text(json.dumps(pre))
    return folder


def _source_cases(tmp: Path) -> list[Case]:
    import torch

    tmp = tmp / "sources"
    tmp.mkdir()
    for name, code in BUILDERS.items():
        (tmp / name).write_text(code)
    shutil.copy(PERSON_MASK, tmp / "person_mask.py")
    py = "  source: python\n  num_classes: 2\n  builder: {}"
    good = py.format("person_mask.py:build") + "\n  mask: probability"
    import importlib.util

    spec = importlib.util.spec_from_file_location("person_mask_for_cases", tmp / "person_mask.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    state = module.build(width=16).state_dict()
    torch.save(module.build(width=8).state_dict(), tmp / "narrow.pth")
    state["down.0.weight"][0, 0, 0, 0] = float("nan")
    torch.save(state, tmp / "nan.pth")
    smp = "  source: smp\n  num_classes: 2\n  arch: {}\n  encoder: {}"
    hf = "  source: transformers\n  num_classes: 2\n  path: {}"
    _hf_folder(tmp, "hf_mean", mean=0.5)
    _hf_folder(tmp, "hf_panoptic", model_type="mask2former")
    rows = [
        # (what, model section, extra YAML, labels, --weights, words)
        (
            "unknown source",
            "  source: keras\n  num_classes: 2\n  builder: x",
            "",
            None,
            "random",
            ("model.source", "valid model sources: python, smp"),
        ),
        ("unknown smp arch", smp.format("Unet3000", "resnet18"), "", None, "random", ("model.arch", "valid: Unet")),
        ("unknown smp encoder", smp.format("Unet", "resnet9000"), "", None, "random", ("model.encoder", "resnet18")),
        ("size off the smp stride", smp.format("Unet", "resnet18"), "", None, "random", ("input", "output stride 32")),
        (
            "builder that does not import",
            py.format("broken.py:build"),
            "",
            None,
            "random",
            ("does not import", "no_such_package_here"),
        ),
        ("builder file missing", py.format("nowhere.py:build"), "", None, "random", ("model.builder", "no such file")),
        (
            "builder module not on the path",
            py.format("person_mask:build"),
            "",
            None,
            "random",
            ("model.builder", "does not import"),
        ),
        (
            "builder without the function",
            py.format("person_mask.py:make"),
            "",
            None,
            "random",
            ("has no function 'make'",),
        ),
        (
            "builder returning no module",
            py.format("not_a_module.py:build"),
            "",
            None,
            "random",
            ("returned dict, not a torch.nn.Module",),
        ),
        (
            "labels count off the outputs",
            py.format("three.py:build"),
            "",
            None,
            "random",
            ("outputs 3 class scores", "2 labels"),
        ),
        ("output that is not class scores", py.format("flat.py:build"), "", None, "random", ("[1,K,H,W]",)),
        ("instance head", py.format("instances.py:build"), "", None, "random", ("detection or instance head",)),
        (
            "one channel without model.mask",
            py.format("person_mask.py:build"),
            "",
            None,
            "random",
            ("model.mask: logit",),
        ),
        (
            "weights that do not fit",
            good,
            "",
            None,
            str(tmp / "narrow.pth"),
            ("does not fit", "down.0.weight is (8, 3, 3, 3)"),
        ),
        ("weights holding NaN", good, "", None, str(tmp / "nan.pth"), ("down.0.weight holds 1 NaN/Inf",)),
        (
            "preprocessor contradicts the config",
            hf.format("hf_mean"),
            "",
            None,
            "random",
            ("normalize", "preprocessor_config.json"),
        ),
        ("labels contradict id2label", hf.format("hf_mean"), "", "[background, cat]", "random", ("labels", "id2label")),
        (
            "panoptic transformers model",
            hf.format("hf_panoptic"),
            "normalize: {mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225]}\n",
            None,
            "random",
            ("mask2former", "not a semantic-segmentation model"),
        ),
        (
            "normalize on a VOC contract",
            good,
            "contract: rne-0.5\nnormalize: {mean: 0.5, std: 0.5}\n",
            None,
            "random",
            ("normalize", "only for contract rne-0.10"),
        ),
        (
            "normalize with both forms",
            good,
            "normalize: {mean: 0.5, std: 0.5, alpha: 1, beta: 0}\n",
            None,
            "random",
            ("normalize", "either mean and std"),
        ),
        ("a label given twice", good, "", "[person, person]", "random", ("labels", "given twice")),
        (
            "a key another source reads",
            good + "\n  encoder: resnet18",
            "",
            None,
            "random",
            ("model.encoder", "only by: smp"),
        ),
    ]
    cases = []
    for i, (what, model, extra, labels, weights, words) in enumerate(rows):
        if what == "size off the smp stride":
            extra = "variants:\n  - {backend: xnnpack, precision: fp32, input: {height: 72, width: 72}}\n"
        path = _segmenter_yaml(tmp, f"src{i}", model, extra, labels or "[background, person]")
        argv = ["build", "--config", str(path), "--weights", weights, "--out", str(tmp.parent / "o")]
        cases.append((f"build: source: {what}", argv, 2, words))
    return cases


# --- a good build changed behind the manifest's back: bench, card, run and publish all refuse ------


def _flip(path: Path, at: int = 200) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))


def _edit_manifest(change: Callable[[dict], None]) -> Callable[[Path], None]:
    def edit(folder: Path) -> None:
        manifest = json.loads((folder / "manifest.json").read_text())
        change(manifest)
        (folder / "manifest.json").write_text(json.dumps(manifest))

    return edit


TAMPERS: dict[str, tuple[Callable[[Path], None], str]] = {
    "a flipped byte": (lambda d: _flip(d / XNN), "does not match its manifest sha256/size"),
    "another valid program": (lambda d: shutil.copy(d / INT8, d / XNN), "does not match its manifest sha256/size"),
    "a flipped bundle byte": (lambda d: _flip(d / XNN.replace(".pte", ".bpte")), "does not match its manifest"),
    "artifact deleted": (lambda d: (d / XNN).unlink(), "is missing; re-run the export"),
    "bundle deleted": (lambda d: (d / XNN.replace(".pte", ".bpte")).unlink(), "is missing; re-run the export"),
    "path out of the folder": (
        _edit_manifest(lambda m: m["artifacts"][XNN].update(path="../secret.txt")),
        "re-export",
    ),
    "bundle path absolute": (
        _edit_manifest(lambda m: m["artifacts"][XNN]["bundle"].update(path="/etc/passwd")),
        "re-export",
    ),
    "no artifacts key": (_edit_manifest(lambda m: m.pop("artifacts")), "re-export"),
    "entry without contract": (_edit_manifest(lambda m: m["artifacts"][XNN].pop("contract")), "contract"),
    "entry with an unknown key": (_edit_manifest(lambda m: m["artifacts"][XNN].update(bogus=1)), "bogus"),
    "older schema": (_edit_manifest(lambda m: m.update(schema=2)), "schema 2, this tool reads schema 4"),
    "size as a string": (_edit_manifest(lambda m: m["artifacts"][XNN].update(bytes="12")), "bytes"),
    "manifest.json a list": (lambda d: (d / "manifest.json").write_text("[]"), "re-export"),
    "manifest.json binary": (lambda d: (d / "manifest.json").write_bytes(BINARY), "re-export"),
}


def _tamper_cases(good: Path, tmp: Path) -> tuple[list[Case], list[Path]]:
    cases, folders = [], []
    for i, (what, (tamper, words)) in enumerate(TAMPERS.items()):
        folder = tmp / f"tampered-{i}"
        shutil.copytree(good, folder)
        tamper(folder)
        folders.append(folder)
        m = str(folder / "manifest.json")
        for command, argv in (
            ("run", ["run", str(folder / XNN), PHOTO]),
            ("bench", ["bench", "--manifest", m, "--runs", "1", "--warmup", "0"]),
            ("card", ["card", "--manifest", m]),
            ("publish", ["publish", "--manifest", m, "--repo", "o/r", "--tag", "v1.0.0"]),
        ):
            said = "no such file" if (command, what) == ("run", "artifact deleted") else words  # run is given the path
            cases.append((f"{command}: {what}", argv, 2, (said,)))
    return cases, folders


# --- everything else, command by command ------------------------------------------------------------


def _argument_cases(arts: Path, tmp: Path) -> list[Case]:
    (tmp / "file").write_text("x")
    (tmp / "broken.json").write_text("{")
    (tmp / "binary").write_bytes(BINARY)
    (tmp / "empty.pth").write_bytes(b"")
    (tmp / "list.json").write_text("[]")
    (tmp / "tiny_two.yaml").write_text(TINY.read_text().replace("name: tiny_segnet", "name: tiny_two"))
    (tmp / "empty.ts").write_text("export {};\n")
    fake = tmp / "fake-photos"  # a calibration folder whose JPEGs are not images / are cut short
    fake.mkdir()
    (fake / "a.jpg").write_text("not a jpeg")
    (fake / "b.jpg").write_bytes(Path(PHOTO).read_bytes()[:300])
    fake_cfg = tmp / "calib.yaml"
    fake_cfg.write_text(TINY.read_text().replace("  count: 2", f"  folder: {fake}\n  count: 2"))
    bare = tmp / "bare"  # programs that are not: run refuses each, naming the file
    bare.mkdir()
    (bare / "text.pte").write_text("hello, not a program\n")
    (bare / "empty.pte").write_bytes(b"")
    (bare / "cut.pte").write_bytes((arts / XNN).read_bytes()[:1000])
    pte, manifest = str(arts / XNN), str(arts / "manifest.json")
    publish = ["publish", "--manifest", manifest]
    build = ["build", "--config", str(TINY)]
    out = ["--out", str(tmp / "o")]
    return [
        (
            "build: calibration JPEGs fake",
            ["build", "--config", str(fake_cfg), "--weights", "random", *out],
            2,
            (".jpg: not a decodable",),
        ),
        ("build: missing config", ["build", "--config", str(tmp / "none.yaml")], 2, ("config file not found",)),
        ("build: config is a folder", ["build", "--config", str(tmp)], 2, ("cannot read config",)),
        ("build: config binary", ["build", "--config", str(tmp / "binary")], 2, (str(tmp / "binary"),)),
        ("build: unknown variant", [*build, "--variant", "xnnpack_fp64"], 2, ("valid variants", "xnnpack_int8")),
        ("build: weights file missing", [*build, "--weights", str(tmp / "w.pth"), *out], 2, ("no such file",)),
        ("build: weights a folder", [*build, "--weights", str(tmp), *out], 2, (str(tmp), "is a directory")),
        ("build: weights 0 bytes", [*build, "--weights", str(tmp / "empty.pth"), *out], 2, ("empty (0 bytes)",)),
        ("build: weights text", [*build, "--weights", str(tmp / "file"), *out], 2, ("not a PyTorch checkpoint",)),
        ("build: empty --variant", [*build, "--variant", ""], 2, ("unknown variant(s) ''", "valid variants")),
        ("build: --jobs 0", [*build, "--weights", "random", *out, "--jobs", "0"], 2, ("--jobs 0", "1 or more")),
        ("build: --out under a file", [*build, "--weights", "random", "--out", str(tmp / "file" / "o")], 2, ("--out",)),
        ("build: --out is a file", [*build, "--weights", "random", "--out", str(tmp / "file")], 2, ("--out",)),
        ("run: no such artifact", ["run", str(tmp / "x.pte"), PHOTO], 2, ("no such file",)),
        ("run: artifact is a folder", ["run", str(tmp), PHOTO], 2, ("is a directory", "pass the .pte file")),
        ("run: --overlay a folder", ["run", pte, PHOTO, "--overlay", str(tmp)], 2, ("--overlay", "is a directory")),
        ("run: --overlay .jpg", ["run", pte, PHOTO, "--overlay", str(tmp / "o.jpg")], 2, ("writes PNG", "o.png")),
        ("run: class with a space", ["run", pte, PHOTO, "--classes", "CAT, KITTEN"], 2, ("unknown label(s) KITTEN",)),
        ("run: bundle as artifact", ["run", pte.replace(".pte", ".bpte"), PHOTO], 2, ("pass the .pte beside it",)),
        ("run: text as artifact", ["run", str(bare / "text.pte"), PHOTO], 2, ("not an ExecuTorch program",)),
        ("run: empty artifact", ["run", str(bare / "empty.pte"), PHOTO], 2, ("not an ExecuTorch program",)),
        ("run: truncated artifact", ["run", str(bare / "cut.pte"), PHOTO], 2, ("truncated or corrupt",)),
        ("run: no such image", ["run", pte, str(tmp / "nope.jpg")], 2, ("no such file",)),
        ("run: image is text", ["run", pte, str(tmp / "file")], 2, (str(tmp / "file"),)),
        ("run: image is binary", ["run", pte, str(tmp / "binary")], 2, (str(tmp / "binary"),)),
        ("run: image is a folder", ["run", pte, str(tmp)], 2, (str(tmp),)),
        ("run: malformed URL", ["run", pte, "http://[::1"], 2, ("not a valid URL",)),
        ("run: bad data URI", ["run", pte, "data:image/png,abc"], 2, ("only base64 data URIs",)),
        ("run: unknown class", ["run", pte, PHOTO, "--classes", "KITTEN"], 2, ("KITTEN", "valid labels")),
        ("run: wrong contract", ["run", pte, PHOTO, "--contract", "rne-0.9"], 2, ("contract mismatch",)),
        ("run: unknown contract", ["run", pte, PHOTO, "--contract", "rne-7"], 2, ("rne-7",)),
        ("run: overlay under a file", ["run", pte, PHOTO, "--overlay", str(tmp / "file" / "o.png")], 2, ("--overlay",)),
        ("run: --rne in no line", ["run", pte, PHOTO, "--rne", "0.11"], 2, ("0.11 is in no line",)),
        ("run: --rne not a release", ["run", pte, PHOTO, "--rne", "latest"], 2, ("like 0.10",)),
        ("run: --rne of a forward() line", ["run", pte, PHOTO, "--rne", "0.9"], 2, ("useSemanticSegmentation",)),
        ("run: --rne with --classes", ["run", pte, PHOTO, "--rne", "0.10", "--classes", "cat"], 2, ("--classes",)),
        ("run: --colormap not JSON", ["run", pte, PHOTO, "--rne", "0.10", "--colormap", "{"], 2, ("not JSON",)),
        ("run: --colormap a list", ["run", pte, PHOTO, "--rne", "0.10", "--colormap", "[]"], 2, ("JSON object",)),
        (
            "run: --colormap unknown label",
            ["run", pte, PHOTO, "--rne", "0.10", "--colormap", '{"CAT": [1, 2, 3, 4]}'],
            2,
            ("CAT", "valid labels"),
        ),
        (
            "run: --colormap bad colour",
            ["run", pte, PHOTO, "--rne", "0.10", "--colormap", '{"cat": [1, 2, 3]}'],
            2,
            ("expected an RGBA colour",),
        ),
        ("run: --format unknown", ["run", pte, PHOTO, "--rne", "0.10", "--format", "yuv"], 2, ("yuv", "rgba")),
        ("run: --mask without --rne", ["run", pte, PHOTO, "--mask", str(tmp / "m.png")], 2, ("only with --rne",)),
        (
            "run: --mask under a file",
            ["run", pte, PHOTO, "--rne", "0.10", "--mask", str(tmp / "file" / "m.png")],
            2,
            ("--mask",),
        ),
        ("card: manifest missing", ["card", "--manifest", str(tmp / "m.json")], 2, ("manifest not found",)),
        ("card: manifest is a folder", ["card", "--manifest", str(tmp)], 2, ("pass the manifest.json file",)),
        ("card: manifest not JSON", ["card", "--manifest", str(tmp / "broken.json")], 2, ("not valid JSON",)),
        ("bench: manifest missing", ["bench", "--manifest", str(tmp / "m.json")], 2, ("manifest not found",)),
        ("bench: manifest is a folder", ["bench", "--manifest", str(tmp)], 2, ("pass the manifest.json file",)),
        ("bench: manifest binary", ["bench", "--manifest", str(tmp / "binary")], 2, ("re-export",)),
        ("bench: zero runs", ["bench", "--manifest", manifest, "--runs", "0"], 2, ("--runs",)),
        ("bench: negative warm-up", ["bench", "--manifest", manifest, "--warmup", "-1"], 2, ("--warmup",)),
        (
            "bench: wrong weights kind",
            ["bench", "--manifest", manifest, "--config", str(TINY), "--weights", "default"],
            2,
            ("was exported with random(seed=0)",),
        ),
        (
            "bench: weights file is not the one",
            ["bench", "--manifest", manifest, "--config", str(TINY), "--weights", str(tmp / "file")],
            2,
            ("is not the checkpoint",),
        ),
        (
            "bench: weights missing",
            ["bench", "--manifest", manifest, "--weights", str(tmp / "w.pth")],
            2,
            ("no such file",),
        ),
        ("bench: weights a folder", ["bench", "--manifest", manifest, "--weights", str(tmp)], 2, ("is a directory",)),
        ("bench: manifest a JSON list", ["bench", "--manifest", str(tmp / "list.json")], 2, ("a JSON list",)),
        (
            "bench: another model's config",
            ["bench", "--manifest", manifest, "--config", str(tmp / "tiny_two.yaml")],
            2,
            ("is model tiny_two's", "tiny_segnet's"),
        ),
        ("bench: config missing", ["bench", "--manifest", manifest, "--config", str(tmp / "c.yaml")], 2, ("c.yaml",)),
        ("publish: no tag", [*publish, "--repo", "o/r", "--tag", "latest"], 2, ("expected a version tag",)),
        ("publish: tag with newline", [*publish, "--repo", "o/r", "--tag", "v1.0.0\n"], 2, ("version tag",)),
        ("publish: tag short", [*publish, "--repo", "o/r", "--tag", "v1.0"], 2, ("version tag",)),
        ("publish: repo without owner", [*publish, "--repo", "repo", "--tag", "v1.0.0"], 2, ("OWNER/NAME",)),
        ("publish: repo with newline", [*publish, "--repo", "o/r\n", "--tag", "v1.0.0"], 2, ("OWNER/NAME",)),
        ("publish: repo with --", [*publish, "--repo", "o--x/r", "--tag", "v1.0.0"], 2, ("Cannot have -- or ..",)),
        ("publish: repo with ..", [*publish, "--repo", "o/r..x", "--tag", "v1.0.0"], 2, ("Cannot have -- or ..",)),
        ("publish: repo ends in -", [*publish, "--repo", "o/r-", "--tag", "v1.0.0"], 2, ("cannot start or end",)),
        (
            "publish: manifest missing",
            ["publish", "--manifest", str(tmp / "m.json"), "--repo", "o/r", "--tag", "v1.0.0"],
            2,
            ("manifest not found",),
        ),
        (
            "publish: manifest is a folder",
            ["publish", "--manifest", str(tmp), "--repo", "o/r", "--tag", "v1.0.0"],
            2,
            ("pass the manifest.json file",),
        ),
        (
            "publish: manifest binary",
            ["publish", "--manifest", str(tmp / "binary"), "--repo", "o/r", "--tag", "v1.0.0"],
            2,
            ("re-export",),
        ),
        ("codegen: missing", ["codegen", str(tmp / "p.json")], 2, ("cannot read",)),
        ("codegen: folder", ["codegen", str(tmp)], 2, ("cannot read",)),
        ("codegen: not JSON", ["codegen", str(tmp / "broken.json")], 2, ("not a JSON file",)),
        ("check-urls: missing", ["check-urls", str(tmp / "u.ts")], 2, ("No such file",)),
        ("check-urls: folder", ["check-urls", str(tmp)], 2, ("Is a directory",)),
        ("check-urls: binary", ["check-urls", str(tmp / "binary")], 2, ("not a text file",)),
        ("check-urls: no URL", ["check-urls", str(tmp / "file")], 2, ("holds no URL",)),
        ("check-urls: a module without URLs", ["check-urls", str(tmp / "empty.ts")], 2, ("holds no URL",)),
    ]


PUBLISHED = [
    # (what, published.json content, words); every case names the file too
    ("a list", "[]", "not a published.json"),
    ("binary", BINARY, "not a JSON file"),
    ("half a JSON", "{repo: x", "not a JSON file"),
    ("files missing", '{"repo": "o/r", "tag": "v1.0.0", "manifest": {}}', "not a published.json"),
    ("a file without url", '{"repo": "o/r", "tag": "v1.0.0", "files": [{"artifact": "x.pte"}]}', "published.json"),
    ("no artifact", "no artifact", "lists no published artifact"),
    ("a file without its digest", "no sha256", "files.0.sha256: Field required"),
    ("older manifest", "schema 2", "manifest schema 2, this tool reads schema 4; re-export and re-publish"),
    ("a repo name with a slash too many", "repo a/b/c", "expected OWNER/NAME"),
]


def _published_cases(tmp: Path) -> list[Case]:
    cases = []
    for i, (what, content, words) in enumerate(PUBLISHED):
        if content in ("schema 2", "repo a/b/c", "no artifact", "no sha256"):
            pub = published()
            if content == "schema 2":
                pub["manifest"]["schema"] = 2
            elif content == "repo a/b/c":
                pub["repo"] = "a/b/c"
            elif content == "no artifact":
                pub["files"] = [f for f in pub["files"] if not f["artifact"]]
            else:
                del pub["files"][0]["sha256"]
            content = json.dumps(pub)
        path = tmp / f"published-{i}.json"
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        cases.append((f"codegen: {what}", ["codegen", str(path), "--out", str(tmp / "gen")], 2, (str(path), words)))
    good = tmp / "published-good.json"
    good.write_text(json.dumps(published()))
    under_file = str(tmp / "file" / "sub")
    cases.append(("codegen: --out under a file", ["codegen", str(good), "--out", under_file], 2, ("--out",)))
    return cases


def test_bad_inputs_give_one_line_and_the_documented_exit_code(tiny_build, tmp_path, capsys):
    arts = tmp_path / "arts"
    shutil.copytree(tiny_build, arts)
    good = _snapshot(arts)
    tampered_cases, tampered = _tamper_cases(tiny_build, tmp_path)
    after_tamper = {f: _snapshot(f) for f in tampered}
    cases = [
        *_config_cases(tmp_path),
        *_source_cases(tmp_path),
        *_argument_cases(arts, tmp_path),
        *_published_cases(tmp_path),
        *tampered_cases,
    ]
    assert len(cases) >= 150 and len({c[0] for c in cases}) == len(cases), len(cases)
    failures = _run_cases(cases, capsys)
    assert failures == [], "\n".join(failures)
    assert _snapshot(arts) == good  # the good folder
    assert all(_snapshot(f) == after_tamper[f] for f in tampered)  # nothing written beside a refused file
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").rglob("*.pte"))
    assert not (tmp_path / "gen").exists() or not any((tmp_path / "gen").iterdir())
    assert not list(tmp_path.parent.glob("evil*")) and not list(tmp_path.glob("evil*"))


@pytest.mark.parametrize(
    "name,content,words",
    [
        ("bench.json", "{", "not a bench.json from `make bench`"),
        ("bench.json", "[]", "not a bench.json from `make bench`"),
        (
            "bench.json",
            json.dumps({"engines": []}),
            f"not a bench.json from `make bench` (schema {BENCH_SCHEMA_VERSION}) (schema: Field",
        ),
        ("profile.json", json.dumps({"schema": 1, "runs": 3}), "not a profile.json from `make profile` (schema 2)"),
    ],
)
def test_card_refuses_an_invalid_bench_or_profile_json(tiny_build, tmp_path, capsys, name, content, words):
    arts = tmp_path / "arts"
    shutil.copytree(tiny_build, arts)
    (arts / name).write_text(content)
    (arts / "profile.png").write_bytes(b"")  # the card reads profile.json only beside its chart
    case = ("card", ["card", "--manifest", str(arts / "manifest.json")], 2, (f"{arts / name}: {words}",))
    assert _run_cases([case], capsys) == []
    assert not (arts / "README.md").exists()


def test_the_harness_fails_on_a_case_that_is_not_refused(tiny_build, capsys):
    """The table can fail: a command that succeeds, or a refusal with other words, is reported."""
    good_run = ("a good run", ["run", str(tiny_build / XNN), PHOTO], 2, ("anything",))
    other_words = ("other words", ["codegen", "/no/such.json"], 2, ("words it does not say",))
    failures = _run_cases([good_run, other_words], capsys)
    assert [f.split(",")[0] for f in failures] == ["a good run: exit 0", "other words: exit 2"], failures
