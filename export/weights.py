"""The torchvision source's weights (export/sources/torchvision.py) and what every source shares to
read a checkpoint (`torch_load`). `load_model` and `weights_identity` dispatch on the config's source.

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

from .config import ModelConfig
from .errors import ExportError
from .files import existing_file, sha256_file
from .models import MODELS, small_residual_branches
from .sources import LoadedModel, file_identity, load_model, weights_identity
from .uptodate import random_identity

__all__ = ["LoadedModel", "load_model", "weights_identity", "torch_load", "default_checkpoint", "cache_path_for"]

AUX_PREFIX = "aux_classifier."


def _drop_aux(model: nn.Module) -> nn.Module:
    # torchvision's forward skips the aux branch when aux_classifier is None, and its weights
    # then are no longer part of the module, so they are not exported or shipped.
    if getattr(model, "aux_classifier", None) is not None:
        setattr(model, "aux_classifier", None)  # noqa: B010 (a Module attribute mypy types as Tensor | Module)
    return model


def _load_state_dict(model_cfg: ModelConfig, state: object, what: str) -> nn.Module:
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
    return _drop_aux(model).eval()


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


def _default_checkpoint(cfg: ModelConfig) -> tuple[Path, str]:
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
    return _default_checkpoint(cfg)[0]


def _default(cfg: ModelConfig) -> LoadedModel:
    target, identity = _default_checkpoint(cfg)
    model = _load_state_dict(cfg, torch_load(target, f"cached weights {target}"), f"cached weights {target}")
    return LoadedModel(model, identity, "default")


def _reason(e: Exception) -> str:
    return str(getattr(e, "reason", None) or e).splitlines()[0][:200]


def _check_labels(cfg: ModelConfig, categories) -> None:
    if not categories:
        return
    norm = ["BACKGROUND" if c.strip("_").lower() == "background" else c.upper().replace(" ", "") for c in categories]
    if list(cfg.labels) != norm:
        raise ExportError(f"{cfg.source}: labels do not match the weights' categories {list(categories)}")


def torchvision_identity(cfg: ModelConfig, weights: str) -> tuple[str, str]:
    """(kind, identity) of `--weights` without building the model: what the manifest and the
    up-to-date check record. Fails like torchvision_load does (before any work)."""
    MODELS.get(cfg.model.builder or "", where=f"{cfg.source}: model.builder")
    if weights == "default":
        return "default", _default_checkpoint(cfg)[1]
    if weights == "random":
        return "random", random_identity(cfg)
    path = existing_file(weights, "--weights", "valid values: default, random, or a checkpoint PATH")
    return "path", file_identity(path)


def torchvision_load(cfg: ModelConfig, weights: str) -> LoadedModel:
    """Resolve `--weights` (default | random | PATH) into an eval-mode model without aux head."""
    MODELS.get(cfg.model.builder or "", where=f"{cfg.source}: model.builder")
    if weights == "default":
        return _default(cfg)
    if weights == "random":
        torch.manual_seed(cfg.model.random_seed)
        model = MODELS.get(cfg.model.builder or "").build(cfg.model.num_classes, False)
        if cfg.model.random_residual_gain is not None:
            small_residual_branches(model, cfg.model.random_residual_gain)
        return LoadedModel(_drop_aux(model).eval(), random_identity(cfg), "random")
    path = existing_file(weights, "--weights", "valid values: default, random, or a checkpoint PATH")
    what = f"checkpoint {path}"
    model = _load_state_dict(cfg, torch_load(path, what), what)
    return LoadedModel(model, file_identity(path), "path")
