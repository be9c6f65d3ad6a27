"""The rewrite stage: exact graph rewrites that make the exported program cheaper at its static input size.

A dilated 3x3 convolution whose dilation is large next to its feature map (DeepLab's ASPP: rates
12/24/36 on a 28x28 map at 224x224) reads mostly zero padding: at rate 36 every off-centre tap
falls outside the map. XNNPACK's IGEMM multiplies those zeros anyway (profile: the three ASPP
convolutions were a third of the fp32 file's time), while ONNX Runtime's NCHWc kernels skip them.
`trim_padded_taps` replaces each such convolution by the same sum over only the taps that touch
the map: the centre tap as a 1x1 convolution over the whole map, every other tap as a 1x1
convolution over the band of outputs it reaches, padded back into place. Same weights, same
arithmetic up to summation order; the parity gate compares the file with the original module.
"""

from __future__ import annotations

import copy
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from export.convert.macs import pairs_inside

# why 0.8: rewrite only when at most 80 % of the taps' multiply-adds touch the map. ASPP at
# 224x224 is at 51 % (rate 12), 17 % (24) and 11 % (36); at 520x520 (65x65 map) rate 12 is at 77 %
# and trimming it still paid (docs/performance.md); the backbone's rate-2/4 convolutions are at
# 82-97 %, where eight extra slice+pad+add ops would cost more than the zeros they skip.
MAX_USEFUL_SHARE = 0.8


Pair = tuple[int, int]


def _geometry(conv: nn.Conv2d) -> tuple[Pair, Pair, Pair]:
    """Kernel size, dilation and padding of a convolution with numeric padding (see _trimmable)."""
    assert isinstance(conv.padding, tuple), "only numeric padding is trimmed"
    return cast(Pair, conv.kernel_size), cast(Pair, conv.dilation), cast(Pair, conv.padding)


class TrimmedConv(nn.Module):
    """A stride-1 2-D convolution computed from only the taps that read inside an h x w input."""

    def __init__(self, conv: nn.Conv2d, h: int, w: int) -> None:
        super().__init__()
        (kh, kw), (dh, dw), (ph, pw) = _geometry(conv)
        self.h, self.w = h, w
        self.bands: list[tuple[int, int, int, int, int, int]] = []  # (dy, dx, y0, y1, x0, x1) per tap
        weights = []
        for ky in range(kh):
            for kx in range(kw):
                dy, dx = ky * dh - ph, kx * dw - pw  # the input offset this tap reads
                y0, y1, x0, x1 = max(0, -dy), min(h, h - dy), max(0, -dx), min(w, w - dx)
                if y0 < y1 and x0 < x1:
                    self.bands.append((dy, dx, y0, y1, x0, x1))
                    weights.append(conv.weight.detach()[:, :, ky, kx, None, None])
        # one parameter per tap: a slice of a stacked tensor would be computed at run time, and
        # XNNPACK takes only constant convolution weights
        self.weights = nn.ParameterList(nn.Parameter(t.clone(), requires_grad=False) for t in weights)
        self.bias = None if conv.bias is None else nn.Parameter(conv.bias.detach().clone(), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = None
        for i, (dy, dx, y0, y1, x0, x1) in enumerate(self.bands):
            whole = (y0, y1, x0, x1) == (0, self.h, 0, self.w)
            # no slice or pad where the band is the whole map (a no-op slice lowers to a portable
            # alias_copy outside the delegate), and the bias rides on the centre tap's convolution
            window = x if whole and dy == dx == 0 else x[:, :, y0 + dy : y1 + dy, x0 + dx : x1 + dx]
            part = F.conv2d(window, self.weights[i], self.bias if dy == dx == 0 else None)
            if not whole:
                part = F.pad(part, (x0, self.w - x1, y0, self.h - y1))
            out = part if out is None else out + part
        assert out is not None
        return out


def useful_share(conv: nn.Conv2d, h: int, w: int) -> float:
    """The share of a convolution's multiply-adds that read inside an h x w map (the rest read padding)."""
    (kh, kw), (dh, dw), (ph, pw) = _geometry(conv)
    rows, cols = pairs_inside(h, h, kh, 1, ph, dh), pairs_inside(w, w, kw, 1, pw, dw)  # stride 1, "same": out = in
    return rows * cols / (kh * kw * h * w)


def _trimmable(conv: nn.Conv2d) -> bool:
    return (
        conv.stride == (1, 1)
        and conv.groups == 1
        and conv.padding_mode == "zeros"
        and isinstance(conv.padding, tuple)
        and all(2 * p == d * (k - 1) for p, d, k in zip(*_geometry(conv)[::-1], strict=True))
    )


def trim_padded_taps(module: nn.Module, example: torch.Tensor) -> tuple[nn.Module, list[str]]:
    """A copy of `module` with every "same"-padded stride-1 convolution whose useful share at
    `example`'s size is <= MAX_USEFUL_SHARE replaced by a TrimmedConv; returns it and their names.
    `module` itself is left as it is (it stays the parity reference)."""
    sizes: dict[str, tuple[int, int]] = {}
    hooks = [
        m.register_forward_pre_hook(lambda m, args, n=name: sizes.__setitem__(n, tuple(args[0].shape[-2:])))
        for name, m in module.named_modules()
        if isinstance(m, nn.Conv2d) and _trimmable(m)
    ]
    try:
        with torch.no_grad():
            module(example)
    finally:
        for hook in hooks:
            hook.remove()
    convs = {n: cast(nn.Conv2d, module.get_submodule(n)) for n in sizes}
    chosen = [n for n, (h, w) in sizes.items() if useful_share(convs[n], h, w) <= MAX_USEFUL_SHARE]
    if not chosen:
        return module, []
    trimmed = copy.deepcopy(module)
    for name in chosen:
        parent, _, leaf = name.rpartition(".")
        h, w = sizes[name]
        setattr(trimmed.get_submodule(parent), leaf, TrimmedConv(convs[name], h, w))
    return trimmed.eval(), chosen


# --- forms XNNPACK delegates, for ops it leaves to portable CPU kernels ------------------------------
# Each is exact in real arithmetic (fp32: summation order only); the parity gate compares the file with
# the original module, so a rewrite that were not would fail the build.


class LayerNormAsMean(nn.Module):
    """LayerNorm over the last dimension as reduce-mean and elementwise ops: XNNPACK has no layer-norm
    op, and its mean takes 4-D inputs over the last two dimensions, so [..., C] is viewed [N, M, 1, C]."""

    def __init__(self, ln: nn.LayerNorm) -> None:
        super().__init__()
        self.eps = ln.eps
        self.weight = ln.weight
        self.bias = ln.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        y = x.reshape(1, -1, 1, shape[-1])
        centred = y - y.mean(dim=(-2, -1), keepdim=True)
        var = (centred * centred).mean(dim=(-2, -1), keepdim=True)
        out = (centred * torch.rsqrt(var + self.eps)).reshape(shape)
        if self.weight is not None:
            out = out * self.weight
        if self.bias is not None:
            out = out + self.bias
        return out


class GroupNormAsMean(nn.Module):
    """GroupNorm on [N, C, H, W] as reduce-mean over each group viewed [N, G, C/G, H·W]."""

    def __init__(self, gn: nn.GroupNorm) -> None:
        super().__init__()
        self.groups, self.eps = gn.num_groups, gn.eps
        self.weight, self.bias = gn.weight, gn.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        y = x.reshape(n, self.groups, c // self.groups, h * w)
        centred = y - y.mean(dim=(-2, -1), keepdim=True)
        var = (centred * centred).mean(dim=(-2, -1), keepdim=True)
        out = (centred * torch.rsqrt(var + self.eps)).reshape(n, c, h, w)
        if self.weight is not None:
            out = out * self.weight.view(1, c, 1, 1) + self.bias.view(1, c, 1, 1)
        return out


def _replaceable(m: nn.Module) -> type[nn.Module] | None:
    if isinstance(m, nn.LayerNorm) and len(m.normalized_shape) == 1:
        return LayerNormAsMean
    if isinstance(m, nn.GroupNorm) and m.affine:
        return GroupNormAsMean
    return None


def xnnpack_forms(module: nn.Module) -> tuple[nn.Module, list[str]]:
    """A copy of `module` with each LayerNorm (last dimension) and GroupNorm in a form XNNPACK
    delegates; `module` itself when it has none. -> (module, one "<count> <what>" line per kind)."""
    chosen = [(name, kind) for name, m in module.named_modules() if (kind := _replaceable(m)) is not None]
    if not chosen:
        return module, []
    out = copy.deepcopy(module)
    for name, kind in chosen:
        parent, _, leaf = name.rpartition(".")
        setattr(out.get_submodule(parent), leaf, kind(cast(nn.Module, module.get_submodule(name))))
    counts: dict[str, int] = {}
    for _, kind in chosen:
        counts[kind.__name__] = counts.get(kind.__name__, 0) + 1
    return out.eval(), [f"{n} x {what}: {FORM_DOCS[what]}" for what, n in counts.items()]


FORM_DOCS = {
    "LayerNormAsMean": "LayerNorm as reduce-mean, rsqrt and elementwise ops",
    "GroupNormAsMean": "GroupNorm as reduce-mean, rsqrt and elementwise ops",
    "nearest": "integer-scale nearest upsample as a depthwise transposed convolution of ones",
    "expand": "same-shape expand (a no-op view) removed",
}


class NearestAsTransposedConv:
    """While active, F.interpolate(mode="nearest") at an integer scale is computed as a depthwise
    transposed convolution with a kernel of ones (stride = scale): each output pixel is its input
    pixel times 1, so exact. XNNPACK has no nearest-upsample op; it delegates the convolution. Used
    around torch.export only: the eager model stays the parity reference."""

    def __init__(self) -> None:
        self.count = 0
        self._weights: dict[tuple[int, int, int], torch.Tensor] = {}  # constants the program captures
        self.missing: set[tuple[int, int, int]] = set()  # kernels a trace asked for before they existed

    def __enter__(self) -> NearestAsTransposedConv:
        self._original = F.interpolate
        F.interpolate = self._interpolate  # type: ignore[assignment]
        return self

    def make_kernels(self) -> None:
        """The kernels of ones a trace asked for, made outside tracing (inside, they would be traced as
        ops, not captured as constants): trace again to use them."""
        for c, sh, sw in self.missing:
            self._weights[(c, sh, sw)] = torch.ones(c, 1, sh, sw)
        self.missing.clear()

    def __exit__(self, *exc: object) -> None:
        F.interpolate = self._original

    def _interpolate(self, x, size=None, scale_factor=None, mode="nearest", *args, **kwargs):
        scale = self._integer_scale(x, size, scale_factor) if mode == "nearest" and x.dim() == 4 else None
        if scale is None:
            return self._original(x, size, scale_factor, mode, *args, **kwargs)
        c = int(x.shape[1])
        key = (c, *scale)
        if key not in self._weights:  # this trace keeps the upsample; make_kernels, then trace again
            self.missing.add(key)
            return self._original(x, size, scale_factor, mode, *args, **kwargs)
        self.count += 1
        return F.conv_transpose2d(x, self._weights[key], stride=scale, groups=c)

    @staticmethod
    def _integer_scale(x: torch.Tensor, size, scale_factor) -> tuple[int, int] | None:
        h, w = int(x.shape[-2]), int(x.shape[-1])
        oh: float
        ow: float
        if size is not None:
            oh, ow = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
        elif scale_factor is not None:
            sh, sw = (scale_factor, scale_factor) if isinstance(scale_factor, (int, float)) else scale_factor
            oh, ow = h * float(sh), w * float(sw)
        else:
            return None
        if oh % h or ow % w or oh < h or ow < w or (oh == h and ow == w):
            return None
        return int(oh // h), int(ow // w)


def drop_noop_expands(gm: torch.fx.GraphModule):
    """An edge-dialect pass (before partitioning): remove expand_copy nodes whose output has its input's
    shape. A batched matmul decomposes into expand + bmm with such expands, and each would stay outside
    XNNPACK as a portable expand_copy. -> torch.fx PassResult."""
    from executorch.exir.dialects._ops import ops as exir_ops
    from torch.fx.passes.infra.pass_base import PassResult

    removed = 0
    for node in list(gm.graph.nodes):
        if node.op != "call_function" or node.target is not exir_ops.edge.aten.expand_copy.default:
            continue
        src = node.args[0]
        if isinstance(src, torch.fx.Node) and "val" in src.meta and "val" in node.meta:
            if tuple(src.meta["val"].shape) == tuple(node.meta["val"].shape):
                node.replace_all_uses_with(src)
                gm.graph.erase_node(node)
                removed += 1
    if removed:
        gm.recompile()
    return PassResult(gm, removed > 0)


def has_batched_matmul(program: torch.export.ExportedProgram) -> bool:
    return any(n.op == "call_function" and n.target is torch.ops.aten.matmul.default for n in program.graph.nodes)
