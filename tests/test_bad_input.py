"""Bad input across the commands, table-driven and in-process (fast): each case exits with the
documented code, prints exactly one `error:` line naming the thing, no traceback, and leaves a good
output folder byte-identical. Subprocess cases (the real CLI) live in test_cli, test_codegen,
test_reference, test_publish and test_bench_card; configs in test_config and test_properties."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from conftest import TINY

from export import cli
from export.config import bundled_photos

PHOTO = str(bundled_photos()["chelsea"])
XNN = "tiny_segnet_xnnpack_fp32.pte"


def _tiny_text(old: str, new: str) -> str:
    text = TINY.read_text()
    assert old in text, old
    return text.replace(old, new, 1)


def _cases(arts: Path, tmp: Path) -> list[tuple[str, list[str], int, str]]:
    """(what, argv, exit code, words of the one error line). `arts` is a copy of a good build."""
    (tmp / "file").write_text("x")
    (tmp / "bench.json").write_text("{")
    bad_cfg = {
        "dash-name": _tiny_text("name: tiny_segnet", "name: tiny-seg"),
        "nan": _tiny_text("min_snr_db: 15.0}", "min_snr_db: .nan}"),
        "dup": _tiny_text("name: tiny_segnet", "name: tiny_segnet\nname: x"),
        "huge": _tiny_text("height: 32", "height: 100000"),
        "photo": _tiny_text("images: [astronaut, chelsea]\n  random_inputs", "images: [selfie]\n  random_inputs"),
        "list": "- just\n- a list\n",
        "empty": "",
        "builder": _tiny_text("builder: tiny_segnet", "builder: deeplabv4"),
        "contract": _tiny_text("contract: rne-0.5", "contract: rne-9"),
        "backend": _tiny_text("backend: xnnpack", "backend: vulkan"),
        "precision": _tiny_text("precision: fp32", "precision: fp64"),
        "labels": _tiny_text("labels: [BACKGROUND,", "labels: ["),
    }
    fake = tmp / "fake-photos"  # a calibration folder whose JPEGs are not images / are cut short
    fake.mkdir()
    (fake / "a.jpg").write_text("not a jpeg")
    (fake / "b.jpg").write_bytes(Path(PHOTO).read_bytes()[:300])
    bad_cfg["calib-fake-jpeg"] = _tiny_text("  count: 2", f"  folder: {fake}\n  count: 2")
    for name, text in bad_cfg.items():
        (tmp / f"{name}.yaml").write_text(text)
    pte, manifest = str(arts / XNN), str(arts / "manifest.json")
    publish = ["publish", "--manifest", manifest]
    cases = [
        *[
            (
                f"build: config {n}",
                ["build", "--config", str(tmp / f"{n}.yaml"), "--weights", "random", "--out", str(tmp / "o")],
                2,
                ".jpg: not a decodable image" if n == "calib-fake-jpeg" else f"{n}.yaml",
            )
            for n in bad_cfg
        ],
        ("build: missing config", ["build", "--config", str(tmp / "none.yaml")], 2, "config file not found"),
        ("build: config is a folder", ["build", "--config", str(tmp)], 2, "cannot read config"),
        ("build: unknown variant", ["build", "--config", str(TINY), "--variant", "xnnpack_fp64"], 2, "valid variants"),
        (
            "build: weights file missing",
            ["build", "--config", str(TINY), "--weights", str(tmp / "w.pth")],
            2,
            "no such file",
        ),
        (
            "build: weights not a checkpoint",
            ["build", "--config", str(TINY), "--weights", str(tmp / "file")],
            2,
            "file",
        ),
        (
            "build: --out under a file",
            ["build", "--config", str(TINY), "--weights", "random", "--out", str(tmp / "file" / "o")],
            2,
            "cannot write there",
        ),
        ("run: no such artifact", ["run", str(tmp / "x.pte"), PHOTO], 2, "no such file"),
        ("run: artifact is a folder", ["run", str(tmp), PHOTO], 2, "no such file"),
        ("run: bundle as artifact", ["run", str(arts / XNN.replace(".pte", ".bpte")), PHOTO], 2, "a bundle"),
        ("run: text as artifact", ["run", str(tmp / "file"), PHOTO], 2, "not an ExecuTorch program"),
        ("run: no such image", ["run", pte, str(tmp / "nope.jpg")], 2, "no such file"),
        ("run: image is text", ["run", pte, str(tmp / "file")], 2, "file"),
        ("run: malformed URL", ["run", pte, "http://[::1"], 2, "not a valid URL"),
        ("run: bad data URI", ["run", pte, "data:image/png,abc"], 2, "only base64 data URIs"),
        ("run: unknown class", ["run", pte, PHOTO, "--classes", "KITTEN"], 2, "valid labels"),
        ("run: wrong contract", ["run", pte, PHOTO, "--contract", "rne-0.9"], 2, "contract mismatch"),
        ("run: unknown contract", ["run", pte, PHOTO, "--contract", "rne-7"], 2, "rne-7"),
        ("run: overlay under a file", ["run", pte, PHOTO, "--overlay", str(tmp / "file" / "o.png")], 2, "--overlay"),
        ("card: manifest missing", ["card", "--manifest", str(tmp / "m.json")], 2, "manifest not found"),
        ("card: manifest is a folder", ["card", "--manifest", str(tmp)], 2, "is a folder"),
        ("card: manifest not JSON", ["card", "--manifest", str(tmp / "bench.json")], 2, "not valid JSON"),
        ("bench: manifest missing", ["bench", "--manifest", str(tmp / "m.json")], 2, "manifest not found"),
        (
            "bench: wrong weights kind",
            ["bench", "--manifest", manifest, "--config", str(TINY), "--weights", "default"],
            2,
            "was exported with random(seed=0)",
        ),
        (
            "bench: weights file is not the one",
            ["bench", "--manifest", manifest, "--config", str(TINY), "--weights", str(tmp / "file")],
            2,
            "is not the checkpoint",
        ),
        ("publish: no tag", [*publish, "--repo", "o/r", "--tag", "latest"], 2, "expected a version tag"),
        ("publish: tag with newline", [*publish, "--repo", "o/r", "--tag", "v1.0.0\n"], 2, "version tag"),
        ("publish: repo without owner", [*publish, "--repo", "repo", "--tag", "v1.0.0"], 2, "OWNER/NAME"),
        ("publish: repo with --", [*publish, "--repo", "o--x/r", "--tag", "v1.0.0"], 2, "Cannot have -- or .."),
        ("publish: repo with ..", [*publish, "--repo", "o/r..x", "--tag", "v1.0.0"], 2, "Cannot have -- or .."),
        (
            "publish: manifest missing",
            ["publish", "--manifest", str(tmp / "m.json"), "--repo", "o/r", "--tag", "v1.0.0"],
            2,
            "manifest not found",
        ),
        ("codegen: missing", ["codegen", str(tmp / "p.json")], 2, "cannot read"),
        ("codegen: folder", ["codegen", str(tmp)], 2, "cannot read"),
        ("codegen: not JSON", ["codegen", str(tmp / "bench.json")], 2, "not a JSON file"),
        ("check-urls: missing", ["check-urls", str(tmp / "u.ts")], 2, "cannot read"),
        ("check-urls: no URL", ["check-urls", str(tmp / "file")], 2, "holds no URL"),
    ]
    return cases


def _run_cases(cases, capsys):
    failures = []
    for what, argv, code, words in cases:
        rc = cli.main(argv)
        captured = capsys.readouterr()
        errors = [line for line in captured.err.splitlines() if line.startswith("error: ")]
        if rc != code or len(errors) != 1 or words not in errors[0] or "Traceback" in captured.err:
            failures.append(f"{what}: exit {rc}, {errors or captured.err[-300:]}")
    return failures


def test_bad_inputs_give_one_line_and_the_documented_exit_code(tiny_build, tmp_path, capsys):
    arts = tmp_path / "arts"
    shutil.copytree(tiny_build, arts)
    before = {p.name: p.read_bytes() for p in arts.iterdir() if p.is_file()}
    cases = _cases(arts, tmp_path)
    assert len(cases) >= 45 and len({c[0] for c in cases}) == len(cases)
    assert _run_cases(cases, capsys) == []
    assert {p.name: p.read_bytes() for p in arts.iterdir() if p.is_file()} == before  # the good folder
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").rglob("*.pte"))


def test_card_refuses_an_invalid_bench_json(tiny_build, tmp_path, capsys):
    arts = tmp_path / "arts"
    shutil.copytree(tiny_build, arts)
    for content in ("{", "[]", json.dumps({"engines": []})):
        (arts / "bench.json").write_text(content)
        assert (
            _run_cases(
                [
                    (
                        "card",
                        ["card", "--manifest", str(arts / "manifest.json")],
                        2,
                        "not a bench.json from `make bench`",
                    )
                ],
                capsys,
            )
            == []
        )
    assert not (arts / "README.md").exists()
