"""Command line: `python -m export build|...`. Errors print one line and exit non-zero, no traceback."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from .config import BACKENDS, CONTRACTS, ModelConfig, list_configs, load_config
from .errors import ExportError

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


def _catalogue() -> str:
    lines = ["models and variants (configs/):"]
    for path in list_configs(CONFIG_DIR):
        try:
            cfg = load_config(path)
            lines.append(f"  {cfg.name:<28} {', '.join(v.name for v in cfg.variants)}   [{path.name}]")
        except ExportError as e:
            lines.append(f"  {path.name}: invalid: {e}")
    lines.append(f"backends: {', '.join(BACKENDS.names())}; contracts: {', '.join(CONTRACTS.names())}")
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    p = argparse.ArgumentParser(prog="python -m export", description=__doc__, epilog=_catalogue(), formatter_class=fmt)
    sub = p.add_subparsers(dest="command", required=True)
    b = sub.add_parser(
        "build", help="export verified .pte files for one model config", epilog=_catalogue(), formatter_class=fmt
    )
    b.add_argument(
        "--config",
        required=True,
        type=Path,
        action="append",
        help="configs/<model>.yaml (repeatable: the matrix of several models)",
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
    bench = sub.add_parser("bench", help="latency ratios of each artifact vs eager PyTorch and ONNX Runtime (one run)")
    bench.add_argument("--manifest", default=Path("artifacts/manifest.json"), type=Path)
    bench.add_argument("--runs", type=int, default=20, help="timed runs per engine (default 20)")
    bench.add_argument("--warmup", type=int, default=3, help="untimed warm-up runs per engine (default 3)")
    bench.add_argument("--weights", help="as for build; default: what the manifest records (random/default)")
    bench.add_argument(
        "--config", type=Path, help="config the artifacts came from (default: found by name, sha-checked)"
    )
    card = sub.add_parser("card", help="write the Hugging Face model card (README.md) beside the manifest")
    card.add_argument("--manifest", default=Path("artifacts/manifest.json"), type=Path)
    card.add_argument("--no-overlays", action="store_true", help="skip rendering overlay PNGs")
    probe = sub.add_parser("bench-probe", help=argparse.SUPPRESS)
    probe.add_argument("artifact", type=Path)
    probe.add_argument("--runs", type=int, default=3)
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
    ex = sub.add_parser(
        "explain-int8", help="per-layer int8 sensitivity: which layers lose accuracy, worst first (eager, no file)"
    )
    ex.add_argument("--config", required=True, type=Path, help="configs/<model>.yaml")
    ex.add_argument("--weights", default="default", help="as for build: default | random | PATH")
    ex.add_argument("--variant", default="xnnpack_int8", help="the int8 variant whose recipe and input to use")
    ex.add_argument("--top", type=int, default=10, help="rows to print (default 10)")
    chk = sub.add_parser("check-urls", help="check that every URL in generated constants modules resolves")
    chk.add_argument("modules", nargs="+", type=Path)
    return p


def _publish(args) -> int:
    if args.xet:  # before huggingface_hub is imported (export.hubnames defaults it to LFS)
        import os

        os.environ["HF_HUB_DISABLE_XET"] = "0"
    from .publish import Publisher

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

    from .codegen import segmenter_labels
    from .reference import image_buffer, mask_overlay, write_png, write_rgba_png

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

    from .reference import ARGMAX, SegmentationModel, decode, overlay, read_source, write_png

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
    from .files import ensure_writable_dir

    for flag, target in (("--overlay", args.overlay), ("--mask", args.mask)):
        if target:  # before any work: the folder must take a file
            ensure_writable_dir(Path(target).parent, flag)
    model = SegmentationModel(args.artifact, contract=args.contract)
    if model.entry is None:
        print(
            f"note: no manifest.json beside {args.artifact}: its sha256 cannot be checked and labels are class ids",
            file=sys.stderr,
        )
    bgr = decode(read_source(args.image), args.image)
    if args.rne:
        return _segment(args, model, bgr, colormap)
    classes = [c for c in args.classes.split(",") if c]
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
    from .bench import run_bench

    if args.runs < 1 or args.warmup < 0:
        raise ExportError("--runs must be >= 1 and --warmup >= 0")
    run_bench(args.manifest, args.runs, args.warmup, args.weights, args.config, CONFIG_DIR)
    return 0


def _card(args) -> int:
    from .card import write_card

    print(f"wrote {write_card(args.manifest, with_overlays=not args.no_overlays)}")
    return 0


def _bench_probe(args) -> int:
    import json

    from .bench import probe

    print(json.dumps(probe(args.artifact, args.runs)))
    return 0


def _codegen(args) -> int:
    from .codegen import write_modules
    from .runtimes import load_runtimes

    lines = load_runtimes(args.runtimes) if args.runtimes else None
    for path in write_modules(list(args.published), args.out, lines):
        print(f"wrote {path}")
    return 0


def _explain_int8(args) -> int:
    cfg = load_config(args.config)
    variant = cfg.variant(args.variant)
    if variant.precision != "int8":
        raise ExportError(f"--variant {args.variant} is {variant.precision}; explain-int8 needs an int8 variant")
    from .lower import export_program
    from .quantize import accuracy_inputs, calibration_inputs, calibration_set
    from .sensitivity import layer_sensitivity, producer_chain, report
    from .weights import load_model
    from .wrap import example_input, wrap

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
    from .compat import run_compat

    return run_compat(args.manifest, args.runtime)


def _check_urls(args) -> int:
    from .codegen import check_urls

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
    missing = [n for n in variant_names if n not in known]
    if missing:
        raise ExportError(f"unknown variant(s) {', '.join(missing)}; valid variants: {', '.join(sorted(known))}")
    pairs = [(c, [n for n in variant_names if n in {v.name for v in c.variants}]) for c in configs]
    return [(c, names) for c, names in pairs if names]


def _build(args) -> int:

    configs = [load_config(p) for p in args.config]
    if len(configs) > 1 and args.weights not in ("default", "random"):
        raise ExportError("--weights PATH fits one model: pass a single --config with it")
    plan = select(configs, args.variant)  # fail on a bad variant name before any work
    from .pipeline import build
    from .weights import weights_identity

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
    outs = []
    for cfg, names in plan:
        out = args.out / cfg.name if len(configs) > 1 else args.out  # one folder per model in a matrix
        results += build(cfg, names, args.weights, out, force=args.force)
        outs.append(out / "manifest.json")
    print(summary_table(results))
    for manifest in outs:
        print(f"manifest: {manifest}")
    if results and all(r.up_to_date for r in results):
        print("everything up to date")
    return 0


def _quiet_toolchains() -> None:
    # coremltools and the Core ML partitioner log version-compat notices and per-op INFO lines on
    # every lowering; our own stage lines and the manifest say what matters.
    for name, level in (("executorch", logging.WARNING), ("coremltools", logging.ERROR)):
        logging.getLogger(name).setLevel(level)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _quiet_toolchains()
    try:
        return {
            "build": _build,
            "publish": _publish,
            "check-urls": _check_urls,
            "compat": _compat,
            "explain-int8": _explain_int8,
            "run": _run,
            "bench": _bench,
            "bench-probe": _bench_probe,
            "card": _card,
            "codegen": _codegen,
        }[args.command](args)
    except ExportError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("interrupted: previous artifacts are left as they were", file=sys.stderr)
        return 130
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
