"""rne-export: segmentation models -> verified ExecuTorch files for React Native ExecuTorch.

Start with `rne-export new` (a config from your model's own files), then `build`, `run`, `bench`,
`card`, `publish`. Errors print one line and exit non-zero, no traceback."""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import os
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from export import threads
from export.config import BACKENDS, CONTRACTS, ModelConfig
from export.config_file import find_config, list_configs, load_config
from export.data import CONFIGS, cache_root
from export.errors import ExportError

if TYPE_CHECKING:
    from export.records import Entry

CONFIG_DIR = CONFIGS  # the built-in configs, shipped in the package


# Where a command's native (C++) log lines and other libraries' warnings go unless --verbose: the
# ExecuTorch runtime prints cpuinfo probing lines on every XNNPACK load, which are not the user's business.
LOG_DIR = cache_root() / "logs"
# the toolchain whose versions decide the bytes (pyproject.toml pins them)
TOOLCHAIN = ("torch", "torchvision", "executorch", "torchao", "coremltools")


def _version() -> str:
    """This tool's version and the installed toolchain's, read from package metadata (no import)."""
    from importlib.metadata import PackageNotFoundError, version

    def of(dist: str) -> str:
        try:
            return version(dist)
        except PackageNotFoundError:
            return "not installed"

    return f"rne-export {of('rne-export')} (" + ", ".join(f"{d} {of(d)}" for d in TOOLCHAIN) + ")"


def _catalogue() -> str:
    here = [p for p in list_configs("configs") if p.resolve().parent != CONFIG_DIR.resolve()]
    lines = ["models and variants (--config NAME: ./configs/NAME.yaml, else built in):"]
    for path in here + list_configs(CONFIG_DIR):
        try:
            cfg = load_config(path)
            lines.append(f"  {cfg.name:<28} {', '.join(v.name for v in cfg.variants)}   [{path.name}]")
        except ExportError as e:
            lines.append(f"  {path.name}: invalid: {e}")
    lines.append(f"backends: {', '.join(BACKENDS.names())}; contracts: {', '.join(CONTRACTS.names())}")
    return "\n".join(lines)


def _parser(help_wanted: bool = True) -> argparse.ArgumentParser:
    """The CLI; the catalogue of configs (every YAML loaded: ~0.4 s) only when help is shown."""
    fmt = argparse.RawDescriptionHelpFormatter
    catalogue = _catalogue() if help_wanted else None
    p = argparse.ArgumentParser(prog="rne-export", description=__doc__, epilog=catalogue, formatter_class=fmt)
    p.add_argument("--version", action="version", version=_version())
    p.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help=f"show other libraries' warnings and the ExecuTorch runtime's own log lines (default: kept in {LOG_DIR})",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _new_args(sub)
    _build_args(sub, catalogue)
    _publish_args(sub)
    _run_args(sub)
    _bench_and_card_args(sub)
    _tool_args(sub)
    return p


def _new_args(sub) -> None:
    from export.convert.sources import SOURCES

    n = sub.add_parser(
        "new",
        help="write a config for your model from its own files (labels, size, normalization); then `build` it",
        description="Write configs/<name>.yaml for a model: what its own files say (labels, input size, "
        "normalization), the default variants for React Native ExecuTorch 0.10, every bound marked NOT measured. "
        "The model is built once (random init) to check it before the file is written.",
    )
    given = n.add_mutually_exclusive_group(required=True)
    for name in SOURCES.names():  # one flag per model source (export/convert/sources/)
        given.add_argument(f"--{name}", metavar="VALUE", help=SOURCES.get(name).new_help)
    n.add_argument("--labels", "--classes", dest="labels", help="class names, comma-separated, e.g. background,person")
    n.add_argument("--name", help="the model's name (files are <name>_<variant>.pte; default: from the source)")
    n.add_argument("--size", help="input HxW or N (default: the model's files, else 224x224)")
    n.add_argument(
        "--normalize", help="imagenet | unit | MEAN/STD on pixel/255, e.g. 0.5/0.5 (default: the model's files)"
    )
    n.add_argument("--mask", help="a one-channel output: logit (before a sigmoid) | probability (after one)")
    n.add_argument("--kwargs", help="JSON object passed to the builder / architecture")
    n.add_argument("--weights", help="trained weights `build` loads by default (model.path): a state dict or folder")
    n.add_argument("--out", type=Path, help="where the config goes (default: configs/<name>.yaml)")
    n.add_argument("--force", action="store_true", help="replace an existing config")


def _new(args) -> int:
    from export.convert.sources import SOURCES
    from export.scaffold import NewArgs, run_new

    source = next(name for name in SOURCES.names() if getattr(args, name, None))
    fields = ("labels", "name", "size", "normalize", "mask", "kwargs", "weights", "out", "force")
    new = NewArgs(source, getattr(args, source), **{f: getattr(args, f) for f in fields})
    return run_new(new, sys.argv[1:] if args.argv is None else args.argv)


def _build_args(sub, catalogue: str | None) -> None:
    b = sub.add_parser(
        "build",
        help="export verified .pte files for one model config",
        epilog=catalogue,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    b.add_argument(
        "--config",
        required=True,
        type=Path,
        action="append",
        help="a config file, or a model name (./configs/NAME.yaml, else built in); repeatable: several models",
    )
    b.add_argument("--variant", action="append", help="variant name, e.g. xnnpack_fp32 (repeatable; default: all)")
    b.add_argument("--force", action="store_true", help="rebuild even variants that are up to date")
    b.add_argument(
        "--weights",
        default="default",
        help="default (torchvision pretrained, via its cache) | random (seeded, smoke runs) | PATH to a state dict",
    )
    b.add_argument(
        "--out",
        default=Path("artifacts"),
        type=Path,
        help="output folder (default: artifacts/); with several --config, each model goes to OUT/<model>/",
    )


def _publish_args(sub) -> None:
    pub = sub.add_parser(
        "publish", help="publish the manifest's files to a Hugging Face repo under a tag (dry run without --push)"
    )
    pub.add_argument("--manifest", default=Path("artifacts/manifest.json"), type=Path)
    pub.add_argument("--repo", required=True, help="OWNER/NAME on the Hub")
    pub.add_argument("--tag", required=True, help="immutable version tag, e.g. v1.0.0")
    pub.add_argument("--push", action="store_true", help="really publish (default: print the plan, change nothing)")
    pub.add_argument("--move-tag", action="store_true", help="allow moving an existing tag (breaks apps pinned to it)")
    pub.add_argument("--endpoint", help="Hub endpoint (default: $HF_ENDPOINT or https://huggingface.co)")
    pub.add_argument(
        "--allow-random-weights",
        action="store_true",
        help="publish files made from seeded random weights (test builds; said in the card and published.json)",
    )
    pub.add_argument(
        "--skip-compat",
        action="store_true",
        help="publish files not proven by `export compat` in every runtime they claim (said and recorded)",
    )
    pub.add_argument(
        "--xet", action="store_true", help="upload through Xet instead of LFS (not exercised by this tool's tests)"
    )


def _run_args(sub) -> None:
    run = sub.add_parser(
        "run",
        help="run a .pte as the app would (reference runtime): forward() of useImageSegmentation / "
        "useSemanticSegmentation, or with --rne 0.10 useSemanticSegmenter's segment()",
    )
    run.add_argument("artifact", type=Path)
    run.add_argument("image", help="path, file:// URI, http(s) URL, data URI or base64 string")
    run.add_argument(
        "--classes", default="", help="comma-separated labels to return probabilities for, e.g. CAT,PERSON"
    )
    run.add_argument("--resize", action="store_true", help="return maps at the image's original size")
    run.add_argument("--overlay", type=Path, help="write a PNG of the photo with the argmax mask and a legend")
    run.add_argument("--contract", help="rne-0.5 | rne-0.9 (default: as recorded in the manifest beside the artifact)")
    run.add_argument(
        "--rne",
        help="react-native-executorch release whose hook takes modelOpts, e.g. 0.10: segment(imageBuffer) with the "
        "constant codegen writes for the file's contract (normalizeOpts, interpolation, outInterpolation)",
    )
    run.add_argument("--mask", type=Path, help="--rne: write segment()'s RGBA mask (the image's size) as a PNG")
    run.add_argument(
        "--colormap",
        help="--rne: segment()'s colormap as JSON, e.g. '{\"person\": [255, 0, 0, 255]}' (labels it omits are "
        "transparent; default: the package's, label 0 transparent)",
    )
    run.add_argument(
        "--format",
        default="rgba",
        help="--rne: the ImageBuffer format the decoded photo is handed over in: rgb | rgba | bgr | bgra | gray "
        "(default rgba)",
    )


def _bench_and_card_args(sub) -> None:
    bench = sub.add_parser("bench", help="latency ratios of each artifact vs eager PyTorch and ONNX Runtime (one run)")
    bench.add_argument("--manifest", default=Path("artifacts/manifest.json"), type=Path)
    bench.add_argument("--runs", type=int, default=20, help="timed runs per engine (default 20)")
    bench.add_argument("--warmup", type=int, default=3, help="untimed warm-up runs per engine (default 3)")
    bench.add_argument("--weights", help="as for build; default: what the manifest records (random/default)")
    bench.add_argument(
        "--config", type=Path, help="config the artifacts came from (default: found by name, sha-checked)"
    )
    bench.add_argument("--out", type=Path, help="where bench.json goes (default: beside the manifest)")
    bench.add_argument(
        "--profile",
        action="store_true",
        help="also profile each XNNPACK file (ETDump) and the ONNX Runtime peers op by op -> profile.json, profile.png",
    )
    card = sub.add_parser("card", help="write the Hugging Face model card (README.md) beside the manifest")
    card.add_argument("--manifest", default=Path("artifacts/manifest.json"), type=Path)
    card.add_argument("--no-overlays", action="store_true", help="skip rendering overlay PNGs")


def _tool_args(sub) -> None:
    """codegen, compat, explain-int8, verify-coreml, check-urls."""
    cg = sub.add_parser("codegen", help="model-URL constants (TypeScript + Python) from published.json files")
    cg.add_argument("published", nargs="+", type=Path, help="published.json of each model repo")
    cg.add_argument("--out", default=Path("artifacts"), type=Path)
    cg.add_argument(
        "--runtimes",
        type=Path,
        help="react-native-executorch release table (default: configs/runtimes/rne_releases.yaml)",
    )
    compat = sub.add_parser(
        "compat", help="load and run each .pte in the older ExecuTorch runtimes its RNE releases embed"
    )
    compat.add_argument("--manifest", default=Path("artifacts/manifest.json"), type=Path)
    compat.add_argument(
        "--runtime", action="append", help="only this ExecuTorch version (repeatable; default: every claimed one)"
    )
    compat.add_argument(
        "--backend", help="only this backend's files, e.g. coreml (the release's macOS job); default: every file"
    )
    ex = sub.add_parser(
        "explain-int8", help="per-layer int8 sensitivity: which layers lose accuracy, worst first (eager, no file)"
    )
    ex.add_argument("--config", required=True, type=Path, help="configs/<model>.yaml")
    ex.add_argument("--weights", default="default", help="as for build: default | random | PATH")
    ex.add_argument("--variant", default="xnnpack_int8", help="the int8 variant whose recipe and input to use")
    ex.add_argument("--top", type=int, default=10, help="rows to print (default 10)")
    vc = sub.add_parser(
        "verify-coreml",
        help="execute each Core ML file of a manifest where Core ML runs (macOS): parity and bundled "
        "verification, recorded in the manifest (publish needs it)",
    )
    vc.add_argument("--manifest", default=Path("artifacts/manifest.json"), type=Path)
    vc.add_argument("--weights", help="as for build; default: what the manifest records (random/default)")
    vc.add_argument("--config", type=Path, help="config the files came from (default: found by name, sha-checked)")
    chk = sub.add_parser("check-urls", help="check that every URL in generated constants modules resolves")
    chk.add_argument("modules", nargs="+", type=Path)


def _publish(args) -> int:
    if args.xet:  # before huggingface_hub is imported (export.release.hubnames defaults it to LFS)
        import os

        os.environ["HF_HUB_DISABLE_XET"] = "0"
    from export.release.publish import PUBLISHED_NAME, Publisher

    publisher = Publisher(
        args.manifest,
        args.repo,
        args.tag,
        endpoint=args.endpoint,
        allow_random_weights=args.allow_random_weights,
        skip_compat=args.skip_compat,
    )
    try:
        if args.push:
            publisher.push(move_tag=args.move_tag)
            from export.release.codegen import write_modules

            folder = publisher.manifest.parent
            print("wrote " + ", ".join(str(w) for w in write_modules(folder / PUBLISHED_NAME, folder)))
        else:
            publisher.dry_run()
    except ExportError as e:  # any message that reaches the user passes through the redactor
        raise type(e)(publisher.secret.redact(str(e))) from None
    return 0


def _colormap_arg(text: str) -> dict:
    import json

    try:
        value = json.loads(text)
    except ValueError:
        raise ExportError(f"--colormap: not JSON: {text[:80]!r}; e.g. '{{\"person\": [255, 0, 0, 255]}}'") from None
    if not isinstance(value, dict):
        raise ExportError("--colormap: expected a JSON object {label: [r, g, b, a]}")
    return value


def _segment(args, model, bgr, colormap: dict | None) -> int:
    """run --rne: useSemanticSegmenter's segment(imageBuffer, colormap), as the app gets it."""
    import json

    import numpy as np

    from export.checks.replay import image_buffer, mask_overlay, write_png, write_rgba_png
    from export.rne.hooks import segmenter_labels

    result = model.segment(image_buffer(bgr, args.format), colormap, args.rne)
    opts = result.opts
    labels = list(segmenter_labels(model.labels)[0])
    ids, counts = np.unique(result.argmax, return_counts=True)
    summary = {
        "artifact": str(args.artifact),
        "rne": opts.line.label,
        "hook": opts.line.hook,
        "contract": opts.contract,
        "modelOpts": {
            "resizeMode": opts.resize_mode,
            "interpolation": opts.interpolation,
            "normalizeOpts": {"feed": opts.feed, "alpha": list(opts.alpha), "beta": list(opts.beta)},
            "outInterpolation": opts.out_interpolation,
        },
        "image": {"format": args.format, "width": bgr.shape[1], "height": bgr.shape[0]},
        "input": [model.height, model.width],
        "mask": {"shape": list(result.mask.shape), "dtype": str(result.mask.dtype), "format": "rgba"},
        "classes_present": {
            labels[int(i)]: round(int(n) / result.argmax.size, 4) for i, n in zip(ids, counts, strict=True)
        },
        "colormap_present": {labels[int(i)]: list(result.colormap[labels[int(i)]]) for i in ids},
    }
    if args.mask:
        write_rgba_png(args.mask, result.mask)
        summary["mask"]["png"] = str(args.mask)
    if args.overlay:
        write_png(args.overlay, mask_overlay(bgr, result.mask, result.argmax, labels, result.colormap))
        summary["overlay"] = str(args.overlay)
    print(json.dumps(summary, indent=2))
    return 0


def _run(args) -> int:
    import json

    import numpy as np

    from export.checks.replay import ARGMAX, SegmentationModel, decode, overlay, read_source, write_png

    segmenter_only = [f for f, v in (("--mask", args.mask), ("--colormap", args.colormap)) if v]
    if args.format != "rgba":
        segmenter_only.append("--format")
    if not args.rne and segmenter_only:
        raise ExportError(f"{', '.join(segmenter_only)}: only with --rne (e.g. --rne 0.10: segment(imageBuffer))")
    if args.rne and (args.classes or args.resize):
        raise ExportError(
            "--classes / --resize are forward()'s (react-native-executorch 0.4 – 0.9); segment() (--rne) returns "
            "an RGBA mask at the image's size: use --mask / --colormap"
        )
    colormap = _colormap_arg(args.colormap) if args.colormap else None
    from export.files import existing_file, new_file

    # every argument that needs no model first: a bad one fails before the program is loaded
    existing_file(args.artifact, "artifact", "pass the .pte file")
    for flag, target in (("--overlay", args.overlay), ("--mask", args.mask)):
        if target:  # a PNG name in a folder that takes files
            new_file(target, flag, (".png",))
    bgr = decode(read_source(args.image), args.image)
    model = SegmentationModel(args.artifact, contract=args.contract)
    if model.entry is None:
        print(
            f"note: no manifest.json beside {args.artifact}: its sha256 cannot be checked and labels are class ids",
            file=sys.stderr,
        )
    if args.rne:
        return _segment(args, model, bgr, colormap)
    classes = [c.strip() for c in args.classes.split(",") if c.strip()]  # "CAT, PERSON": the space is not a label
    result = model.forward(bgr, classes, resize=args.resize)
    argmax = result[ARGMAX]
    ids, counts = np.unique(argmax, return_counts=True)
    summary = {
        "artifact": str(args.artifact),
        "contract": model.contract.name,
        "input": [model.height, model.width],
        "keys": {k: {"shape": list(v.shape), "dtype": str(v.dtype)} for k, v in result.items()},
        "classes_present": {
            model.labels[int(i)]: round(int(n) / argmax.size, 4) for i, n in zip(ids, counts, strict=True)
        },
        "mean_probability": {c: round(float(result[c].mean()), 4) for c in classes},
    }
    if args.overlay:
        write_png(args.overlay, overlay(bgr, argmax, model.labels))
        summary["overlay"] = str(args.overlay)
    print(json.dumps(summary, indent=2))
    return 0


def _bench(args) -> int:
    from export.checks.bench import run_bench

    if args.runs < 1 or args.warmup < 0:
        raise ExportError("--runs must be >= 1 and --warmup >= 0")
    if args.weights not in (None, "default", "random"):
        from export.files import existing_file

        existing_file(args.weights, "--weights", "valid values: default, random, or a checkpoint PATH")
    run_bench(
        args.manifest, args.runs, args.warmup, args.weights, args.config, CONFIG_DIR, args.out, profile=args.profile
    )
    return 0


def _card(args) -> int:
    from export.release.card import write_card

    print(f"wrote {write_card(args.manifest, with_overlays=not args.no_overlays)}")
    return 0


def _codegen(args) -> int:
    from export.release.codegen import write_modules
    from export.rne.runtimes import load_runtimes

    lines = load_runtimes(args.runtimes) if args.runtimes else None
    for path in write_modules(list(args.published), args.out, lines):
        print(f"wrote {path}")
    return 0


def _explain_int8(args) -> int:
    cfg = load_config(find_config(args.config))
    variant = cfg.variant(args.variant)
    if variant.precision != "int8":
        raise ExportError(f"--variant {args.variant} is {variant.precision}; explain-int8 needs an int8 variant")
    from export.convert.lower import export_program
    from export.convert.quantize import accuracy_inputs, calibration_inputs, calibration_set
    from export.convert.sensitivity import layer_sensitivity, producer_chain, report
    from export.convert.sources import load_model
    from export.convert.wrap import example_input, wrap

    images = calibration_set(cfg)
    module = wrap(load_model(cfg, args.weights).module, cfg, variant)
    photos = [x for x, _ in accuracy_inputs(cfg, variant).values()]
    recipe = variant.quantization
    errors = layer_sensitivity(
        module, calibration_inputs(cfg, variant, images), photos, recipe.per_channel if recipe else True
    )
    print(
        f"{cfg.name} {variant.name}: each conv alone in int8 (the rest fp32), logits vs fp32 on the held-apart photos"
    )
    print(report(errors, args.top))
    worst = errors[0].module
    chain = producer_chain(export_program(module, example_input(variant)), worst)
    print(f"to keep the worst in fp32: quantization: {{keep_fp32: [{', '.join(chain)}]}} (or keep_fp32: auto)")
    return 0


def _compat(args) -> int:
    from export.checks.compat import run_compat

    return run_compat(args.manifest, args.runtime, args.backend)


def _verify_coreml(args) -> int:
    from export.checks.coreml_proof import verify_coreml

    done = verify_coreml(args.manifest, args.weights, args.config, CONFIG_DIR)
    print(f"Core ML executed and recorded in {args.manifest}: {', '.join(done)}")
    return 0


def _check_urls(args) -> int:
    from export.release.urls import check_urls

    problems = check_urls(args.modules)
    for url, why in problems:
        print(f"error: {url} does not resolve: {why}", file=sys.stderr)
    if problems:
        return 4
    print("all URLs resolve")
    return 0


def summary_table(results) -> str:
    """One row per artifact of a build: size, delegation, parity, int8 accuracy, seconds."""
    from tabulate import tabulate

    rows = []
    for r in results:
        e = r.entry
        wst = e.parity.worst
        acc = e.accuracy
        rows.append(
            (
                r.artifact,
                f"{e.bytes / 1e6:.1f}",
                str(e.delegation.delegated_nodes),
                str(e.delegation.non_delegated_compute_nodes),
                e.parity.mode,
                *(
                    (f"{wst.decisive_agreement * 100:.3f}%", f"{wst.rel_max_abs:.2e}", f"{wst.snr_db:.1f}")
                    if wst
                    else ("-", "-", "-")
                ),
                f"{acc.worst.snr_vs_noise_db:+.1f}" if acc else "-",
                "up to date" if r.up_to_date else f"{e.export_seconds:.1f}",
            )
        )
    headers = (
        "artifact",
        "MB",
        "delegated",
        "non-deleg",
        "parity",
        "decisive argmax",
        "rel err",
        "snr dB",
        "int8 dB vs noise",
        "seconds",
    )
    return tabulate(rows, headers=headers, tablefmt="plain", disable_numparse=True)


def select(configs: list[ModelConfig], variant_names: list[str] | None) -> list[tuple[ModelConfig, list[str] | None]]:
    """Pair each config with the requested variants it has; a name no config has is an error."""
    if not variant_names:
        return [(c, None) for c in configs]
    known = {v.name for c in configs for v in c.variants}
    missing = [repr(n) if not n.strip() or n != n.strip() else n for n in variant_names if n not in known]
    if missing:
        raise ExportError(f"unknown variant(s) {', '.join(missing)}; valid variants: {', '.join(sorted(known))}")
    pairs = [(c, [n for n in variant_names if n in {v.name for v in c.variants}]) for c in configs]
    return [(c, names) for c, names in pairs if names]


def _build(args) -> int:

    configs = [load_config(find_config(p)) for p in args.config]
    if len(configs) > 1 and args.weights not in ("default", "random"):
        raise ExportError("--weights PATH fits one model: pass a single --config with it")
    plan = select(configs, args.variant)  # fail on a bad variant name before any work
    outs = [args.out / cfg.name if len(configs) > 1 else args.out for cfg, _ in plan]  # a folder per model
    if not args.force and _all_fresh(plan, outs, args.weights):
        return 0
    from export.convert.pipeline import build
    from export.convert.sources import weights_identity

    # every model's weights before any work: offline, name every checkpoint to place, not the first
    problems = []
    for cfg, _ in plan:
        try:
            weights_identity(cfg, args.weights)
        except ExportError as e:
            problems.append(str(e))
    if len(problems) == 1:
        raise ExportError(problems[0])
    if problems:
        raise ExportError(f"{len(problems)} of {len(plan)} models cannot get their weights: " + " | ".join(problems))

    results = []
    for (cfg, names), out in zip(plan, outs, strict=True):
        results += build(cfg, names, args.weights, out, force=args.force)
    print(summary_table(results))
    for out in outs:
        print(f"manifest: {out / 'manifest.json'}")
    if results and all(r.up_to_date for r in results):
        print("everything up to date")
    return 0


@dataclass(frozen=True)
class _Fresh:
    artifact: str
    entry: Entry
    up_to_date: bool = True


def _all_fresh(plan, outs: list[Path], weights: str) -> bool:
    """Every requested variant up to date by what the last build recorded (export.store.uptodate):
    the same lines as a build that skips them all, without importing torch."""
    from export.store.uptodate import fresh_entries

    found = []
    for (cfg, names), out in zip(plan, outs, strict=True):
        variants = [cfg.variant(n) for n in names] if names else list(cfg.variants)
        fresh = fresh_entries(out, cfg, variants, weights) if out.is_dir() else None
        if fresh is None:
            return False
        found += [(v, cfg.artifact_name(v), fresh[cfg.artifact_name(v)]) for v in variants]
    for v, name, _ in found:
        print(f"[{v.name}] up to date: {name} (config, weights and tools unchanged)", file=sys.stderr, flush=True)
    print(summary_table([_Fresh(name, entry) for _, name, entry in found]))
    for out in outs:
        print(f"manifest: {out / 'manifest.json'}")
    print("everything up to date")
    return True


# ExecuTorch's runtime logs through Python's sys.stderr (its pybindings), in its C++ format:
# "[cpuinfo_utils.cpp:71] Reading file ..." on the first XNNPACK run of a process
NATIVE_LINE = re.compile(r"^\[[\w./-]+\.(?:cpp|cc|c|h|hpp|mm):\d+\] ")


class _Sieve(io.TextIOBase):
    """sys.stderr for a quiet command: the tool's own lines pass to the terminal; the runtime's
    native log lines go to a log file (opened on the first one)."""

    def __init__(self, terminal, log: Path) -> None:
        self.terminal, self.log_path, self.tail = terminal, log, ""
        self.log: io.TextIOBase | None = None

    def writable(self) -> bool:
        return True

    # what libraries ask of sys.stderr (a terminal? its fd? its encoding?) is the terminal's answer
    def isatty(self) -> bool:
        return bool(getattr(self.terminal, "isatty", lambda: False)())

    def fileno(self) -> int:
        return self.terminal.fileno()

    @property
    def encoding(self):  # type: ignore[override]
        return getattr(self.terminal, "encoding", "utf-8")

    def write(self, text: str) -> int:
        *lines, self.tail = (self.tail + text).split("\n")
        for line in lines:
            self._route(line + "\n")
        return len(text)

    def flush(self) -> None:
        # a progress line ("\r  labels: 3/12") shows now; the runtime writes its lines in pieces
        # ("[", "cpuinfo_utils.cpp", ":71] ", ...) with a flush after each: a "[" start waits for its end
        if self.tail and not self.tail.startswith("["):
            self.terminal.write(self.tail)
            self.tail = ""
        self.terminal.flush()

    def _route(self, line: str) -> None:
        if not NATIVE_LINE.match(line):
            self.terminal.write(line)
            return
        if self.log is None:
            try:
                self.log_path.parent.mkdir(parents=True, exist_ok=True)
                self.log = open(self.log_path, "a")  # closed when the command ends (close_log)
            except OSError:  # no writable cache: the line stays on the terminal rather than failing the command
                self.terminal.write(line)
                return
        self.log.write(line)

    def close_log(self) -> None:
        if self.tail:
            self._route(self.tail)
            self.tail = ""
        if self.log is not None:
            self.log.close()


@contextlib.contextmanager
def _terminal_for_the_tool(command: str, verbose: bool) -> Iterator[None]:
    """Unless --verbose: other libraries' Python warnings and log records (torch's, ExecuTorch's,
    coremltools') are dropped, coremltools' progress bars are off, and the ExecuTorch runtime's own
    log lines go to LOG_DIR/<command>.log. Errors, gate verdicts and stage progress stay."""
    if verbose:
        yield
        return
    import warnings

    tqdm_was = os.environ.get("TQDM_DISABLE")
    # coremltools' per-pass progress bars: our stage lines time the lowering; huggingface_hub's upload
    # bars stay for a publish on a terminal
    if command != "publish" or not sys.stderr.isatty():
        os.environ["TQDM_DISABLE"] = "1"
    import cv2  # OpenCV's own decoder warnings ("[ WARN:0@1.2] global grfmt_png.cpp ..."): our error says it

    cv_level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    terminal = sys.stderr
    sieve = _Sieve(terminal, LOG_DIR / f"{command}.log")
    sys.stderr = sieve
    logging.disable(logging.WARNING)  # this tool logs nothing; ERROR records of others still show
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            warnings.filterwarnings("default", module=r"export(\.|$)")
            yield
    finally:
        logging.disable(logging.NOTSET)
        cv2.utils.logging.setLogLevel(cv_level)
        sieve.flush()
        sieve.close_log()
        if sys.stderr is sieve:
            sys.stderr = terminal
        if tqdm_was is None:
            os.environ.pop("TQDM_DISABLE", None)
        else:
            os.environ["TQDM_DISABLE"] = tqdm_was


def main(argv: list[str] | None = None) -> int:
    given = sys.argv[1:] if argv is None else argv
    args = _parser(help_wanted=bool({"-h", "--help"} & set(given)) or not given).parse_args(argv)
    args.argv = argv
    with _terminal_for_the_tool(args.command, args.verbose):
        return _dispatch(args)


def _dispatch(args) -> int:
    try:
        threads.apply()  # before torch is imported
        return {
            "build": _build,
            "publish": _publish,
            "check-urls": _check_urls,
            "compat": _compat,
            "verify-coreml": _verify_coreml,
            "explain-int8": _explain_int8,
            "run": _run,
            "bench": _bench,
            "new": _new,
            "card": _card,
            "codegen": _codegen,
        }[args.command](args)
    except ExportError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("interrupted: previous artifacts are left as they were", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `rne-export new ... | head`: the reader left; nothing to report
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except Exception as e:  # not swallowed: one line here, the full traceback in a file for the bug report
        where = _write_traceback()
        first = " ".join(str(e).split())[:300]
        print(
            f"error: unexpected {type(e).__name__}: {first} (a bug in this tool; traceback: {where})", file=sys.stderr
        )
        return 1


def _write_traceback() -> str:
    import tempfile
    import traceback

    fd, path = tempfile.mkstemp(prefix="rne-export-traceback-", suffix=".txt")
    with open(fd, "w") as f:
        f.write(traceback.format_exc())
    return path


def console() -> None:
    """The `rne-export` command (pyproject's [project.scripts])."""
    sys.exit(main())
