"""Multiply-accumulates of an exported program, per kind of op, read from the graph's own shapes:
the work a file asks of the CPU, so a latency can be set against what the CPU can do (bench.json's
GMAC/s and share of peak). A convolution counts only the (output, tap) pairs that read inside its
input: a tap on zero padding is not work, and kernels differ in whether they skip it (ONNX Runtime's
NCHWc does; XNNPACK's IGEMM does not, hence export.convert.rewrite). So a stock graph and its trimmed form
count the same, and every engine running one model is set against the same work. Elementwise ops,
pooling and resizes are not multiply-accumulates and are left out (they are memory-bound)."""

from __future__ import annotations

import math
from typing import Any

# ATen ops (as torch.export writes them) -> kind
KINDS = {
    "conv2d": "conv",
    "convolution": "conv",  # transposed=True counted as conv_transpose
    "conv_transpose2d": "conv_transpose",
    "linear": "linear",
    "addmm": "linear",
    "mm": "matmul",
    "bmm": "matmul",
    "matmul": "matmul",
    "baddbmm": "matmul",
}


def _shape(node: Any) -> tuple[int, ...] | None:
    val = getattr(node, "meta", {}).get("val")
    return tuple(int(s) for s in val.shape) if val is not None and hasattr(val, "shape") else None


def pairs_inside(size: int, out: int, k: int, stride: int, pad: int, dilation: int) -> int:
    """Along one axis: the (output, tap) pairs whose input index o·stride − pad + t·dilation is inside."""
    return sum(sum(1 for o in range(out) if 0 <= o * stride - pad + t * dilation < size) for t in range(k))


def _per_axis(value: Any, axes: int, default: int) -> list[int]:
    if value is None:
        return [default] * axes
    values = [int(v) for v in value] if isinstance(value, (list, tuple)) else [int(value)]
    return values * axes if len(values) == 1 else values


def _conv(node, transposed: bool) -> int:
    x, w, out = _shape(node.args[0]), _shape(node.args[1]), _shape(node)
    if x is None or w is None or out is None:
        return 0
    if transposed:  # weight [Cin, Cout/groups, kh, kw]: each input element feeds Cout/groups · k taps
        return math.prod(x) * math.prod(w[1:])
    # weight [Cout, Cin/groups, *k]; convolution(x, w, b, stride, padding, dilation, ...), conv2d(x, w, b,
    # stride, padding, dilation, groups), padding possibly "same" / "valid"
    args = list(node.args) + [None] * 6
    axes, kernel = len(w) - 2, w[2:]
    stride = _per_axis(args[3], axes, 1)
    dilation = _per_axis(args[5], axes, 1)
    if args[4] == "valid":
        pad = [0] * axes
    elif args[4] == "same":
        pad = [d * (k - 1) // 2 for k, d in zip(kernel, dilation, strict=True)]
    else:
        pad = _per_axis(args[4], axes, 0)
    pairs = math.prod(
        pairs_inside(x[2 + i], out[2 + i], kernel[i], stride[i], pad[i], dilation[i]) for i in range(axes)
    )
    return out[0] * out[1] * w[1] * pairs


def _matmul(node, name: str) -> int:
    a = node.args[1] if name in ("addmm", "baddbmm") else node.args[0]  # the left operand: [..., M, K]
    sa, out = _shape(a), _shape(node)
    if sa is None or out is None:
        return 0
    return math.prod(out) * sa[-1]  # every output element is a K-long dot product (linear: over in_features)


def count(program: Any) -> dict[str, int]:
    """MACs per kind (conv, conv_transpose, linear, matmul) of an ExportedProgram or GraphModule."""
    graph = program.graph_module.graph if hasattr(program, "graph_module") else program.graph
    out: dict[str, int] = {}
    for node in graph.nodes:
        if node.op != "call_function":
            continue
        name = getattr(node.target, "__name__", str(node.target)).split(".")[0]
        kind = KINDS.get(name)
        if kind is None:
            continue
        if kind == "conv":
            transposed = name == "convolution" and bool(node.args[6]) if len(node.args) > 6 else False
            macs = _conv(node, transposed)
            kind = "conv_transpose" if transposed else kind
        elif kind == "conv_transpose":
            macs = _conv(node, True)
        else:
            macs = _matmul(node, name)
        out[kind] = out.get(kind, 0) + macs
    return {k: v for k, v in sorted(out.items()) if v}
