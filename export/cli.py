"""rne-export: segmentation models -> verified ExecuTorch files for React Native ExecuTorch.

Start with `rne-export new` (a config from your model's own files), then `build`, `run`, `bench`,
`card`, `publish`. Errors print one line and exit non-zero, no traceback."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from export import threads
from export.config import BACKENDS, CONTRACTS
from export.config_file import list_configs, load_config
from export.console import LOG_DIR, for_the_tool, write_traceback
from export.data import CONFIGS
from export.errors import ExportError
from export.provenance import version_line

CONFIG_DIR = CONFIGS  # the built-in configs, shipped in the package


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
    p.add_argument("--version", action="version", version=version_line())
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
    from export.sources import SOURCES

    n = sub.add_parser(
        "new",
        help="write a config for your model from its own files (labels, size, normalization); then `build` it",
        description="Write configs/<name>.yaml for a model: what its own files say (labels, input size, "
        "normalization), the default variants for React Native ExecuTorch 0.10, every bound marked NOT measured. "
        "The model is built once (random init) to check it before the file is written.",
    )
    given = n.add_mutually_exclusive_group(required=True)
    for name in SOURCES.names():  # one flag per model source (export/sources/)
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
        "--jobs",
        "-j",
        type=int,
        default=1,
        help="with several --config: models built at once, each in its own process on its share of the cores",
    )
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


def main(argv: list[str] | None = None) -> int:
    given = sys.argv[1:] if argv is None else argv
    args = _parser(help_wanted=bool({"-h", "--help"} & set(given)) or not given).parse_args(argv)
    args.argv = argv
    with for_the_tool(args.command, args.verbose):
        return _dispatch(args)


def _dispatch(args) -> int:
    try:
        threads.apply()  # before torch is imported
        return _command(args.command)(args)
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
        where = write_traceback()
        first = " ".join(str(e).split())[:300]
        print(
            f"error: unexpected {type(e).__name__}: {first} (a bug in this tool; traceback: {where})", file=sys.stderr
        )
        return 1


def _command(name: str):
    """The module that owns a command, imported only when that command runs (most import torch)."""
    if name == "new":
        from export.scaffold import command
    elif name == "build":
        from export.convert.request import command
    elif name == "publish":
        from export.release.publish import command
    elif name == "run":
        from export.checks.run import command
    elif name == "bench":
        from export.checks.bench import command
    elif name == "card":
        from export.release.card import command
    elif name == "codegen":
        from export.release.codegen import command
    elif name == "compat":
        from export.checks.compat import command
    elif name == "explain-int8":
        from export.convert.quantize import command
    elif name == "verify-coreml":
        from export.checks.coreml_proof import command
    else:
        from export.release.urls import command  # check-urls
    return command


def console() -> None:
    """The `rne-export` command (pyproject's [project.scripts])."""
    sys.exit(main())
