"""Multiply-accumulates of an exported program, per kind of op, read from the graph's own shapes:
the work a file asks of the CPU, so a latency can be set against what the CPU can do (bench.json's
GMAC/s and share of peak). Convolutions a rewrite trimmed (export.rewrite) are counted as traced:
the taps that only read padding are not there. Elementwise ops, pooling and resizes are not
multiply-accumulates and are left out (they are memory-bound)."""

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


def _conv(node, transposed: bool) -> int:
    x, w, out = _shape(node.args[0]), _shape(node.args[1]), _shape(node)
    if x is None or w is None or out is None:
        return 0
    if transposed:  # weight [Cin, Cout/groups, kh, kw]: each input element feeds Cout/groups · k taps
        return math.prod(x) * math.prod(w[1:])
    return math.prod(out) * math.prod(w[1:])  # weight [Cout, Cin/groups, kh, kw]


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
