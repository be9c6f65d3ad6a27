"""Checkpoints: what every source shares to read one (`torch_load`), and torchvision's own weights
(its builders' state dicts and the cached enum checkpoints) for export/sources/torchvision.py.

`--weights` takes:
- ``default``: the config's torchvision weights enum member, through torchvision's own cache
  (``$TORCH_HOME/hub/checkpoints``). When the file is neither cached nor downloadable this fails
  before any other work, naming the exact path to place the checkpoint at.
- ``random``: seeded init for tests and smoke runs, recorded as ``random(seed=N)``; a config may
  scale its ResNet residual branches down (``model.random_residual_gain``, where init overflows
  fp16), recorded as ``random(seed=N, residual_gain=G)``.
- a PATH: a state dict loaded with ``weights_only=True`` and strict key checks. torchvision's own
  checkpoint format (aux-head keys included) loads.

There is no fallback from one to another: a failure is an error.
"""

from __future__ import annotations

import os
import pickle
import re
import urllib.error
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import nn

from export.config import ModelConfig
from export.errors import ExportError
from export.files import sha256_file
from export.sources.models import MODELS

__all__ = ["torch_load", "load_state_dict", "drop_aux", "default_checkpoint", "cache_path_for"]

AUX_PREFIX = "aux_classifier."


def drop_aux(model: nn.Module) -> nn.Module:
    # torchvision's forward skips the aux branch when aux_classifier is None, and its weights
    # then are no longer part of the module, so they are not exported or shipped.
    if getattr(model, "aux_classifier", None) is not None:
        setattr(model, "aux_classifier", None)  # noqa: B010 (a Module attribute mypy types as Tensor | Module)
    return model


def load_state_dict(model_cfg: ModelConfig, state: object, what: str) -> nn.Module:
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ExportError(f"{what} is not a state dict of tensors; save one with torch.save(model.state_dict(), PATH)")
    builder = MODELS.get(model_cfg.model.builder or "")
    has_aux = any(k.startswith(AUX_PREFIX) for k in state)
    model = builder.build(model_cfg.model.num_classes, has_aux)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).splitlines()
        detail = " ".join(line.strip() for line in first[:3])
        raise ExportError(
            f"{what} does not fit model builder {model_cfg.model.builder!r} "
            f"(num_classes={model_cfg.model.num_classes}): {detail[:400]}"
        ) from None
    return drop_aux(model).eval()


ANSI = re.compile(r"\x1b\[[0-9;]*m")  # PyTorch colours its weights_only advice for terminals


def torch_load(path: Path, what: str) -> object:
    if path.stat().st_size == 0:
        raise ExportError(
            f"{what}: empty (0 bytes); not a checkpoint — save one with torch.save(model.state_dict(), PATH)"
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ExportError(f"{what}: file not found; pass an existing checkpoint, or --weights default|random") from None
    except pickle.UnpicklingError as e:
        if "Unsupported global" not in str(e):  # not a pickle at all (text, another format)
            raise ExportError(
                f"{what}: not a PyTorch checkpoint torch.load(weights_only=True) can read; pass a tensor-only "
                "state dict saved with torch.save"
            ) from None
        # a pickle of Python objects, not of tensors: refused by weights_only
        first = ANSI.sub("", str(e)).split("WeightsUnpickler error:")[-1].strip().splitlines()[0]
        first = first.split(" was not an allowed global")[0][:200]
        raise ExportError(
            f"{what}: holds Python objects that weights_only=True refuses ({first}); re-save it as a tensor-only "
            "state dict: torch.save(model.state_dict(), PATH) where it was trained"
        ) from None
    except Exception as e:  # torch raises many types for corrupt files (EOFError, IndexError, ...): one meaning
        raise ExportError(
            f"{what}: not a PyTorch checkpoint torch.load(weights_only=True) can read (truncated, or another "
            f"format: {type(e).__name__}); pass a tensor-only state dict saved with torch.save"
        ) from None


def cache_path_for(url: str) -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)


def checkpoint_and_identity(cfg: ModelConfig) -> tuple[Path, str]:
    """torchvision's cached checkpoint for the config's weights (downloaded into its cache when
    missing and reachable) and its identity; fails naming the path to place it at when offline."""
    builder = MODELS.get(cfg.model.builder or "", where=f"{cfg.source}: model.builder")
    if builder.weights_enum is None or not cfg.model.weights:
        raise ExportError(
            f"model {cfg.name!r} has no pretrained weights (builder {cfg.model.builder!r}, "
            f"model.weights in {cfg.source}); use --weights random or --weights PATH"
        )
    enum = builder.weights_enum()
    try:
        weights = enum[cfg.model.weights]
    except KeyError:
        raise ExportError(
            f"{cfg.source}: model.weights: unknown {enum.__name__} member {cfg.model.weights!r}; "
            f"valid: {', '.join(enum.__members__)}"
        ) from None
    _check_labels(cfg, weights.meta.get("categories"))
    target = cache_path_for(weights.url)
    if not target.exists():
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            # torchvision's own download into its own cache; the hash prefix in the name is checked
            torch.hub.load_state_dict_from_url(weights.url, progress=False, check_hash=True, map_location="cpu")
        except (urllib.error.URLError, OSError, RuntimeError) as e:
            raise ExportError(
                f"cannot download {enum.__name__}.{weights.name} from {weights.url} ({_reason(e)}). "
                f"Offline? Place the checkpoint file at {target} (or set TORCH_HOME), "
                f"or pass --weights PATH to a local checkpoint, or --weights random for a smoke run."
            ) from None
    return target, f"{enum.__name__}.{weights.name} (sha256 {sha256_file(target)})"


def default_checkpoint(cfg: ModelConfig) -> Path:
    """Where torchvision keeps the config's default checkpoint (present: weights_identity checked)."""
    return checkpoint_and_identity(cfg)[0]


def _reason(e: Exception) -> str:
    return str(getattr(e, "reason", None) or e).splitlines()[0][:200]


def _check_labels(cfg: ModelConfig, categories) -> None:
    if not categories:
        return
    norm = ["BACKGROUND" if c.strip("_").lower() == "background" else c.upper().replace(" ", "") for c in categories]
    if list(cfg.labels) != norm:
        raise ExportError(f"{cfg.source}: labels do not match the weights' categories {list(categories)}")
