"""Where int8 loses accuracy: each quantized layer's own share of the output error.

Per-layer sensitivity ("quantize one layer at a time", as NNCF and AIMET report it): every conv of
the eager fp32 model is run alone with int8 arithmetic — its input fake-quantized per tensor with
the range its calibration samples give, its weights per output channel, as the XNNPACK recipe
does — while every other layer stays fp32; the logits are compared with fp32's on the held-apart
photos. A layer whose input holds an outlier channel, or whose weights one channel dominates,
stands out by orders of magnitude. Used by `python -m export explain-int8` and by
`quantization: {keep_fp32: auto}`, which keeps the worst layers (and the layers that produce their
input, whose output the quantizer would otherwise still round) in fp32 one at a time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

# elementwise ops that pass a conv's output on to the next conv: a producer chain is walked back
# through these (anything else, e.g. add or cat, ends it)
_PASS_THROUGH = ("relu", "hardtanh", "batch_norm", "hardswish", "dropout", "clone", "_to_copy")


@dataclass(frozen=True)
class LayerError:
    module: str  # module path in the wrapped model (what quantization.keep_fp32 takes)
    snr_db: float  # logits with only this layer int8 vs fp32 (worst photo)
    agreement: float  # argmax agreement with fp32 (worst photo)
    weight_bytes_fp32: int  # what keeping it in fp32 stores (int8 stores a quarter)


def _fake_quant_tensor(x: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    """Per-tensor affine int8 with the range [lo, hi] (0 always representable), as XNNPACK's
    activations are."""
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    scale = max((hi - lo) / 255.0, 1e-12)
    zero = round(-128 - lo / scale)
    return (torch.clamp(torch.round(x / scale) + zero, -128, 127) - zero) * scale


def _fake_quant_weight(w: torch.Tensor, per_channel: bool) -> torch.Tensor:
    """Symmetric int8 weights, per output channel or per tensor."""
    amax = w.abs().amax(dim=tuple(range(1, w.dim())), keepdim=True) if per_channel else w.abs().max()
    scale = torch.clamp(amax / 127.0, min=1e-12)
    return torch.clamp(torch.round(w / scale), -127, 127) * scale


def _snr(ref: torch.Tensor, got: torch.Tensor) -> float:
    noise = float((got - ref).double().pow(2).sum())
    return math.inf if noise == 0 else 10 * math.log10(float(ref.double().pow(2).sum()) / noise)


def layer_sensitivity(
    module: nn.Module, calibration: list[torch.Tensor], photos: list[torch.Tensor], per_channel: bool = True
) -> list[LayerError]:
    """Every conv of `module` (the wrapped fp32 model), worst first."""
    convs = [(n, m) for n, m in module.named_modules() if isinstance(m, nn.Conv2d)]
    ranges: dict[str, list[float]] = {n: [math.inf, -math.inf] for n, _ in convs}

    def observe(name):
        def hook(_m, args):
            r = ranges[name]
            r[0], r[1] = min(r[0], float(args[0].min())), max(r[1], float(args[0].max()))

        return hook

    handles = [m.register_forward_pre_hook(observe(n)) for n, m in convs]
    with torch.no_grad():
        for x in calibration:
            module(x)
    for h in handles:
        h.remove()
    with torch.no_grad():
        refs = [module(x) for x in photos]
    out = []
    for name, conv in convs:
        lo, hi = ranges[name]
        original = conv.weight.data
        handle = conv.register_forward_pre_hook(lambda _m, args, lo=lo, hi=hi: (_fake_quant_tensor(args[0], lo, hi),))
        conv.weight.data = _fake_quant_weight(original, per_channel)
        try:
            with torch.no_grad():
                gots = [module(x) for x in photos]
        finally:
            handle.remove()
            conv.weight.data = original
        out.append(
            LayerError(
                name,
                min(_snr(r, g) for r, g in zip(refs, gots, strict=True)),
                min(float((r.argmax(1) == g.argmax(1)).double().mean()) for r, g in zip(refs, gots, strict=True)),
                original.numel() * 4,
            )
        )
    return sorted(out, key=lambda e: e.snr_db)


def producer_chain(program: torch.export.ExportedProgram, conv_module: str) -> list[str]:
    """`conv_module` and the modules that produce its input back to the previous conv: keeping
    only the conv in fp32 leaves its input rounded by the producer's output quantization."""

    def path(node) -> str | None:
        stack = node.meta.get("nn_module_stack") or {}
        return list(stack.values())[-1][0] if stack else None

    convs = [
        n for n in program.graph.nodes if n.op == "call_function" and "conv" in str(n.target) and path(n) == conv_module
    ]
    if not convs:
        return [conv_module]
    chain = [conv_module]
    node = convs[0].args[0]
    while getattr(node, "op", None) == "call_function":
        p = path(node)
        if p and p not in chain:
            chain.append(p)
        if "conv" in str(node.target) or not any(t in str(node.target) for t in _PASS_THROUGH):
            break
        node = node.args[0]
    return chain


def report(errors: list[LayerError], top: int = 10) -> str:
    from tabulate import tabulate

    rows = [
        (e.module, f"{e.snr_db:.1f}", f"{e.agreement * 100:.2f}%", f"{e.weight_bytes_fp32 / 1e6:.2f}") for e in errors
    ]
    return tabulate(
        rows[:top],
        headers=("layer (only it int8)", "logits SNR dB", "argmax agreement", "fp32 weights MB"),
        tablefmt="simple",
    )
