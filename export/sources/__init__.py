"""Model sources: where a model comes from and how its weights get in. One file per source, each
registering itself in SOURCES (``model.source`` in a config picks one; a miss lists the valid names):

- ``torchvision``: torchvision's segmentation builders (and the tiny test net), export/sources/torchvision.py
- ``smp``: segmentation-models-pytorch architectures and encoders, export/sources/smp.py
- ``transformers``: any AutoModelForSemanticSegmentation folder or cached Hub id, export/sources/huggingface.py
- ``python``: the maintainer's own builder function, export/sources/python.py

A source answers three questions: is the config's model section sound (`check`, at config load, no
torch), what does `--weights` resolve to (`identity`, before any work), and the eval-mode module with
its weights (`load`). What every source shares is below: state dicts read from .pth, .safetensors or
a save_pretrained folder, fitted strictly with the first mismatch named, and weights that hold NaN or
Inf refused at load, naming the tensor. Beside them: `models` (the builders a config names, the
tiny test net included) and `weights` (reading a checkpoint, torchvision's cached weights). This is
the build's `load` stage (export/convert/stages.py). No torch import at module level.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from export.errors import ExportError
from export.files import sha256_file
from export.registry import Registry

if TYPE_CHECKING:
    from torch import nn

    from export.config import ModelConfig


@dataclass(frozen=True)
class LoadedModel:
    module: nn.Module  # eval mode, aux head removed
    identity: str  # manifest: enum name, file sha256, or random(seed)
    kind: str  # default | path | random


@dataclass(frozen=True)
class NewRequest:
    """`rne-export new --<source> VALUE`: the value and what the command line adds."""

    value: str  # e.g. "Unet:resnet34", a folder, "model.py:build", "deeplabv3_resnet50"
    config_dir: Path  # where the config will live: paths in it are written relative to this folder
    labels: tuple[str, ...] | None  # --labels; None: not given
    size: tuple[int, int] | None  # --size; None: not given
    kwargs: dict[str, Any]  # --kwargs
    weights: str | None  # --weights: the trained weights `--weights default` loads (model.path)


@dataclass(frozen=True)
class Draft:
    """What a model's own files say, for `rne-export new`; each fact with where it came from."""

    name: str
    model: dict[str, Any]  # the config's model section, num_classes left to the labels
    labels: tuple[str, ...] | None  # None: the files do not name them (then `labels_from` says why)
    labels_from: str
    size: tuple[int, int] | None = None
    size_from: str = ""
    stride: int = 1  # H and W must be multiples of it
    normalize: dict[str, Any] | None = None  # mean/std on pixel/255, or alpha/beta; None: not known
    normalize_from: str = ""
    channels: int | None = None  # what the model outputs, where the source ran it (python)
    # ops the XNNPACK variants may leave outside the delegate, known for this model, and from where
    allow_non_delegated: tuple[str, ...] = ()
    allow_from: str = ""


@dataclass(frozen=True)
class Source:
    name: str
    check: Callable[[ModelConfig, Path], None]  # config load: the model section (no torch)
    identity: Callable[[ModelConfig, str], tuple[str, str]]  # --weights -> (kind, identity), no model built
    load: Callable[[ModelConfig, str], LoadedModel]  # --weights -> the model, eval mode, finite weights
    describe: Callable[[NewRequest], Draft]  # `rne-export new --<name> VALUE`: what the model's files say
    new_help: str  # the `new` flag's help: what VALUE is


SOURCES: Registry[Source] = Registry("model source")


def register(source: Source) -> Source:
    return SOURCES.register(source.name, source)


def weights_identity(cfg: ModelConfig, weights: str) -> tuple[str, str]:
    """(kind, identity) of `--weights` without building the model: what the manifest and the
    up-to-date check record. Fails as `load_model` does, before any work."""
    return SOURCES.get(cfg.model.source, where=f"{cfg.source}: model.source").identity(cfg, weights)


def load_model(cfg: ModelConfig, weights: str) -> LoadedModel:
    """`--weights` (default | random | PATH) into an eval-mode model whose weights are all finite."""
    loaded = SOURCES.get(cfg.model.source, where=f"{cfg.source}: model.source").load(cfg, weights)
    check_finite(loaded.module, f"weights {loaded.identity}")
    return loaded


# --- shared by the sources -----------------------------------------------------------------------


def file_identity(path: Path) -> str:
    if path.is_dir():
        inside = weights_file_in(path)
        return f"folder {path.name} ({inside.name} sha256 {sha256_file(inside)})"
    return f"file {path.name} (sha256 {sha256_file(path)})"


WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.pth")


def weights_file_in(folder: Path) -> Path:
    for name in WEIGHT_FILES:
        if (folder / name).is_file():
            return folder / name
    raise ExportError(
        f"weights folder {folder}: no {' / '.join(WEIGHT_FILES)} in it; save the model with save_pretrained(FOLDER) "
        "or pass a state-dict file"
    )


def read_state_dict(path: Path, what: str) -> dict[str, Any]:
    """A state dict from a .safetensors file, a save_pretrained folder or a torch.save file
    (weights_only=True)."""
    from export.sources.weights import torch_load

    if path.is_dir():
        path = weights_file_in(path)
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as e:
            raise ExportError(f"{what}: not a readable .safetensors file ({str(e).splitlines()[0][:200]})") from None
    state = torch_load(path, what)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]  # Lightning-style checkpoints keep it one level down
    return state  # type: ignore[return-value]


def fit_state_dict(model: nn.Module, state: object, what: str, into: str) -> None:
    """Load `state` strictly into `model`; one line naming the first missing, unexpected or
    wrongly shaped tensor."""
    import torch

    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ExportError(f"{what} is not a state dict of tensors; save one with torch.save(model.state_dict(), PATH)")
    want = model.state_dict()
    missing = [k for k in want if k not in state]
    extra = [k for k in state if k not in want]
    shapes = [k for k in want if k in state and tuple(state[k].shape) != tuple(want[k].shape)]
    if missing or extra or shapes:
        parts = []
        if shapes:
            k = shapes[0]
            parts.append(f"{k} is {tuple(state[k].shape)} in the file, {tuple(want[k].shape)} in the model")
        if missing:
            parts.append(f"missing {missing[0]}" + (f" (+{len(missing) - 1} more)" if len(missing) > 1 else ""))
        if extra:
            parts.append(f"unexpected {extra[0]}" + (f" (+{len(extra) - 1} more)" if len(extra) > 1 else ""))
        raise ExportError(f"{what} does not fit {into}: {'; '.join(parts)}")
    model.load_state_dict(state, strict=True)


def check_finite(model: nn.Module, what: str) -> None:
    """Refuse weights holding NaN or Inf at load (lowered, they would fail only at the parity gate)."""
    import torch

    for name, t in model.state_dict().items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            bad = int((~torch.isfinite(t)).sum())
            raise ExportError(
                f"{what}: tensor {name} holds {bad} NaN/Inf value(s); the checkpoint is broken (a diverged run?): "
                "export an earlier checkpoint"
            )


def model_channels(cfg: ModelConfig) -> int:
    """The channels the model itself outputs: 1 for a one-channel mask (model.mask), else one per label."""
    return 1 if cfg.model.mask else cfg.model.num_classes


def written_path(value: str, config_dir: Path, what: str) -> str:
    """A path given on `new`'s command line (relative to the working folder) as the config will hold
    it: relative to the config's folder, so the config works from any working folder."""
    import os

    p = Path(value).expanduser()
    if not p.exists():
        raise ExportError(f"{what} {value}: no such file or folder (relative to the working folder {Path.cwd()})")
    return p.as_posix() if p.is_absolute() else Path(os.path.relpath(p.resolve(), config_dir.resolve())).as_posix()


def relative_to_config(cfg_source: Path, value: str) -> Path:
    """A path a config gives: relative to the config file's folder, else to the working folder."""
    p = Path(value).expanduser()
    if p.is_absolute():
        return p
    beside = cfg_source.parent / p
    return beside if beside.exists() or not p.exists() else p


def check_fields(cfg: ModelConfig, source: Path, uses: tuple[str, ...], needs: tuple[str, ...] = ()) -> None:
    """The model keys this source reads are the only ones set, and the ones it needs are there."""
    from export.config import ModelSpec
    from export.yaml_records import config_error

    defaults = ModelSpec(builder=None)
    for key in needs:
        if getattr(cfg.model, key) in (None, "", {}):
            config_error(source, f"model.{key}", f"required for source {cfg.model.source}")
    for key in ("builder", "weights", "arch", "encoder", "path", "kwargs", "random_residual_gain"):
        if key not in uses and getattr(cfg.model, key) != getattr(defaults, key):
            users = ", ".join(s for s in SOURCES.names() if key in SOURCE_FIELDS.get(s, ()))
            config_error(source, f"model.{key}", f"not read by source {cfg.model.source} (only by: {users})")


SOURCE_FIELDS: dict[str, tuple[str, ...]] = {}  # source -> the model keys it reads (its file fills it in)


# each file registers itself on import
from export.sources import huggingface, python, smp, torchvision  # noqa: E402, F401
