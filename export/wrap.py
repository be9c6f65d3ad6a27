"""Step 3: wrap the model in its runtime contract.

The hook's native runtime feeds one RGB NCHW float32 tensor and reads output 0 only, as float32
logits [1, C, H, W]. The wrapper makes the graph match that exactly: normalization per contract,
the dict's "out" tensor only (no aux head), static shape.
"""

from __future__ import annotations

import torch
from torch import nn

from .config import CONTRACTS, IMAGENET_MEAN, IMAGENET_STD, ModelConfig, Variant


class ContractWrapper(nn.Module):
    def __init__(self, model: nn.Module, normalize: bool, output_key: str):
        super().__init__()
        self.model = model
        self.normalize = normalize
        self.output_key = output_key
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    mean: torch.Tensor  # buffers, registered in __init__
    std: torch.Tensor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.normalize:
            x = (x - self.mean) / self.std
        out = self.model(x)
        if isinstance(out, dict):
            out = out[self.output_key]
        return out


def wrap(model: nn.Module, cfg: ModelConfig, variant: Variant) -> ContractWrapper:
    contract = CONTRACTS.get(variant.contract)
    return ContractWrapper(model, contract.normalize_in_graph, cfg.model.output_key).eval()


def example_input(variant: Variant) -> torch.Tensor:
    return torch.zeros(1, 3, variant.input.height, variant.input.width)
