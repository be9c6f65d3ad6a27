"""Source `transformers`: any Hugging Face AutoModelForSemanticSegmentation (SegFormer, BEiT, DPT,
MobileViT, UperNet, ...). `model.path` is a save_pretrained folder (config.json, model.safetensors,
preprocessor_config.json) or a Hub id found in huggingface_hub's cache; nothing is downloaded.

The folder's own files must agree with the config (checked at config load, no torch): labels with
config.json's id2label, the input size with preprocessor_config.json's size, the normalization with
its rescale and image_mean / image_std (`rne-export new` writes a config from them). Logits that come
out smaller than the input (SegFormer: 1/4) are upsampled in the graph (export/convert/wrap.py). Attention
runs in transformers' eager form: the same arithmetic as SDPA without its mask ops, which XNNPACK
does not take.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from export.errors import ExportError
from export.files import sha256_file
from export.sources import (
    SOURCE_FIELDS,
    Draft,
    LoadedModel,
    NewRequest,
    Source,
    check_fields,
    file_identity,
    fit_state_dict,
    read_state_dict,
    register,
    relative_to_config,
    weights_file_in,
    written_path,
)

if TYPE_CHECKING:
    from export.config import ModelConfig

SOURCE_FIELDS["transformers"] = ("path", "kwargs")
ATTENTION = "eager"  # see the module doc


def folder(cfg: ModelConfig, source: Path | None = None) -> Path:
    """model.path as a local folder: itself, or the Hub id's snapshot in huggingface_hub's cache."""
    value = cfg.model.path or ""
    return resolve(value, relative_to_config(source or cfg.source, value), f"model.path in {source or cfg.source}")


def resolve(value: str, local: Path, what: str) -> Path:
    """`local` when it is a folder, else `value` as a Hub id in huggingface_hub's cache."""
    if local.is_dir():
        return local
    if local.exists() or value.startswith((".", "/", "~")) or value.count("/") > 1:
        raise ExportError(f"{what}: {value}: not a save_pretrained folder")
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(value, local_files_only=True))
    except (LocalEntryNotFoundError, ValueError, OSError):
        raise ExportError(
            f"{what}: Hugging Face model {value!r} is not in huggingface_hub's cache "
            f"({constants.HF_HUB_CACHE}) and nothing is downloaded here: where online, run `hf download {value}` "
            f"(then copy that cache folder here or set HF_HUB_CACHE), or save_pretrained the model into a folder "
            f"and set model.path to it"
        ) from None


def _json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ExportError(f"{path}: cannot read it as JSON ({e})") from None
    if not isinstance(data, dict):
        raise ExportError(f"{path}: expected a JSON object")
    return data


def labels_of(model_config: dict[str, Any]) -> list[str]:
    id2label = model_config.get("id2label") or {}
    return [str(id2label[k]) for k in sorted(id2label, key=int)]


def feed_of(pre: dict[str, Any]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """preprocessor_config.json's pixel·alpha + beta per RGB channel (pixels 0..255)."""
    scale = float(pre.get("rescale_factor", 1 / 255)) if pre.get("do_rescale", True) else 1.0
    if not pre.get("do_normalize", True):
        return (scale,) * 3, (0.0,) * 3
    mean = pre.get("image_mean", [0.5, 0.5, 0.5])
    std = pre.get("image_std", [0.5, 0.5, 0.5])
    mean = [mean] * 3 if isinstance(mean, (int, float)) else mean
    std = [std] * 3 if isinstance(std, (int, float)) else std
    return tuple(scale / s for s in std), tuple(-m / s for m, s in zip(mean, std, strict=True))


def size_of(pre: dict[str, Any]) -> tuple[int, int] | None:
    size = pre.get("size")
    if isinstance(size, dict) and "height" in size and "width" in size:
        return int(size["height"]), int(size["width"])
    return None


def check(cfg: ModelConfig, source: Path) -> None:
    """The folder's files against the config, where the folder is here (a Hub id not yet cached is
    refused when the build resolves its weights, naming what to place where)."""
    from export.config import CONTRACTS
    from export.yaml_records import config_error

    check_fields(cfg, source, SOURCE_FIELDS["transformers"], needs=("path",))
    try:
        where = folder(cfg, source)
    except ExportError:
        return
    if not (where / "config.json").is_file():
        config_error(source, "model.path", f"{where}: no config.json; save the model there with save_pretrained")
    mc = _json(where / "config.json")
    theirs = labels_of(mc)
    if theirs and len(theirs) != cfg.model.num_classes:
        config_error(
            source, "labels", f"{len(cfg.labels)} labels, but {where}/config.json has {len(theirs)} (id2label)"
        )
    if theirs and list(cfg.labels) != theirs:
        config_error(source, "labels", f"differ from {where}/config.json's id2label {theirs}")
    pre_path = where / "preprocessor_config.json"
    if not pre_path.is_file():
        return
    pre = _json(pre_path)
    size = size_of(pre)
    if size and size != (cfg.input.height, cfg.input.width):
        config_error(
            source,
            "input",
            f"{cfg.input.height}x{cfg.input.width}, but {pre_path} has size {size[0]}x{size[1]}; make them agree "
            "(a smaller export size goes in a variant's input)",
        )
    contract = CONTRACTS.get(cfg.contract)
    mean, std = cfg.normalize.mean_std() if cfg.normalize else (contract.runtime_mean, contract.runtime_std)
    if mean is None or std is None:  # mean/std inside the graph (rne-0.5): ImageNet's
        mean, std = CONTRACTS.get("rne-0.9").runtime_mean, CONTRACTS.get("rne-0.9").runtime_std
    assert mean is not None and std is not None
    ours = (tuple(1 / (255 * s) for s in std), tuple(-m / s for m, s in zip(mean, std, strict=True)))
    theirs_feed = feed_of(pre)
    if not all(
        math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-7)
        for x, y in zip(ours, theirs_feed, strict=True)
        for a, b in zip(x, y, strict=True)
    ):
        config_error(
            source,
            "normalize",
            f"the config feeds pixel·alpha + beta = {_fmt(ours)}, but {pre_path} (rescale, image_mean/std) says "
            f"{_fmt(theirs_feed)}; set normalize to the folder's mean/std (contract rne-0.10) or fix the folder",
        )


def _fmt(feed: tuple[tuple[float, ...], tuple[float, ...]]) -> str:
    return (
        "alpha [" + ", ".join(f"{a:.6g}" for a in feed[0]) + "], beta [" + ", ".join(f"{b:.6g}" for b in feed[1]) + "]"
    )


def identity(cfg: ModelConfig, weights: str) -> tuple[str, str]:
    from export.files import existing_path
    from export.store.uptodate import random_identity

    where = folder(cfg)
    if weights == "random":
        return (
            "random",
            f"{random_identity(cfg)} of {where.name}/config.json (sha256 {sha256_file(where / 'config.json')})",
        )
    if weights == "default":
        return "default", file_identity(where)
    return "path", file_identity(
        existing_path(weights, "--weights", "valid values: default, random, or a state dict / folder")
    )


def _auto_class(where: Path):
    from transformers import AutoConfig, AutoModelForSemanticSegmentation
    from transformers.models.auto.modeling_auto import MODEL_FOR_SEMANTIC_SEGMENTATION_MAPPING_NAMES as SEMANTIC

    config = AutoConfig.from_pretrained(where, attn_implementation=ATTENTION)
    if config.model_type not in SEMANTIC:
        raise ExportError(
            f"{where}: model_type {config.model_type!r} is not a semantic-segmentation model (per-pixel class scores); "
            f"instance and panoptic heads (Mask2Former, MaskFormer, OneFormer, DETR) output masks per query, which "
            f"React Native ExecuTorch's segmenter cannot take. Semantic models: {', '.join(SEMANTIC)}"
        )
    return config, AutoModelForSemanticSegmentation


def load(cfg: ModelConfig, weights: str) -> LoadedModel:
    import torch

    kind, ident = identity(cfg, weights)
    where = folder(cfg)
    config, auto = _auto_class(where)
    if config.num_labels != cfg.model.num_classes:
        raise ExportError(
            f"{where}/config.json: {config.num_labels} labels, the config ({cfg.source}) {cfg.model.num_classes}"
        )
    if kind == "random":
        torch.manual_seed(cfg.model.random_seed)
        model = auto.from_config(config, attn_implementation=ATTENTION, **cfg.model.kwargs)
    elif kind == "default":
        weights_file_in(where)  # one clear error when the folder has a config and no weights
        model, info = auto.from_pretrained(where, config=config, output_loading_info=True, **cfg.model.kwargs)
        problems = {k: v for k, v in info.items() if v and k in ("missing_keys", "unexpected_keys", "mismatched_keys")}
        if problems:
            key, items = next(iter(problems.items()))
            first = sorted(items)[0] if not isinstance(items, list) else items[0]
            raise ExportError(
                f"weights in {where} do not fit {type(model).__name__}: {key.replace('_', ' ')}: {first}"
                + (f" (+{len(items) - 1} more)" if len(items) > 1 else "")
                + "; transformers would initialise those at random: re-save the trained model with save_pretrained"
            )
    else:
        model = auto.from_config(config, attn_implementation=ATTENTION, **cfg.model.kwargs)
        path = Path(weights)
        fit_state_dict(model, read_state_dict(path, f"weights {path}"), f"weights {path}", type(model).__name__)
    return LoadedModel(model.float().eval(), ident, kind)


def describe(req: NewRequest) -> Draft:
    """`new --transformers DIR_OR_ID`: labels from config.json's id2label, size and normalization from
    preprocessor_config.json (its rescale, image_mean and image_std)."""
    if req.weights:
        raise ExportError(
            "--weights: a transformers model's weights are its folder's (save_pretrained); pass the folder"
        )
    local = Path(req.value).expanduser()
    where = resolve(req.value, local, "--transformers")
    if not (where / "config.json").is_file():
        raise ExportError(
            f"--transformers {req.value}: no config.json in {where}; save the model there with save_pretrained"
        )
    model: dict = {"source": "transformers"}
    model["path"] = written_path(req.value, req.config_dir, "--transformers") if local.is_dir() else req.value
    if req.kwargs:
        model["kwargs"] = req.kwargs
    labels = tuple(labels_of(_json(where / "config.json"))) or None
    pre_path = where / "preprocessor_config.json"
    size, normalize, normalize_from = None, None, f"{where} has no preprocessor_config.json"
    if pre_path.is_file():
        pre = _json(pre_path)
        size = size_of(pre)
        alpha, beta = feed_of(pre)
        normalize = {"alpha": [round(a, 9) for a in alpha], "beta": [round(b, 9) for b in beta]}
        if pre.get("do_normalize", True) and math.isclose(float(pre.get("rescale_factor", 1 / 255)), 1 / 255):
            mean, std = pre.get("image_mean", [0.5] * 3), pre.get("image_std", [0.5] * 3)
            normalize = {"mean": mean, "std": std}
        normalize_from = f"{pre_path.name} (rescale, image_mean, image_std)"
    return Draft(
        name=where.name if local.is_dir() else req.value.rsplit("/", 1)[-1],
        model=model,
        labels=labels,
        labels_from=f"{where.name}/config.json's id2label" if labels else f"{where}/config.json has no id2label",
        size=size,
        size_from=f"{pre_path.name}'s size" if size else "",
        normalize=normalize,
        normalize_from=normalize_from,
    )


register(
    Source(
        "transformers",
        check,
        identity,
        load,
        describe,
        "a save_pretrained folder or a Hub id in huggingface_hub's cache",
    )
)
