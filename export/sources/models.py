"""Model builders: torchvision's segmentation builders plus a tiny net for the fast test tier.

A builder takes (num_classes, aux_loss) and returns an untrained nn.Module whose forward returns
a dict with at least "out" (torchvision's convention). Weights are applied by export.sources.weights.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.nn import functional as F

from export.registry import Registry

if TYPE_CHECKING:  # annotation only: torchvision is imported where builders are listed
    from torchvision.models import WeightsEnum


@dataclass(frozen=True)
class ModelBuilder:
    build: Callable[[int, bool], nn.Module]
    # torchvision weights enum (e.g. DeepLabV3_ResNet50_Weights) for `--weights default`, if any
    weights_enum: Callable[[], type[WeightsEnum]] | None = None


MODELS: Registry[ModelBuilder] = Registry("model builder")


def _torchvision_builders():
    import torchvision

    for name in torchvision.models.list_models(module=torchvision.models.segmentation):

        def build(num_classes: int, aux_loss: bool, _name=name) -> nn.Module:
            kwargs = dict(weights=None, weights_backbone=None, num_classes=num_classes)
            if aux_loss:
                kwargs["aux_loss"] = True
            return torchvision.models.get_model(_name, **kwargs)

        def weights_enum(_name: str = name) -> type[WeightsEnum]:
            return torchvision.models.get_model_weights(_name)

        yield name, ModelBuilder(build, weights_enum)


MODELS.add_source(_torchvision_builders)


class TinySegNet(nn.Module):
    """Segmentation-shaped toy (conv-BN-ReLU, stride 2, classifier, bilinear upsample, dict output
    with an optional aux head) so every pipeline stage runs in seconds."""

    def __init__(self, num_classes: int = 21, aux_loss: bool = False):
        super().__init__()
        self.backbone = nn.Sequential(
            nn.Conv2d(3, 16, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1, bias=False),
            nn.BatchNorm2d(32),
            nn.ReLU(),
        )
        self.classifier = nn.Conv2d(32, num_classes, 1)
        self.aux_classifier = nn.Conv2d(32, num_classes, 1) if aux_loss else None

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        size = x.shape[-2:]
        feats = self.backbone(x)
        out = {"out": F.interpolate(self.classifier(feats), size=size, mode="bilinear", align_corners=False)}
        if self.aux_classifier is not None:
            out["aux"] = F.interpolate(self.aux_classifier(feats), size=size, mode="bilinear", align_corners=False)
        return out


MODELS.register("tiny_segnet", ModelBuilder(lambda n, aux: TinySegNet(n, aux)))


def small_residual_branches(model: nn.Module, gain: float) -> nn.Module:
    """Every ResNet block's last BatchNorm gamma set to `gain` (no-op for nets without them). A
    trained ResNet's residual branches add small corrections to the skip path; at torchvision's
    init (gamma 1) ResNet-101's activations grow block by block past fp16's range."""
    for m in model.modules():
        last_bn = {"Bottleneck": "bn3", "BasicBlock": "bn2"}.get(type(m).__name__)
        if last_bn:
            nn.init.constant_(getattr(m, last_bn).weight, gain)
    return model
