"""`rne-export new`: a config for a maintainer's model, written from the model's own files.

The source (`--smp`, `--transformers`, `--python`, `--torchvision`: one flag per registered source)
says what its files know (export/sources/: `describe`); the command line adds what they cannot
(labels of a bare builder, a size). The rest is the family base for React Native ExecuTorch 0.10
(configs/base/segmenter.yaml, shipped in the package), written out in full so the file stands alone,
every bound marked NOT measured. Before the file is written it is loaded as `build` would load it
and the model is built once (random init) and run at the size: a missing or contradictory fact is
one error line, and nothing is written (temp file + rename).
"""

from __future__ import annotations

import dataclasses
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from export.data import CONFIGS
from export.errors import ExportError
from export.sources import SOURCES, Draft, NewRequest

if TYPE_CHECKING:
    from export.config import ModelConfig

BASE = CONFIGS / "base" / "segmenter.yaml"
DEFAULT_SIZE = (224, 224)
IMAGENET = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
NOT_MEASURED = "NOT measured on this model: the seed model's (rne-export's docs/maintainers.md: Measuring your bounds)"


@dataclass(frozen=True)
class NewArgs:
    """`rne-export new`'s command line."""

    source: str
    value: str
    labels: str | None = None
    name: str | None = None
    size: str | None = None
    normalize: str | None = None
    mask: str | None = None
    kwargs: str | None = None
    weights: str | None = None
    out: Path | None = None
    force: bool = False


def parse_labels(text: str | None) -> tuple[str, ...] | None:
    if text is None:
        return None
    labels = tuple(x.strip() for x in text.split(","))
    if not all(labels):
        raise ExportError(f"--labels {text!r}: an empty name; give comma-separated names, e.g. background,person")
    return labels


def parse_size(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    m = re.fullmatch(r"\s*(\d+)\s*(?:[xX]\s*(\d+)\s*)?", text)
    if not m or int(m.group(1)) < 8 or int(m.group(2) or m.group(1)) < 8:
        raise ExportError(f"--size {text!r}: expected HxW or N (pixels, at least 8), e.g. 224x224 or 512")
    return int(m.group(1)), int(m.group(2) or m.group(1))


def parse_normalize(text: str | None) -> dict[str, Any] | None:
    """imagenet | unit (pixel/255) | MEAN/STD, each a number or R,G,B."""
    if text is None:
        return None
    if text == "imagenet":
        return dict(IMAGENET)
    if text == "unit":
        return {"mean": 0.0, "std": 1.0}
    mean, sep, std = text.partition("/")
    try:
        values = [[float(x) for x in part.split(",")] for part in (mean, std)]
    except ValueError:
        values = []
    if not sep or not values or any(len(v) not in (1, 3) for v in values) or any(s <= 0 for s in values[1]):
        raise ExportError(
            f"--normalize {text!r}: expected imagenet, unit, or MEAN/STD on pixel/255 (a number or R,G,B each, "
            "std > 0), e.g. 0.5/0.5"
        )
    return {k: v[0] if len(v) == 1 else v for k, v in zip(("mean", "std"), values, strict=True)}


def parse_kwargs(text: str | None) -> dict[str, Any]:
    if text is None:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise ExportError(f"--kwargs {text!r}: expected a JSON object, e.g. '{{\"encoder_depth\": 4}}'")
    return value


def _flow(value: Any) -> str:
    """A value on one YAML line (JSON is YAML: names with any characters stay quoted)."""
    return json.dumps(value)


def _section(key: str, value: Any, comment: str = "") -> str:
    body = yaml.safe_dump({key: value}, default_flow_style=None, sort_keys=False, width=110).rstrip()
    return (f"# {comment}\n" if comment else "") + body + "\n"


def render(
    draft: Draft, name: str, labels: tuple[str, ...], size: tuple[int, int], size_from: str,
    normalize: dict[str, Any], normalize_from: str, labels_from: str, command: str,
) -> str:  # fmt: skip
    """The config's text: the facts with where each came from, then the base's sections."""
    base = yaml.safe_load(BASE.read_text())
    model = dict(draft.model)
    model["num_classes"] = len(labels)
    lines = [
        f"# {name}: written by `{command}`",
        "# for React Native ExecuTorch 0.10's useSemanticSegmenter (any labels; the runtime applies `normalize`).",
        f"# Every bound below is {NOT_MEASURED}.",
        "",
        f"name: {_flow(name)}",
        f"contract: {base['contract']}",
        "model:",
        *(f"  {k}: {_flow(v)}" for k, v in model.items()),
        f"labels: {_flow(list(labels))}   # {labels_from}",
        f"normalize: {_flow(normalize)}   # {normalize_from}",
        f"input: {{height: {size[0]}, width: {size[1]}}}   # {size_from}",
        "",
        _section("parity", base["parity"], "the photos and random inputs every file is compared with eager PyTorch on"),
        _section("calibration", base["calibration"], "int8: set `folder:` to photos of what your app sees"),
        _section("accuracy", base["accuracy"], f"int8 vs fp32 on held-apart photos; bounds {NOT_MEASURED}"),
        _section("tolerances", base["tolerances"], f"parity bounds per precision, {NOT_MEASURED}"),
        _section("variants", _variants(base["variants"], draft), _variants_comment(draft)),
    ]
    return "\n".join(lines)


def _variants(variants: list[dict], draft: Draft) -> list[dict]:
    if not draft.allow_non_delegated:
        return variants
    allowed = list(draft.allow_non_delegated)
    return [{**v, "allow_non_delegated": allowed} if v["backend"] == "xnnpack" else v for v in variants]


def _with_built_in_allowances(draft: Draft) -> Draft:
    """What the built-in config of the same builder lets XNNPACK leave out (MobileNetV3's layout
    copies), so a config `new` writes builds as that one does."""
    from export.config_file import list_configs, load_config
    from export.data import CONFIGS

    builder = draft.model.get("builder")
    for path in list_configs(CONFIGS) if builder else []:
        cfg = load_config(path)
        if cfg.model.source == draft.model.get("source") and cfg.model.builder == builder:
            ops = sorted({op for v in cfg.variants if v.backend == "xnnpack" for op in v.allow_non_delegated})
            return dataclasses.replace(
                draft, allow_non_delegated=tuple(ops), allow_from=f"the built-in configs/{path.name}"
            )
    return draft


def _variants_comment(draft: Draft) -> str:
    said = "the files: XNNPACK fp32 and int8 (Android, iOS), Core ML fp16 (iOS)"
    if draft.allow_non_delegated:
        said += f"; the ops XNNPACK may leave out are {draft.allow_from}'s (counted in the manifest)"
    return said


def _facts(args: NewArgs, draft: Draft, req: NewRequest) -> tuple[tuple[str, ...], str, tuple[int, int], str]:
    """Labels and size with where they came from; one error naming the flag when missing or contradictory."""
    given = req.labels
    if given and draft.labels and given != draft.labels:
        raise ExportError(
            f"--labels {','.join(given)}: contradicts {draft.labels_from} ({','.join(draft.labels)}); leave --labels "
            "out, or correct the model's files"
        )
    labels = given or draft.labels
    if not labels:
        count = f" ({draft.channels} names)" if draft.channels and draft.channels > 1 else ""
        mask = " with --mask logit|probability" if draft.channels == 1 else ""
        raise ExportError(
            f"--labels: {draft.labels_from}; pass them{mask}, comma-separated{count}, e.g. --labels "
            + ",".join(["background", "person", "car"][: max(2, min(draft.channels or 3, 3))])
        )
    channels = 1 if args.mask else len(labels)
    if draft.channels is not None and draft.channels != channels:
        if draft.channels == 1 and not args.mask:
            raise ExportError(
                "--mask: the model outputs one channel (a mask): say what it holds with --mask logit (before a "
                "sigmoid) or --mask probability (after one), with two labels, e.g. --labels background,person"
            )
        raise ExportError(
            f"--labels: {len(labels)} label(s), but the model outputs {draft.channels} channel(s); give one name per "
            "channel" + (" (a one-channel mask takes two labels and --mask)" if args.mask else "")
        )
    if args.mask and len(labels) != 2:
        raise ExportError(f"--mask: a one-channel mask ships as two classes; give two labels, got {len(labels)}")
    size, size_from = req.size, "--size"
    if draft.size and size and size != draft.size:
        raise ExportError(
            f"--size {size[0]}x{size[1]}: contradicts {draft.size_from} ({draft.size[0]}x{draft.size[1]}); leave "
            "--size out (a smaller file goes in a variant's input, after `new`)"
        )
    if size is None:
        size, size_from = (
            (draft.size, draft.size_from) if draft.size else (DEFAULT_SIZE, "the default; --size to change")
        )
    if draft.stride > 1 and (size[0] % draft.stride or size[1] % draft.stride):
        near = [max(draft.stride, round(n / draft.stride) * draft.stride) for n in size]
        raise ExportError(
            f"--size {size[0]}x{size[1]}: {args.value}'s encoder needs multiples of its output stride {draft.stride}; "
            f"use e.g. --size {near[0]}x{near[1]}"
        )
    return labels, "--labels" if given else draft.labels_from, size, size_from


def _check(text: str, target: Path) -> ModelConfig:
    """Load the text as `build` would and run the model once (random init): every refusal here,
    before the file exists. Errors name `target`, not the temp file."""
    from export.config_file import load_config
    from export.convert.wrap import adapt_output
    from export.files import scratch
    from export.sources import load_model

    with scratch(target) as tmp:
        tmp.write_text(text)
        try:
            cfg = load_config(tmp)
            loaded = load_model(cfg, "random")
            adapt_output(loaded.module, cfg, cfg.variants[0])
            return dataclasses.replace(cfg, source=target)
        except ExportError as e:
            raise type(e)(str(e).replace(str(tmp), str(target)).replace(tmp.name, target.name)) from None
        finally:
            tmp.unlink(missing_ok=True)


def new_config(args: NewArgs, command: str) -> tuple[Path, list[str], ModelConfig]:
    """Write the config; -> (its path, the facts as `what: value (from where)` lines, the config as loaded)."""
    source = SOURCES.get(args.source, where="rne-export new")
    out = args.out
    if out is not None and out.suffix not in (".yaml", ".yml"):
        raise ExportError(f"--out {out}: a config is a .yaml file, e.g. --out configs/my_model.yaml")
    config_dir = out.parent if out is not None else Path("configs")
    req = NewRequest(
        args.value,
        config_dir,
        parse_labels(args.labels),
        parse_size(args.size),
        parse_kwargs(args.kwargs),
        args.weights,
    )
    normalize_given = parse_normalize(args.normalize)
    if args.mask not in (None, "logit", "probability"):
        raise ExportError(f"--mask {args.mask!r}: valid values: logit, probability")
    draft = _with_built_in_allowances(source.describe(req))
    labels, labels_from, size, size_from = _facts(args, draft, req)
    name = args.name or re.sub(r"_+", "_", re.sub(r"[^a-z0-9_]", "_", draft.name.lower())).strip("_")
    from export.config import NAME_PATTERN

    if not NAME_PATTERN.fullmatch(name):
        raise ExportError(
            f"--name {name!r}: lowercase letters, digits and _, starting with a letter (it names files and constants)"
        )
    if normalize_given and draft.normalize and normalize_given != draft.normalize:
        raise ExportError(
            f"--normalize {args.normalize}: contradicts {draft.normalize_from} ({_flow(draft.normalize)}); leave it out"
        )
    if normalize_given:
        normalize, normalize_from = normalize_given, "--normalize"
    elif draft.normalize:
        normalize, normalize_from = draft.normalize, draft.normalize_from
    else:
        normalize = dict(IMAGENET)
        why = draft.normalize_from or "not in the model's files"
        normalize_from = f"ASSUMED ImageNet mean/std ({why}); --normalize to change"
    target = out if out is not None else config_dir / f"{name}.yaml"
    if target.exists() and not args.force:
        raise ExportError(f"{target} exists; pass --force to replace it, or --out another path")
    if args.mask:
        draft = Draft(**{**draft.__dict__, "model": {**draft.model, "mask": args.mask}})
    text = render(draft, name, labels, size, size_from, normalize, normalize_from, labels_from, command)
    from export.files import ensure_writable_dir, write_bytes_atomic

    ensure_writable_dir(target.parent, "--out")
    cfg = _check(text, target)
    write_bytes_atomic(target, text.encode())
    facts = [
        f"labels ({len(labels)}): {', '.join(labels)}  ({labels_from})",
        f"input: {size[0]}x{size[1]}  ({size_from})",
        f"normalize: {_flow(normalize)}  ({normalize_from})",
        "variants: xnnpack_fp32, xnnpack_int8, coreml_fp16 (contract rne-0.10)",
        f"bounds: {NOT_MEASURED}",
    ]
    return target, facts, cfg


def next_steps(target: Path, cfg: ModelConfig) -> str:
    out = f"artifacts/{cfg.name}"
    fp32 = cfg.artifact_name(cfg.variants[0])
    name = cfg.name
    return "\n".join(
        [
            "next:",
            f"  rne-export build --config {target} --weights random --out {out}   # a smoke build (every gate, random weights)",
            f"  rne-export build --config {target} --out {out}   # your trained weights (model.path, or --weights PATH)",
            f"  rne-export run --rne 0.10 {out}/{fp32} photo.jpg --mask mask.png",
            f"  rne-export bench --manifest {out}/manifest.json",
            f"  rne-export card --manifest {out}/manifest.json",
            f"  rne-export publish --manifest {out}/manifest.json --repo OWNER/{name} --tag v1.0.0   # dry run; --push",
        ]
    )


def run_new(args: NewArgs, argv: list[str]) -> int:
    command = "rne-export " + " ".join(argv)
    target, facts, cfg = new_config(args, command)
    print(f"wrote {target}")
    for line in facts:
        print(f"  {line}")
    print(next_steps(target, cfg))
    sys.stdout.flush()
    return 0


def command(args) -> int:
    """`rne-export new`: one flag per source names the model."""
    source = next(name for name in SOURCES.names() if getattr(args, name, None))
    fields = ("labels", "name", "size", "normalize", "mask", "kwargs", "weights", "out", "force")
    new = NewArgs(source, getattr(args, source), **{f: getattr(args, f) for f in fields})
    return run_new(new, sys.argv[1:] if args.argv is None else args.argv)
