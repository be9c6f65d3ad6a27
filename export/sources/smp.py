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

from ..errors import ExportError
from . import (
    SOURCE_FIELDS,
    LoadedModel,
    Source,
    check_fields,
    file_identity,
    fit_state_dict,
    model_channels,
    read_state_dict,
    register,
    relative_to_config,
)

if TYPE_CHECKING:
    from torch import nn

    from ..config import ModelConfig

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
    from ..yaml_records import config_error

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


def build(cfg: ModelConfig) -> nn.Module:
    """The architecture, untrained (no encoder download), refused by name when SMP does not know it."""
    import segmentation_models_pytorch as smp

    archs = {k.lower(): k for k in smp.MODEL_ARCHITECTURES_MAPPING}
    arch, encoder = cfg.model.arch or "", cfg.model.encoder or ""
    if arch.lower() not in archs:
        valid = ", ".join(
            type(c).__name__ if not isinstance(c, type) else c.__name__
            for c in smp.MODEL_ARCHITECTURES_MAPPING.values()
        )
        raise ExportError(
            f"{cfg.source}: model.arch: unknown segmentation-models-pytorch architecture {arch!r}; valid: {valid}"
        )
    names = smp.encoders.get_encoder_names()
    if encoder not in names and not encoder.startswith("tu-"):
        raise ExportError(
            f"{cfg.source}: model.encoder: unknown segmentation-models-pytorch encoder {encoder!r}; valid: "
            f"{', '.join(names)}, or tu-<timm model>"
        )
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
    from ..files import existing_path

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
    from ..uptodate import random_identity

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


register(Source("smp", check, identity, load))
