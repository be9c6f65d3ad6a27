"""Source `torchvision`: torchvision's segmentation builders by name (model.builder), and the tiny
test net; `--weights default` is the config's weights enum member (model.weights) from torchvision's
cache. The loading itself is export/weights.py, which the seed models have always used."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from . import SOURCE_FIELDS, LoadedModel, Source, check_fields, register

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


register(Source("torchvision", check, identity, load))
