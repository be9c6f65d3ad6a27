"""Source `torchvision`: torchvision's segmentation builders by name (model.builder), and the tiny
test net; `--weights default` is the config's weights enum member (model.weights) from torchvision's
cache. The loading itself is export/weights.py, which the seed models have always used."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ExportError
from . import SOURCE_FIELDS, Draft, LoadedModel, NewRequest, Source, check_fields, register

if TYPE_CHECKING:
    from ..config import ModelConfig

SOURCE_FIELDS["torchvision"] = ("builder", "weights", "random_residual_gain")


def check(cfg: ModelConfig, source: Path) -> None:
    check_fields(cfg, source, SOURCE_FIELDS["torchvision"], needs=("builder",))


def identity(cfg: ModelConfig, weights: str) -> tuple[str, str]:
    from ..weights import torchvision_identity

    return torchvision_identity(cfg, weights)


def load(cfg: ModelConfig, weights: str) -> LoadedModel:
    from ..weights import torchvision_load

    return torchvision_load(cfg, weights)


def describe(req: NewRequest) -> Draft:
    """`new --torchvision NAME`: labels and mean/std from the builder's default weights' metadata
    (torchvision's own code: nothing downloaded)."""
    from ..models import MODELS

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
    allowed, built_in = _known_allowances(req.value)
    return Draft(
        req.value, model, categories, f"{where} categories", None, "", 1, normalize, f"{where} transforms",
        allow_non_delegated=allowed, allow_from=built_in,
    )  # fmt: skip


def _known_allowances(builder: str) -> tuple[tuple[str, ...], str]:
    """What the built-in config of the same builder lets XNNPACK leave out (MobileNetV3's layout
    copies), so a config `new` writes builds as that one does."""
    from ..config import list_configs, load_config
    from ..data import CONFIGS

    for path in list_configs(CONFIGS):
        cfg = load_config(path)
        if cfg.model.builder == builder:
            ops = sorted({op for v in cfg.variants if v.backend == "xnnpack" for op in v.allow_non_delegated})
            return tuple(ops), f"the built-in configs/{path.name}"
    return (), ""


register(
    Source(
        "torchvision", check, identity, load, describe, "a torchvision segmentation builder, e.g. deeplabv3_resnet50"
    )
)
