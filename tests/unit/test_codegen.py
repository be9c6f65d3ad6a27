"""Generated model-URL constants: deterministic, RNE-style TypeScript that a real tsc accepts."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import subprocess

import pytest
from support import (
    BASE,
    ROOT,
    published,
    published_file,
    published_record,
    run_cli,
    sample_entry,
    typed,
    write_yaml,
)
from support.typescript import RNE_0_5, RNE_0_9, RNE_0_10, TS, tsc, typecheck_card

from export.errors import ExportError
from export.release import codegen
from export.release.codegen import HEADER, write_modules
from export.release.snippets import group_snippet, snippet
from export.rne.hooks import NORMALIZE_OPTS, families, normalize_values, segmenter_opts
from export.rne.runtimes import PASCAL_VOC_LABELS, load_runtimes


# codegen takes Published records; the tests edit published() as the JSON data it is
def constants_from(pub, lines=None):
    return codegen.constants_from(typed(pub), lines)


def groups_from(pub, lines=None):
    return codegen.groups_from(typed(pub), lines)


def render_ts(pub, lines=None):
    return codegen.render_ts(typed(pub), lines)


def render_py(pub, lines=None):
    return codegen.render_py(typed(pub), lines)


def test_constants_choose_coreml_on_ios_and_xnnpack_on_android():
    [c] = constants_from(published())
    assert (c.name, c.family.label, c.family.hook, c.contract, c.model_name) == (
        "DEEPLAB_V3_RESNET50",
        RNE_0_5,
        "useImageSegmentation",
        "rne-0.5",
        None,  # no built-in modelName: in 0.8+ it would add ImageNet mean/std to a graph that has them
    )
    assert c.ios == f"{BASE}/coreml/deeplab_v3_resnet50_coreml_fp16.pte"
    assert c.android == f"{BASE}/xnnpack/deeplab_v3_resnet50_xnnpack_fp32.pte"
    [only] = constants_from(published(with_coreml=False))
    assert only.ios == only.android == f"{BASE}/xnnpack/deeplab_v3_resnet50_xnnpack_fp32.pte"
    names = [c.name for c in constants_from(published(with_int8=True))]
    assert names == ["DEEPLAB_V3_RESNET50", "DEEPLAB_V3_RESNET50_QUANTIZED"]


def test_each_release_family_gets_the_file_its_runtime_feeds_correctly():
    """0.4-0.7 (pixel/255): the rne-0.5 files, no modelName. 0.8-0.9 (ImageNet mean/std by the
    runtime): the rne-0.9 file, with the built-in modelName that selects that normalization."""
    consts = {c.name: c for c in constants_from(published(with_rne09=True))}
    assert sorted(consts) == ["DEEPLAB_V3_RESNET50", "DEEPLAB_V3_RESNET50_RNE09"]
    new = consts["DEEPLAB_V3_RESNET50_RNE09"]
    assert (new.family.label, new.family.hook, new.contract, new.model_name) == (
        RNE_0_9,
        "useSemanticSegmentation",
        "rne-0.9",
        "deeplab-v3-resnet50",
    )
    assert new.ios == new.android == f"{BASE}/xnnpack/deeplab_v3_resnet50_xnnpack_fp32_rne09.pte"
    ts = render_ts(published(with_rne09=True))
    assert f"// react-native-executorch {RNE_0_9}: useSemanticSegmentation" in ts
    assert ts.count("modelName:") == 1


def test_min_rne_narrows_a_constants_releases():
    """An int8 file that claims RNE 0.5.7 on: its constant says so, in the comment and the snippet."""
    pub = published(with_int8=True)
    pub["manifest"]["artifacts"]["deeplab_v3_resnet50_xnnpack_int8.pte"]["min_rne"] = "0.5.7"
    consts = {c.name: c for c in constants_from(pub)}
    assert consts["DEEPLAB_V3_RESNET50_QUANTIZED"].releases == "0.5.7 – 0.7.3"
    assert consts["DEEPLAB_V3_RESNET50"].releases == RNE_0_5
    ts = render_ts(pub)
    assert "// react-native-executorch 0.5.7 – 0.7.3: useImageSegmentation" in ts
    assert "needs react-native-executorch >= 0.5.7" in ts
    assert snippet(consts["DEEPLAB_V3_RESNET50_QUANTIZED"], ["BACKGROUND", "CAT"]).startswith(
        "// react-native-executorch 0.5.7 – 0.7.3"
    )


def test_a_pairing_that_would_normalize_twice_is_refused(tmp_path):
    """A release table that gives 0.8-0.9 (whose runtime applies mean/std) the rne-0.5 files (which
    apply it in the graph): generation refuses, through the CLI too, and writes nothing."""
    table = (ROOT / "configs" / "runtimes" / "rne_releases.yaml").read_text()
    bad = write_yaml(tmp_path / "bad.yaml", table.replace("contract: rne-0.9", "contract: rne-0.5"))
    with pytest.raises(ExportError, match=r"cannot serve react-native-executorch 0.8.0 .*normalize its input twice"):
        render_ts(published(), load_runtimes(bad))
    pub = tmp_path / "published.json"
    pub.write_text(json.dumps(published()))
    proc = run_cli("codegen", str(pub), "--out", str(tmp_path / "out"), "--runtimes", str(bad))
    assert proc.returncode == 2 and "normalize its input twice" in proc.stderr, proc.stderr
    assert not (tmp_path / "out" / "modelUrls.ts").exists()
    # and the other way: an ImageNet-normalizing file for a pixel/255 release is never normalized
    swapped = write_yaml(tmp_path / "swapped.yaml", table.replace("contract: rne-0.5", "contract: rne-0.9"))
    with pytest.raises(ExportError, match="never normalize its input"):
        constants_from(published(with_rne09=True), load_runtimes(swapped))


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
    path.write_text(render_py(published(with_rne09=True)))
    spec = importlib.util.spec_from_file_location("model_urls", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert "modelName" not in mod.DEEPLAB_V3_RESNET50 and mod.DEEPLAB_V3_RESNET50["rne"] == RNE_0_5
    assert mod.DEEPLAB_V3_RESNET50["modelSource"]["ios"].endswith("coreml/deeplab_v3_resnet50_coreml_fp16.pte")
    assert mod.DEEPLAB_V3_RESNET50_RNE09["modelName"] == "deeplab-v3-resnet50"
    assert mod.DEEPLAB_V3_RESNET50_RNE09["contract"] == "rne-0.9"
    assert mod.SOURCES == (("org/repo", "v1.0.0", "c" * 40),) and len(mod.ALL_URLS) == 3


def _app(tmp_path, pub: dict, family: str) -> list[str]:
    """modelUrls.ts and one app file per constant of the family: the card's snippet for it."""
    (tmp_path / "modelUrls.ts").write_text(render_ts(pub))
    files = ["modelUrls.ts"]
    labels = ["BACKGROUND", "CAT", "PERSON"]
    for c in constants_from(pub):
        if c.family.label == family:
            (tmp_path / f"{c.name}.tsx").write_text(snippet(c, labels))
            files.append(f"{c.name}.tsx")
    assert len(files) > 1
    return files


@pytest.mark.parametrize("kw", [{}, {"with_coreml": False}, {"with_int8": True}, {"with_rne09": True}])
@pytest.mark.parametrize("family,rne", [(RNE_0_5, "0.5.15"), (RNE_0_9, "0.9.3")])
def test_constants_and_snippets_type_check_against_the_real_library(tmp_path, kw, family, rne):
    """The generated module and each release family's snippet, compiled by a real tsc against the
    react-native-executorch release from npm that the table names for that family."""
    if family == RNE_0_9 and not kw.get("with_rne09"):
        kw = {**kw, "with_rne09": True}  # 0.8+ constants exist only for rne-0.9 files
    proc = tsc(tmp_path, *_app(tmp_path, published(**kw), family), rne=rne)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize(
    "rne,code,error",
    [
        # the rne-0.5 constant in a 0.9 app: no modelName, so it cannot reach the hook that normalizes
        (
            "0.9.3",
            "import { useSemanticSegmentation } from 'react-native-executorch';\n"
            "import { DEEPLAB_V3_RESNET50 } from './modelUrls';\n"
            "export const use = () => useSemanticSegmentation({ model: DEEPLAB_V3_RESNET50 });\n",
            "TS2322",
        ),
        # the old card's snippet on 0.5.15: results are keyed by DeeplabLabel values, not names
        (
            "0.5.15",
            "import { useImageSegmentation } from 'react-native-executorch';\n"
            "import { DEEPLAB_V3_RESNET50 } from './modelUrls';\n"
            "export const use = async (uri: string) => {\n"
            "  const r = await useImageSegmentation({ model: DEEPLAB_V3_RESNET50 }).forward(uri);\n"
            "  return r.ARGMAX;\n};\n",
            "TS2339",
        ),
    ],
)
def test_tsc_against_the_real_library_rejects_wrong_usage(tmp_path, rne, code, error):
    """The compile check can fail: misuses of the constants that would give wrong masks are errors."""
    (tmp_path / "modelUrls.ts").write_text(render_ts(published(with_rne09=True)))
    (tmp_path / "use.ts").write_text(code)
    proc = tsc(tmp_path, "modelUrls.ts", "use.ts", rne=rne)
    assert proc.returncode != 0 and error in proc.stdout, proc.stdout


def test_the_table_names_the_releases_installed_for_type_checks():
    """Each release family is type-checked against one npm release, and scripts/ts pins exactly those."""
    assert {f.label: f.typecheck for f in families()} == {RNE_0_5: "0.5.15", RNE_0_9: "0.9.3", RNE_0_10: "0.10.2"}
    pins = json.loads((TS / "package.json").read_text())["devDependencies"]
    assert {k: v for k, v in pins.items() if k.startswith("rne-")} == {
        f"rne-{f.typecheck}": f"npm:react-native-executorch@{f.typecheck}" for f in families()
    }


def test_card_snippets_type_check_per_release_family(tmp_path):
    """A card for rne-0.5 and rne-0.9 files: one snippet per family, each compiling against its release."""
    from export.release.card import render_card
    from export.store.manifest import manifest_from_dict

    pub = published(with_rne09=True)
    (tmp_path / "modelUrls.ts").write_text(render_ts(pub))
    card = render_card(manifest_from_dict(pub["manifest"], "test"), None, [])
    assert typecheck_card(tmp_path, card) == [RNE_0_5, RNE_0_9, RNE_0_10, RNE_0_10]
    assert "from 'react-native-executorch';" in card and "DEEPLAB_V3_RESNET50 }" not in card.split("from 'react")[0]
    row = next(
        ln for ln in card.splitlines() if ln.startswith("| `xnnpack/deeplab_v3_resnet50_xnnpack_fp32_rne09.pte`")
    )
    assert f"| {RNE_0_9} | rne-0.9 |" in row and "by the runtime" in row


def test_several_repos_and_variant_suffixes_merge_into_one_module(tmp_path):
    a = published(with_int8=True)
    a["files"].append(
        published_file("deeplab_v3_resnet50_xnnpack_fp32_520.pte", "x520.pte", f"{BASE}/xnnpack/x520.pte")
    )
    a["manifest"]["artifacts"]["deeplab_v3_resnet50_xnnpack_fp32_520.pte"] = sample_entry(
        "deeplab_v3_resnet50_xnnpack_fp32_520.pte", "deeplab_v3_resnet50", variant="xnnpack_fp32_520"
    )
    fcn = "fcn_resnet50_xnnpack_fp32.pte"
    url = "https://huggingface.co/org/fcn/resolve/v2.0.0/xnnpack/f.pte"
    b = published_record(
        "org/fcn", "v2.0.0", "d" * 40, [published_file(fcn, "f.pte", url)], {fcn: sample_entry(fcn, "fcn_resnet50")}
    )
    consts = {c.name: c for c in constants_from([a, b])}
    assert sorted(consts) == [
        "DEEPLAB_V3_RESNET50",
        "DEEPLAB_V3_RESNET50_520",
        "DEEPLAB_V3_RESNET50_QUANTIZED",
        "FCN_RESNET50",
    ]
    assert consts["DEEPLAB_V3_RESNET50_520"].android.endswith("x520.pte")
    assert consts["DEEPLAB_V3_RESNET50"].android.endswith("deeplab_v3_resnet50_xnnpack_fp32.pte")  # not overwritten
    pa, pb = tmp_path / "a.json", tmp_path / "b.json"
    pa.write_text(json.dumps(a))
    pb.write_text(json.dumps(b))
    proc = run_cli("codegen", str(pa), str(pb), "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    ts = (tmp_path / "modelUrls.ts").read_text()
    assert "// org/repo @ v1.0.0" in ts and "// org/fcn @ v2.0.0" in ts
    assert tsc(tmp_path, "modelUrls.ts").returncode == 0


def test_unexpected_exception_is_one_line_and_a_traceback_file(monkeypatch, capsys):
    """The error boundary: a bug prints one line naming where the traceback went, exit 1."""
    from export import cli
    from export.release import codegen

    def broken(args):
        raise KeyError("surprise")

    monkeypatch.setattr(codegen, "command", broken)
    assert cli.main(["codegen", "x.json"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(
        "error: unexpected KeyError: 'surprise' (a bug in this tool; traceback: "
    )
    path = err[0].rsplit("traceback: ", 1)[1].rstrip(")")
    assert "Traceback (most recent call last)" in open(path).read() and "surprise" in open(path).read()


# --- react-native-executorch 0.10: useSemanticSegmenter, the normalization in the constant -------------

VOC = [
    *"BACKGROUND AEROPLANE BICYCLE BIRD BOAT BOTTLE BUS CAR CAT CHAIR COW DININGTABLE DOG HORSE MOTORBIKE".split(),
    *"PERSON POTTEDPLANT SHEEP SOFA TRAIN TVMONITOR".split(),
]
RNE_0_10_PKG = TS / "node_modules" / "rne-0.10.2"


def voc(pub: dict) -> dict:
    """The published record with the real models' labels (the sample entries have two)."""
    for e in pub["manifest"]["artifacts"].values():
        e["labels"] = VOC
    return pub


def test_0_10_constants_group_each_models_files_with_the_normalization_each_contract_needs():
    """Both contracts serve 0.10: the rne-0.5 files (mean/std in the graph) get pixel/255, the rne-0.9
    file (no mean/std) gets ImageNet's, each in a typed SemanticSegmenterModel grouped per model."""
    groups = {g.name: g for g in groups_from(published(with_int8=True, with_rne09=True))}
    assert sorted(groups) == ["DEEPLAB_V3_RESNET50_RNE09_SEGMENTER", "DEEPLAB_V3_RESNET50_SEGMENTER"]
    g = groups["DEEPLAB_V3_RESNET50_SEGMENTER"]
    assert (g.family.label, g.family.hook, g.contract, g.feed, g.min_executorch) == (
        RNE_0_10,
        "useSemanticSegmenter",
        "rne-0.5",
        "pixel/255",
        "1.3.1",
    )
    assert [k for k, _ in g.members] == ["XNNPACK_FP32", "XNNPACK_INT8", "COREML_FP16"]
    assert (g.ios, g.android) == ("COREML_FP16", "XNNPACK_FP32")
    r09 = groups["DEEPLAB_V3_RESNET50_RNE09_SEGMENTER"]
    assert (r09.contract, r09.feed, r09.ios, r09.android) == ("rne-0.9", "imagenet", "XNNPACK_FP32", "XNNPACK_FP32")
    assert r09.members == (("XNNPACK_FP32", f"{BASE}/xnnpack/deeplab_v3_resnet50_xnnpack_fp32_rne09.pte"),)
    ts = render_ts(published(with_int8=True, with_rne09=True))
    block = ts.split("const DEEPLAB_V3_RESNET50_SEGMENTER_OPTS")[1].split("};")[0]
    assert "normalizeOpts: { alpha: 1 / 255, beta: 0 }," in block and "resizeMode: 'stretch'," in block
    assert "normalizeOpts: { alpha: [1 / (255 * 0.229)" in ts.split("const DEEPLAB_V3_RESNET50_RNE09_SEGMENTER_OPTS")[1]
    assert (
        f"// react-native-executorch {RNE_0_10}: useSemanticSegmenter, whose runtime feeds RGB pixel·alpha + beta "
        "from modelOpts.normalizeOpts; contract rne-0.5 (ImageNet mean/std in the graph), so normalizeOpts = "
        "pixel/255; needs react-native-executorch >= 0.10.0 (ExecuTorch 1.3.1)"
    ) in ts
    assert (
        "  DEFAULT: Platform.OS === 'ios' ? DEEPLAB_V3_RESNET50_SEGMENTER_COREML_FP16 : "
        "DEEPLAB_V3_RESNET50_SEGMENTER_XNNPACK_FP32,"
    ) in ts
    # the older lines' constants are as they were
    assert [c.name for c in constants_from(published(with_int8=True, with_rne09=True))] == [
        "DEEPLAB_V3_RESNET50",
        "DEEPLAB_V3_RESNET50_QUANTIZED",
        "DEEPLAB_V3_RESNET50_RNE09",
    ]


def test_0_10_constants_carry_the_packages_labels_and_normalization():
    """VOC models get RNE's PASCAL_VOC_LABELS (lowercase, typed PascalVocLabel); normalizeOpts for a
    graph without mean/std equals the package's IMAGENET_NORM, read from its compiled constants."""
    [g] = groups_from(voc(published()))
    assert g.voc and g.labels == PASCAL_VOC_LABELS
    ts = render_ts(voc(published()))
    assert (
        "SemanticSegmenterModel<PascalVocLabel>" in ts
        and "import type { PascalVocLabel, SemanticSegmenterModel }" in ts
    )
    script = (
        f"import('{RNE_0_10_PKG / 'lib' / 'module' / 'constants.js'}').then(m => console.log(JSON.stringify("
        f"{{labels: m.PASCAL_VOC_LABELS, norm: m.IMAGENET_NORM, ours: {NORMALIZE_OPTS['imagenet']}}})))"
    )
    out = json.loads(subprocess.run(["node", "-e", script], capture_output=True, text=True, check=True).stdout)
    assert tuple(out["labels"]) == PASCAL_VOC_LABELS
    assert out["ours"] == out["norm"]  # the same numbers, bit for bit


def test_normalize_values_are_the_constants_expressions_bit_for_bit():
    """What `run --rne 0.10` feeds (normalize_values) is what node makes of the normalizeOpts
    expressions codegen writes, per channel (a scalar applies to all three)."""
    script = "console.log(JSON.stringify([" + ", ".join(NORMALIZE_OPTS.values()) + "]))"
    out = json.loads(subprocess.run(["node", "-e", script], capture_output=True, text=True, check=True).stdout)
    for feed, js in zip(NORMALIZE_OPTS, out, strict=True):
        per_channel = [v if isinstance(v, list) else [v] * 3 for v in (js["alpha"], js["beta"])]
        assert [list(x) for x in normalize_values(feed)] == per_channel, feed


def test_segmenter_opts_pick_the_line_and_the_contracts_normalization():
    from export.config import CONTRACTS

    for name, feed in (("rne-0.5", "pixel/255"), ("rne-0.9", "imagenet")):
        contract = CONTRACTS.get(name)
        for rne in ("0.10", "0.10.0", "0.10.2"):
            opts = segmenter_opts(rne, contract)
            assert (opts.line.label, opts.feed, opts.interpolation, opts.out_interpolation) == (
                RNE_0_10,
                feed,
                "linear",
                "nearest",
            )
            assert (opts.alpha, opts.beta) == normalize_values(feed)
    contract = CONTRACTS.get("rne-0.5")
    with pytest.raises(ExportError, match="0.5.15 .* runs useImageSegmentation"):
        segmenter_opts("0.5.15", contract)
    with pytest.raises(ExportError, match="react-native-executorch 0.11 is in no line"):
        segmenter_opts("0.11", contract)
    with pytest.raises(ExportError, match="expected a react-native-executorch release like 0.10"):
        segmenter_opts("latest", contract)


@pytest.mark.parametrize("kw", [{}, {"with_coreml": False}, {"with_int8": True, "with_rne09": True}])
def test_0_10_constants_and_snippets_type_check_against_the_real_0_10_2(tmp_path, kw):
    """modelUrls.ts and each 0.10 group's snippet against react-native-executorch 0.10.2 from npm; the same
    module still compiles against 0.5.15 and 0.9.3 (there the 0.10 constants are untyped)."""
    pub = voc(published(**kw))
    (tmp_path / "modelUrls.ts").write_text(render_ts(pub))
    files = ["modelUrls.ts"]
    for g in groups_from(pub):
        (tmp_path / f"{g.name}.tsx").write_text(group_snippet(g))
        files.append(f"{g.name}.tsx")
    proc = tsc(tmp_path, *files, rne="0.10.2")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for rne in ("0.5.15", "0.9.3"):
        proc = tsc(tmp_path, "modelUrls.ts", rne=rne)
        assert proc.returncode == 0, rne + proc.stdout


@pytest.mark.parametrize(
    "edit,code,error",
    [
        # the 0.8-0.9 constant ({modelName, modelSource}) handed to 0.10's hook
        (
            None,
            "import { useSemanticSegmenter } from 'react-native-executorch';\n"
            "import { DEEPLAB_V3_RESNET50_RNE09 } from './modelUrls';\n"
            "export const use = () => useSemanticSegmenter(DEEPLAB_V3_RESNET50_RNE09);\n",
            "TS2345",
        ),
        # the 0.4-0.7 one ({modelSource})
        (
            None,
            "import { useSemanticSegmenter } from 'react-native-executorch';\n"
            "import { DEEPLAB_V3_RESNET50 } from './modelUrls';\n"
            "export const use = () => useSemanticSegmenter(DEEPLAB_V3_RESNET50);\n",
            "TS2345",
        ),
        # the old shape written out by hand
        (
            None,
            "import { useSemanticSegmenter } from 'react-native-executorch';\n"
            "export const use = () => useSemanticSegmenter({ modelName: 'deeplab-v3-resnet50', modelSource: 'x' });\n",
            "TS2353",
        ),
        # a constant with a resize mode 0.10's segmenter does not take
        (("resizeMode: 'stretch'", "resizeMode: 'letterbox'"), "", "TS2322"),
        # a label the model does not have
        (
            None,
            "import { useSemanticSegmenter } from 'react-native-executorch';\n"
            "import { DEEPLAB_V3_RESNET50_SEGMENTER } from './modelUrls';\n"
            "export const use = () => useSemanticSegmenter(DEEPLAB_V3_RESNET50_SEGMENTER.DEFAULT)\n"
            "  .segment?.({ data: new Uint8Array(3), width: 1, height: 1, format: 'rgb', layout: 'hwc' },"
            " { zebra: [255, 0, 0, 255] });\n",
            "TS2353",
        ),
    ],
    ids=["rne09-constant", "rne05-constant", "old-shape", "resize-mode", "unknown-label"],
)
def test_0_10_types_refuse_the_old_shape_and_wrong_options(tmp_path, edit, code, error):
    """Against react-native-executorch 0.10.2 the generated constants are checked, not merely accepted."""
    ts = render_ts(voc(published(with_rne09=True)))
    if edit:
        assert edit[0] in ts
        ts = ts.replace(edit[0], edit[1])
    (tmp_path / "modelUrls.ts").write_text(ts)
    (tmp_path / "use.ts").write_text(code or "export {};\n")
    proc = tsc(tmp_path, "modelUrls.ts", "use.ts", rne="0.10.2")
    assert proc.returncode != 0 and error in proc.stdout, proc.stdout


def test_0_10_pairings_that_normalize_twice_or_never_are_refused(tmp_path):
    """A table whose 0.10 line would give the rne-0.5 files ImageNet's normalizeOpts (mean/std twice),
    or the rne-0.9 file pixel/255 (never): generation refuses, through the CLI too, and writes nothing."""
    table = (ROOT / "configs" / "runtimes" / "rne_releases.yaml").read_text()
    assert "      rne-0.5: pixel/255\n      rne-0.9: imagenet\n" in table
    twice = write_yaml(tmp_path / "twice.yaml", table.replace("rne-0.5: pixel/255", "rne-0.5: imagenet"))
    with pytest.raises(
        ExportError,
        match=r"cannot serve react-native-executorch 0\.10\.0 – 0\.10\.2: useSemanticSegmenter feeds normalizeOpts = "
        r"imagenet for rne-0\.5 .*normalize its input twice",
    ):
        render_ts(published(), load_runtimes(twice))
    never = write_yaml(tmp_path / "never.yaml", table.replace("rne-0.9: imagenet", "rne-0.9: pixel/255"))
    with pytest.raises(ExportError, match=r"0\.10\.0 – 0\.10\.2.*never normalize its input"):
        groups_from(published(with_rne09=True), load_runtimes(never))
    pub = tmp_path / "published.json"
    pub.write_text(json.dumps(published()))
    proc = run_cli("codegen", str(pub), "--out", str(tmp_path / "out"), "--runtimes", str(twice))
    assert proc.returncode == 2 and "normalize its input twice" in proc.stderr, proc.stderr
    assert not (tmp_path / "out" / "modelUrls.ts").exists()


def test_a_file_whose_output_the_hook_does_not_read_is_refused():
    pub = published()
    pub["manifest"]["artifacts"]["deeplab_v3_resnet50_xnnpack_fp32.pte"]["output"]["kind"] = "argmax"
    with pytest.raises(ExportError, match=r"outputs argmax, but react-native-executorch .* reads logits from output 0"):
        render_ts(pub)


@pytest.mark.parametrize(
    "old,new,error",
    [
        (
            "    serves:\n      rne-0.5: pixel/255\n      rne-0.9: imagenet\n      rne-0.10: model\n",
            "    contract: rne-0.5\n",
            "give `serves`",
        ),
        ("rne-0.9: imagenet", "rne-0.9: imagenet/2", "expected one of pixel/255, imagenet"),
        ("rne-0.9: imagenet", "rne-0.7: imagenet", "rne-0.7"),
        ("    reads: logits\n", "    reads: argmax\n", "unknown output kind 'argmax'"),
        (
            "    hook: useImageSegmentation\n",
            "    hook: useImageSegmentation\n    serves: {rne-0.9: imagenet}\n",
            "give `contract`, not `serves`",
        ),
    ],
    ids=["contract-not-serves", "unknown-feed", "unknown-contract", "unknown-output", "serves-on-a-fixed-hook"],
)
def test_the_table_refuses_malformed_lines(tmp_path, old, new, error):
    table = (ROOT / "configs" / "runtimes" / "rne_releases.yaml").read_text()
    assert old in table
    with pytest.raises(ExportError, match=error):  # ConfigError, or the contract registry's error
        load_runtimes(write_yaml(tmp_path / "t.yaml", table.replace(old, new, 1)))


def test_python_module_has_the_0_10_groups(tmp_path):
    path = tmp_path / "model_urls.py"
    path.write_text(render_py(voc(published(with_int8=True, with_rne09=True))))
    spec = importlib.util.spec_from_file_location("model_urls", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    g = mod.DEEPLAB_V3_RESNET50_SEGMENTER
    assert list(g["modelPath"]) == ["XNNPACK_FP32", "XNNPACK_INT8", "COREML_FP16"]
    assert g["default"] == {"ios": "COREML_FP16", "android": "XNNPACK_FP32"}
    assert (g["normalizeOpts"], g["contract"], g["rne"], g["hook"]) == (
        "pixel/255",
        "rne-0.5",
        RNE_0_10,
        "useSemanticSegmenter",
    )
    assert mod.DEEPLAB_V3_RESNET50_RNE09_SEGMENTER["normalizeOpts"] == "imagenet"
    assert g["labels"] == PASCAL_VOC_LABELS and len(mod.ALL_URLS) == 4


def test_compat_proves_each_file_once_per_runtime_of_every_line_that_runs_it():
    """0.10 runs both contracts through normalizeOpts: an rne-0.5 file is proven in 1.3.1 too (its
    own lines stop at 1.0.1), and the rne-0.9 file once in 1.3.1, for 0.9.1 – 0.10.2; `min_rne`
    drops the lines before it."""
    from export.rne.runtimes import lines_label, runtimes_to_prove
    from export.store.manifest import manifest_from_dict

    lines = load_runtimes()
    arts = manifest_from_dict(published(with_int8=True, with_rne09=True)["manifest"], "test").artifacts

    def plan(name):
        e = arts[name]
        return {et: lines_label(group, lines, e.min_rne) for et, group in runtimes_to_prove(e, lines).items()}

    assert plan("deeplab_v3_resnet50_xnnpack_fp32.pte") == {
        "0.6.0": "0.4.0 – 0.5.6",
        "0.7.0": "0.5.7 – 0.5.15",
        "1.0.1": "0.6.0 – 0.7.3",
        "1.3.1": "0.10.0 – 0.10.2",
    }
    assert plan("deeplab_v3_resnet50_xnnpack_fp32_rne09.pte") == {
        "1.1.0": "0.8.0 – 0.8.5",
        "1.2.0": "0.9.0",
        "1.3.1": "0.9.1 – 0.10.2",
    }
    late = dataclasses.replace(arts["deeplab_v3_resnet50_xnnpack_int8.pte"], min_rne="0.5.7")
    assert list(runtimes_to_prove(late, lines)) == ["0.7.0", "1.0.1", "1.3.1"]
    split = [lines[0], lines[-1]]  # not neighbours in the table: each run says its own releases
    assert lines_label(split, lines) == "0.4.0 – 0.5.6, 0.10.0 – 0.10.2"
