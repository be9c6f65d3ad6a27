"""Source `torchvision`: torchvision's segmentation builders by name (model.builder), and the tiny
test net; `--weights default` is the config's weights enum member (model.weights) from torchvision's
cache. Checkpoints are read by export/sources/weights.py."""

from __future__ import annotations

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
    register,
)

if TYPE_CHECKING:
    from export.config import ModelConfig

SOURCE_FIELDS["torchvision"] = ("builder", "weights", "random_residual_gain")


def check(cfg: ModelConfig, source: Path) -> None:
    check_fields(cfg, source, SOURCE_FIELDS["torchvision"], needs=("builder",))


def identity(cfg: ModelConfig, weights: str) -> tuple[str, str]:
    """(kind, identity) of `--weights` without building the model: what the manifest and the
    up-to-date check record. Fails like `load` does (before any work)."""
    from export.files import existing_file
    from export.sources.models import MODELS
    from export.sources.weights import checkpoint_and_identity
    from export.store.uptodate import random_identity

    MODELS.get(cfg.model.builder or "", where=f"{cfg.source}: model.builder")
    if weights == "default":
        return "default", checkpoint_and_identity(cfg)[1]
    if weights == "random":
        return "random", random_identity(cfg)
    path = existing_file(weights, "--weights", "valid values: default, random, or a checkpoint PATH")
    return "path", file_identity(path)


def load(cfg: ModelConfig, weights: str) -> LoadedModel:
    """Resolve `--weights` (default | random | PATH) into an eval-mode model without aux head."""
    import torch

    from export.files import existing_file
    from export.sources.models import MODELS, small_residual_branches
    from export.sources.weights import checkpoint_and_identity, drop_aux, load_state_dict, torch_load
    from export.store.uptodate import random_identity

    MODELS.get(cfg.model.builder or "", where=f"{cfg.source}: model.builder")
    if weights == "default":
        target, ident = checkpoint_and_identity(cfg)
        what = f"cached weights {target}"
        return LoadedModel(load_state_dict(cfg, torch_load(target, what), what), ident, "default")
    if weights == "random":
        torch.manual_seed(cfg.model.random_seed)
        model = MODELS.get(cfg.model.builder or "").build(cfg.model.num_classes, False)
        if cfg.model.random_residual_gain is not None:
            small_residual_branches(model, cfg.model.random_residual_gain)
        return LoadedModel(drop_aux(model).eval(), random_identity(cfg), "random")
    path = existing_file(weights, "--weights", "valid values: default, random, or a checkpoint PATH")
    what = f"checkpoint {path}"
    return LoadedModel(load_state_dict(cfg, torch_load(path, what), what), file_identity(path), "path")


def describe(req: NewRequest) -> Draft:
    """`new --torchvision NAME`: labels and mean/std from the builder's default weights' metadata
    (torchvision's own code: nothing downloaded)."""
    from export.sources.models import MODELS

    builder = MODELS.get(req.value, where="--torchvision")
    if req.weights:
        raise ExportError(
            "--weights: a torchvision model's trained weights are its weights enum's (model.weights, from torchvision's "
            "cache); a checkpoint of your own goes to `rne-export build --weights PATH`"
        )
    if req.kwargs:
        raise ExportError("--kwargs: not read by source torchvision (its builders take only the class count)")
    model: dict = {"source": "torchvision", "builder": req.value}
    if builder.weights_enum is None:
        return Draft(req.value, model, None, f"{req.value} has no weights enum naming its classes")
    w = builder.weights_enum().DEFAULT
    model["weights"] = w.name
    where = f"torchvision's {type(w).__name__}.{w.name}"
    categories = tuple("background" if c == "__background__" else c for c in w.meta["categories"])
    t = w.transforms()
    normalize = {"mean": [float(m) for m in t.mean], "std": [float(s) for s in t.std]}
    return Draft(req.value, model, categories, f"{where} categories", None, "", 1, normalize, f"{where} transforms")


register(
    Source(
        "torchvision", check, identity, load, describe, "a torchvision segmentation builder, e.g. deeplabv3_resnet50"
    )
)
