"""Wrap the model in its runtime contract (stage `wrap`).

The hook's native runtime feeds one RGB NCHW float32 tensor and reads output 0 only, as float32
scores [1, K, H, W]. The wrapper makes the graph match that exactly: normalization per contract,
and the model's output adapted once, here: a dict's entry (torchvision's "out", transformers'
"logits"), a tuple's entry, logits smaller than the input upsampled (bilinear), a one-channel mask
turned into two class scores. What it did is recorded (records.OutputAdapter); an output that is
not per-pixel class scores is refused by name.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from export.config import IMAGENET_MEAN, IMAGENET_STD, ModelConfig, Variant
from export.errors import ExportError
from export.records import OutputAdapter

# keys of per-query (instance / panoptic / detection) outputs: masks per object, not per-pixel classes
PER_QUERY_KEYS = ("masks_queries_logits", "class_queries_logits", "pred_masks", "pred_boxes", "boxes", "masks")


class ContractWrapper(nn.Module):
    def __init__(
        self,
        model: nn.Module,
        normalize: bool,
        output_key: str,
        adapter: OutputAdapter | None = None,
        output_index: int = 0,
    ):
        super().__init__()
        self.model = model
        self.normalize = normalize
        self.output_key = output_key
        self.output_index = output_index
        self.adapter = adapter  # what the manifest records of the output
        self.upsample = adapter is not None and adapter.upsampled_from is not None
        self.one_channel = adapter.one_channel if adapter is not None else None
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
        elif isinstance(out, (tuple, list)):
            out = out[self.output_index]
        if self.upsample:
            out = F.interpolate(out, size=x.shape[-2:], mode="bilinear", align_corners=False)
        if self.one_channel == "logit":
            out = torch.cat([out * -0.5, out * 0.5], dim=1)
        elif self.one_channel == "probability":
            out = torch.cat([1.0 - out, out], dim=1)
        return out


def wrap(model: nn.Module, cfg: ModelConfig, variant: Variant) -> ContractWrapper:
    contract = variant.runtime_contract
    adapter, key = adapt_output(model, cfg, variant)
    return ContractWrapper(model, contract.normalize_in_graph, key, adapter, cfg.model.output_index).eval()


def adapt_output(model: nn.Module, cfg: ModelConfig, variant: Variant) -> tuple[OutputAdapter, str]:
    """Run the model once at the variant's size and decide how its output becomes [1,K,H,W] scores;
    one clear error when it cannot. -> (the adapter, the dict key the wrapper reads)."""
    h, w = variant.input.height, variant.input.width
    with torch.no_grad():
        out = model(example_input(variant))
    picked, out, key = _pick(out, cfg)
    where = f"{cfg.name} ({cfg.source})"
    if not isinstance(out, torch.Tensor):
        raise ExportError(
            f"{where}: the model's output ({picked}) is {type(out).__name__}, not a tensor of class scores"
        )
    if out.dim() != 4 or out.shape[0] != 1 or not out.is_floating_point():
        raise ExportError(
            f"{where}: the model's output ({picked}) is {out.dtype} {tuple(out.shape)}; React Native ExecuTorch's "
            f"segmenter takes float class scores [1,K,H,W] (an instance, detection or panoptic head cannot be exported)"
        )
    k, oh, ow = int(out.shape[1]), int(out.shape[2]), int(out.shape[3])
    if oh > h or ow > w:
        raise ExportError(
            f"{where}: the model outputs {oh}x{ow}, larger than its {h}x{w} input; nothing scales it down"
        )
    upsampled = (oh, ow) if (oh, ow) != (h, w) else None
    mask = cfg.model.mask
    if k == 1 and mask is None:
        raise ExportError(
            f"{where}: the model outputs one channel (a mask); say what it holds with model.mask: logit (before a "
            "sigmoid) or probability (after one), and give two labels (e.g. [background, person])"
        )
    if k == 1 and len(cfg.labels) != 2:
        raise ExportError(
            f"{where}: a one-channel mask ships as two classes; give exactly 2 labels, not {len(cfg.labels)}"
        )
    if k != 1 and mask is not None:
        raise ExportError(f"{where}: model.mask is for one-channel outputs; this model outputs {k} channels: drop it")
    if k != 1 and k != len(cfg.labels):
        raise ExportError(
            f"{where}: the model outputs {k} class scores per pixel, but the config has {len(cfg.labels)} labels; "
            f"give one label per output channel (model.num_classes / labels)"
        )
    one = mask if k == 1 else None
    return OutputAdapter(picked, k, upsampled, one), key  # type: ignore[arg-type]


def _pick(out: object, cfg: ModelConfig) -> tuple[str, object, str]:
    """(what was picked, as the manifest says it; the value; the dict key the wrapper reads)."""
    key = cfg.model.output_key
    if isinstance(out, torch.Tensor):
        return "tensor", out, key
    if isinstance(out, dict):
        keys = list(out)
        if any(k in keys for k in PER_QUERY_KEYS):
            raise ExportError(
                f"{cfg.name} ({cfg.source}): the model outputs {', '.join(map(str, keys))}: per-query masks (an instance "
                "or panoptic head), not per-pixel class scores; React Native ExecuTorch's segmenter cannot take them"
            )
        for key in (cfg.model.output_key, "logits"):
            if key in out and out[key] is not None:
                return f"dict key '{key}'", out[key], key
        raise ExportError(
            f"{cfg.name} ({cfg.source}): the model outputs a dict with {', '.join(map(str, keys))}; set model.output_key to the class scores"
        )
    if isinstance(out, (tuple, list)):
        i = cfg.model.output_index
        if not out or i >= len(out):
            raise ExportError(
                f"{cfg.name} ({cfg.source}): model.output_index {i}, but the model outputs {len(out)} values"
            )
        if isinstance(out[i], dict):
            raise ExportError(
                f"{cfg.name} ({cfg.source}): the model outputs a list of dicts (a detection or instance head), not "
                "per-pixel class scores"
            )
        return f"tuple index {i}", out[i], key
    return type(out).__name__, out, key


def example_input(variant: Variant) -> torch.Tensor:
    return torch.zeros(1, 3, variant.input.height, variant.input.width)
