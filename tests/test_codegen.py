"""Generated model-URL constants: deterministic, RNE-style TypeScript that a real tsc accepts."""

from __future__ import annotations

import importlib.util
import json
import subprocess

import pytest
from conftest import BASE, ROOT, published, sample_entry

from export.codegen import HEADER, constants_from, render_py, render_ts, write_modules

TSC = ROOT / "scripts" / "ts" / "node_modules" / ".bin" / "tsc"
STUBS = ROOT / "scripts" / "ts" / "stubs" / "react-native" / "index.d.ts"


def tsc(folder, *sources):
    assert TSC.exists(), f"{TSC} missing: `make test` installs it with npm ci (scripts/ts)"
    (folder / "tsconfig.json").write_text(
        json.dumps(
            {
                "extends": str(ROOT / "scripts" / "ts" / "tsconfig.base.json"),
                "files": [*sources, str(STUBS)],
            }
        )
    )
    return subprocess.run([str(TSC), "-p", str(folder)], capture_output=True, text=True, timeout=120)


def test_constants_choose_coreml_on_ios_and_xnnpack_on_android():
    [c] = constants_from(published())
    assert c == {
        "name": "DEEPLAB_V3_RESNET50",
        "modelName": "deeplab-v3-resnet50",
        "ios": f"{BASE}/coreml/deeplab_v3_resnet50_coreml_fp16.pte",
        "android": f"{BASE}/xnnpack/deeplab_v3_resnet50_xnnpack_fp32.pte",
    }
    [only] = constants_from(published(with_coreml=False))
    assert only["ios"] == only["android"] == f"{BASE}/xnnpack/deeplab_v3_resnet50_xnnpack_fp32.pte"
    names = [c["name"] for c in constants_from(published(with_int8=True))]
    assert names == ["DEEPLAB_V3_RESNET50", "DEEPLAB_V3_RESNET50_QUANTIZED"]


def test_output_is_deterministic_and_stamped(tmp_path):
    p = tmp_path / "published.json"
    p.write_text(json.dumps(published()))
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    write_modules(p, tmp_path / "a")
    write_modules(p, tmp_path / "b")
    for name in ("modelUrls.ts", "model_urls.py"):
        a, b = (tmp_path / "a" / name).read_bytes(), (tmp_path / "b" / name).read_bytes()
        assert a == b and HEADER.encode() in a.splitlines()[0]
    ts = render_ts(published())
    assert "import { Platform } from 'react-native';" in ts
    assert "export const DEEPLAB_V3_RESNET50 = {" in ts and "} as const;" in ts
    assert "Platform.OS === 'ios'" in ts
    assert "Platform" not in render_ts(published(with_coreml=False))


def test_python_module_has_same_names_and_urls(tmp_path):
    path = tmp_path / "model_urls.py"
    path.write_text(render_py(published()))
    spec = importlib.util.spec_from_file_location("model_urls", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.DEEPLAB_V3_RESNET50["modelName"] == "deeplab-v3-resnet50"
    assert mod.DEEPLAB_V3_RESNET50["modelSource"]["ios"].endswith("coreml/deeplab_v3_resnet50_coreml_fp16.pte")
    assert mod.SOURCES == (("org/repo", "v1.0.0", "c" * 40),) and len(mod.ALL_URLS) == 2


@pytest.mark.parametrize("kw", [{}, {"with_coreml": False}, {"with_int8": True}])
def test_typescript_compiles_with_real_tsc(tmp_path, kw):
    (tmp_path / "modelUrls.ts").write_text(render_ts(published(**kw)))
    # usage as an app would write it: literal types survive `as const`
    (tmp_path / "use.ts").write_text(
        "import { DEEPLAB_V3_RESNET50 } from './modelUrls';\n"
        "const name: 'deeplab-v3-resnet50' = DEEPLAB_V3_RESNET50.modelName;\n"
        "const source: string = DEEPLAB_V3_RESNET50.modelSource;\n"
        "export { name, source };\n"
    )
    proc = tsc(tmp_path, "modelUrls.ts", "use.ts")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_tsc_rejects_wrong_usage(tmp_path):
    """The compile check can fail: a misuse of the generated constants is a type error."""
    (tmp_path / "modelUrls.ts").write_text(render_ts(published()))
    (tmp_path / "use.ts").write_text(
        "import { DEEPLAB_V3_RESNET50 } from './modelUrls';\n"
        "const name: 'other-model' = DEEPLAB_V3_RESNET50.modelName;\nexport { name };\n"
    )
    proc = tsc(tmp_path, "modelUrls.ts", "use.ts")
    assert proc.returncode != 0 and "TS2322" in proc.stdout


def test_several_repos_and_variant_suffixes_merge_into_one_module(tmp_path):
    a = published(with_int8=True)
    a["files"].append({"artifact": "deeplab_v3_resnet50_xnnpack_fp32_520.pte", "url": f"{BASE}/xnnpack/x520.pte"})
    a["manifest"]["artifacts"]["deeplab_v3_resnet50_xnnpack_fp32_520.pte"] = sample_entry(
        "deeplab_v3_resnet50_xnnpack_fp32_520.pte", "deeplab_v3_resnet50", variant="xnnpack_fp32_520"
    )
    b = {
        "repo": "org/fcn",
        "tag": "v2.0.0",
        "commit": "d" * 40,
        "files": [
            {
                "artifact": "fcn_resnet50_xnnpack_fp32.pte",
                "url": "https://huggingface.co/org/fcn/resolve/v2.0.0/xnnpack/f.pte",
            }
        ],
        "manifest": {
            "schema": 3,
            "artifacts": {
                "fcn_resnet50_xnnpack_fp32.pte": sample_entry("fcn_resnet50_xnnpack_fp32.pte", "fcn_resnet50")
            },
        },
    }
    consts = {c["name"]: c for c in constants_from([a, b])}
    assert sorted(consts) == [
        "DEEPLAB_V3_RESNET50",
        "DEEPLAB_V3_RESNET50_520",
        "DEEPLAB_V3_RESNET50_QUANTIZED",
        "FCN_RESNET50",
    ]
    assert consts["DEEPLAB_V3_RESNET50_520"]["modelName"] == "deeplab-v3-resnet50-520"
    assert consts["DEEPLAB_V3_RESNET50_520"]["android"].endswith("x520.pte")
    assert consts["DEEPLAB_V3_RESNET50"]["android"].endswith("deeplab_v3_resnet50_xnnpack_fp32.pte")  # not overwritten
    pa, pb = tmp_path / "a.json", tmp_path / "b.json"
    pa.write_text(json.dumps(a))
    pb.write_text(json.dumps(b))
    from conftest import run_cli

    proc = run_cli("codegen", str(pa), str(pb), "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    ts = (tmp_path / "modelUrls.ts").read_text()
    assert "// org/repo @ v1.0.0" in ts and "// org/fcn @ v2.0.0" in ts
    assert tsc(tmp_path, "modelUrls.ts").returncode == 0


def test_unexpected_exception_is_one_line_and_a_traceback_file(monkeypatch, capsys):
    """The error boundary: a bug prints one line naming where the traceback went, exit 1."""
    from export import cli

    def broken(args):
        raise KeyError("surprise")

    monkeypatch.setattr(cli, "_codegen", broken)
    assert cli.main(["codegen", "x.json"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(
        "error: unexpected KeyError: 'surprise' (a bug in this tool; traceback: "
    )
    path = err[0].rsplit("traceback: ", 1)[1].rstrip(")")
    assert "Traceback (most recent call last)" in open(path).read() and "surprise" in open(path).read()
