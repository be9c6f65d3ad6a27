"""Source `smp`: segmentation-models-pytorch. `arch` (Unet, FPN, DeepLabV3Plus, ...), `encoder`
(resnet34, mobilenet_v2, tu-*, ...), `kwargs` passed to the architecture; the model is built with
`classes` = the labels (1 for a one-channel mask) and no pretrained encoder download.

`--weights default` loads `model.path`: a state dict (.pth, .safetensors) or SMP's save_pretrained
folder (config.json + model.safetensors); `--weights PATH` any of those; `random` a seeded init. The
input's H and W must be multiples of the encoder's output stride (SMP refuses other sizes at run time):
checked at config load from the architecture's settings, and again against the built encoder.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from export.errors import ExportError
from export.sources import (
    SOURCE_FIELDS,
    Draft,
    LoadedModel,
    NewRequest,
    Source,
    check_fields,
    file_identity,
    fit_state_dict,
    model_channels,
    read_state_dict,
    register,
    relative_to_config,
    written_path,
)

if TYPE_CHECKING:
    from torch import nn

    from export.config import ModelConfig

SOURCE_FIELDS["smp"] = ("arch", "encoder", "kwargs", "path")
# SMP's own defaults for the encoder's output stride where an architecture sets one (dilated encoders)
DILATED_DEFAULT_STRIDE = {"deeplabv3": 8, "deeplabv3plus": 16}
# keys SMP's constructors take that this source sets itself
OWN_KWARGS = ("encoder_name", "encoder_weights", "classes", "in_channels")


def expected_stride(arch: str, kwargs: dict) -> int:
    """The encoder's output stride as SMP computes it, without importing it (torch)."""
    stride = 2 ** int(kwargs.get("encoder_depth", 5))
    if arch.lower() in DILATED_DEFAULT_STRIDE:
        stride = min(stride, int(kwargs.get("encoder_output_stride", DILATED_DEFAULT_STRIDE[arch.lower()])))
    return stride


def check(cfg: ModelConfig, source: Path) -> None:
    from export.yaml_records import config_error

    check_fields(cfg, source, SOURCE_FIELDS["smp"], needs=("arch", "encoder"))
    for key in OWN_KWARGS:
        if key in cfg.model.kwargs:
            config_error(
                source, f"model.kwargs.{key}", "set by the tool (encoder, labels); give model.encoder / labels"
            )
    stride = expected_stride(cfg.model.arch or "", cfg.model.kwargs)
    sizes = [("input", cfg.input)] + [(f"variants[{i}].input", v.input) for i, v in enumerate(cfg.variants)]
    for key, inp in sizes:
        if inp is not None and (inp.height % stride or inp.width % stride):
            config_error(
                source,
                key,
                f"{inp.height}x{inp.width} is not a multiple of {cfg.model.arch} / {cfg.model.encoder}'s output "
                f"stride {stride}; use e.g. {_round(inp.height, stride)}x{_round(inp.width, stride)}",
            )


def _round(n: int, stride: int) -> int:
    return max(stride, round(n / stride) * stride)


def known_names(arch: str, encoder: str, where_arch: str, where_encoder: str) -> None:
    """The architecture and encoder SMP knows, or one error listing the valid names."""
    import segmentation_models_pytorch as smp

    if arch.lower() not in {k.lower() for k in smp.MODEL_ARCHITECTURES_MAPPING}:
        valid = ", ".join(
            type(c).__name__ if not isinstance(c, type) else c.__name__
            for c in smp.MODEL_ARCHITECTURES_MAPPING.values()
        )
        raise ExportError(f"{where_arch}: unknown segmentation-models-pytorch architecture {arch!r}; valid: {valid}")
    names = smp.encoders.get_encoder_names()
    if encoder not in names and not encoder.startswith("tu-"):
        raise ExportError(
            f"{where_encoder}: unknown segmentation-models-pytorch encoder {encoder!r}; valid: "
            f"{', '.join(names)}, or tu-<timm model>"
        )


def describe(req: NewRequest) -> Draft:
    """`new --smp ARCH:ENCODER`: the encoder's own preprocessing (SMP's ImageNet mean/std for it) and
    output stride; the labels come from --labels (SMP builds the head from their count)."""
    import segmentation_models_pytorch as smp

    arch, sep, encoder = req.value.partition(":")
    if not sep or not arch or not encoder:
        raise ExportError(f"--smp {req.value!r}: expected ARCH:ENCODER, e.g. --smp Unet:resnet34")
    known_names(arch, encoder, f"--smp {req.value}", f"--smp {req.value}")
    cls = {k.lower(): c for k, c in smp.MODEL_ARCHITECTURES_MAPPING.items()}[arch.lower()]
    arch = cls.__name__ if isinstance(cls, type) else type(cls).__name__  # as SMP spells it: Unet, DeepLabV3Plus
    for key in OWN_KWARGS:
        if key in req.kwargs:
            raise ExportError(f"--kwargs: {key} is set by the tool (--smp, --labels); leave it out")
    model: dict = {"source": "smp", "arch": arch, "encoder": encoder}
    if req.kwargs:
        model["kwargs"] = req.kwargs
    if req.weights:
        model["path"] = written_path(req.weights, req.config_dir, "--weights")
    normalize, normalize_from = _preprocessing(encoder)
    return Draft(
        name=f"{arch}_{encoder}".lower().replace("-", "_").replace(".", "_"),
        model=model,
        labels=None,
        labels_from="segmentation-models-pytorch builds the head from the class count; its files do not name them",
        stride=expected_stride(arch, req.kwargs),
        normalize=normalize,
        normalize_from=normalize_from,
    )


def _preprocessing(encoder: str) -> tuple[dict | None, str]:
    """The mean/std the encoder's ImageNet weights were trained with, where known offline: timm's
    pretrained config (tu-*), or SMP's Hub config.json when huggingface_hub's cache holds it (SMP's
    own get_preprocessing_params would download it)."""
    import segmentation_models_pytorch as smp

    settings: dict | None = None
    if encoder.startswith("tu-"):
        import timm

        if timm.models.is_model_pretrained(encoder[3:]):
            settings = timm.models.get_pretrained_cfg(encoder[3:]).__dict__
        where = f"timm's pretrained config for {encoder[3:]}"
    else:
        hub = smp.encoders.encoders[encoder]["pretrained_settings"].get("imagenet")
        where = (
            f"segmentation-models-pytorch's {hub['repo_id']}/config.json" if hub else f"{encoder}: no ImageNet weights"
        )
        if hub:
            from huggingface_hub import hf_hub_download
            from huggingface_hub.errors import LocalEntryNotFoundError

            try:
                path = hf_hub_download(hub["repo_id"], "config.json", revision=hub["revision"], local_files_only=True)
                settings = json.loads(Path(path).read_text())
            except (LocalEntryNotFoundError, OSError, ValueError):
                where += " is not in huggingface_hub's cache"
    if not settings or "mean" not in settings or "std" not in settings:
        return None, where
    mean, std = [round(float(m), 6) for m in settings["mean"]], [round(float(s), 6) for s in settings["std"]]
    return {"mean": mean, "std": std}, where


def build(cfg: ModelConfig) -> nn.Module:
    """The architecture, untrained (no encoder download), refused by name when SMP does not know it."""
    import segmentation_models_pytorch as smp

    arch, encoder = cfg.model.arch or "", cfg.model.encoder or ""
    known_names(arch, encoder, f"{cfg.source}: model.arch", f"{cfg.source}: model.encoder")
    try:
        model = smp.create_model(
            arch, encoder_name=encoder, encoder_weights=None, classes=model_channels(cfg), **cfg.model.kwargs
        )
    except (TypeError, ValueError, KeyError, RuntimeError) as e:
        raise ExportError(
            f"{cfg.source}: model: segmentation-models-pytorch refuses {arch}/{encoder} with "
            f"kwargs {cfg.model.kwargs}: {str(e).splitlines()[0][:300]}"
        ) from None
    stride = int(getattr(model.encoder, "output_stride", 1))
    for v in cfg.variants:
        if v.input.height % stride or v.input.width % stride:
            raise ExportError(
                f"{cfg.source}: {v.name}: input {v.input.height}x{v.input.width} is not a multiple of the encoder's "
                f"output stride {stride}"
            )
    return model


def _weights_path(cfg: ModelConfig, weights: str) -> Path:
    from export.files import existing_path

    if weights == "default":
        if not cfg.model.path:
            raise ExportError(
                f"model {cfg.name!r} ({cfg.source}) names no trained weights: set model.path to a state dict or "
                "save_pretrained folder, or pass --weights PATH (or --weights random for a smoke run)"
            )
        return existing_path(str(relative_to_config(cfg.source, cfg.model.path)), f"model.path in {cfg.source}")
    return existing_path(
        weights, "--weights", "valid values: default, random, or a state dict / save_pretrained folder"
    )


def identity(cfg: ModelConfig, weights: str) -> tuple[str, str]:
    from export.store.uptodate import random_identity

    if weights == "random":
        return "random", random_identity(cfg)
    return ("default" if weights == "default" else "path"), file_identity(_weights_path(cfg, weights))


def load(cfg: ModelConfig, weights: str) -> LoadedModel:
    import torch

    kind, ident = identity(cfg, weights)
    if kind == "random":
        torch.manual_seed(cfg.model.random_seed)
        return LoadedModel(build(cfg).eval(), ident, kind)
    path = _weights_path(cfg, weights)
    if path.is_dir() and (path / "config.json").is_file():
        _check_saved_config(cfg, path)
    model = build(cfg)
    fit_state_dict(
        model, read_state_dict(path, f"weights {path}"), f"weights {path}", f"{cfg.model.arch}/{cfg.model.encoder}"
    )
    return LoadedModel(model.eval(), ident, kind)


def _check_saved_config(cfg: ModelConfig, folder: Path) -> None:
    """SMP's save_pretrained config.json against the config: the architecture, encoder and classes."""
    saved = json.loads((folder / "config.json").read_text())
    for key, want in (
        ("_model_class", cfg.model.arch),
        ("encoder_name", cfg.model.encoder),
        ("classes", model_channels(cfg)),
    ):
        got = saved.get(key)
        if got is not None and str(got).lower() != str(want).lower():
            raise ExportError(
                f"weights folder {folder}: its config.json has {key} = {got!r}, the config ({cfg.source}) {want!r}; "
                "make them agree"
            )


register(Source("smp", check, identity, load, describe, "ARCH:ENCODER, e.g. Unet:resnet34 (labels from --labels)"))
