"""`bench --profile`: where each millisecond goes, op by op, in a `.pte` and in its ONNX Runtime peer.

A `.pte` runs with ExecuTorch's event tracer (ETDump) and is read back by ExecuTorch's Inspector:
XNNPACK reports each of its operators, so the delegate's time splits into convolutions, GEMMs,
layout copies and so on; whatever runs outside the delegate is the method's time minus the
delegate calls. ONNX Runtime's own profiler does the same for the peer model. Both are grouped into
the same kinds of work so the two engines compare line by line. The tracer adds a little time per
op: shares are the thing to read, the bench's medians are the latency.
"""

from __future__ import annotations

import io
import json
import re
import statistics
import tempfile
from collections import defaultdict
from pathlib import Path

from export.bench_records import EngineProfile, OpTime

# Kinds of work, in the order tables and the chart list them. XNNPACK names its operators
# "Convolution (NHWC, F32) IGEMM #3"; ONNX Runtime names op types "Conv", "QLinearConv".
KINDS = ("convolution", "1x1 / GEMM", "resize", "layout copy", "elementwise", "pool / reduce", "quantize", "other")
_XNNPACK_KIND = (
    ("Convolution", "convolution"),
    ("Deconvolution", "convolution"),
    ("Fully Connected", "1x1 / GEMM"),
    ("Batch Matrix Multiply", "1x1 / GEMM"),
    ("Resize", "resize"),
    ("Transpose", "layout copy"),
    ("Copy", "layout copy"),
    ("Convert", "quantize"),
    ("Pooling", "pool / reduce"),
    ("Mean", "pool / reduce"),
    ("Max", "pool / reduce"),
    ("Add", "elementwise"),
    ("Subtract", "elementwise"),
    ("Multiply", "elementwise"),
    ("Divide", "elementwise"),
    ("Clamp", "elementwise"),
    ("HardSwish", "elementwise"),
    ("Sigmoid", "elementwise"),
    ("Concatenate", "layout copy"),
)
_ORT_KIND = {
    "Conv": "convolution",
    "FusedConv": "convolution",
    "QLinearConv": "convolution",
    "NhwcFusedConv": "convolution",
    "MatMul": "1x1 / GEMM",
    "Gemm": "1x1 / GEMM",
    "Resize": "resize",
    "Upsample": "resize",
    "Transpose": "layout copy",
    "ReorderInput": "layout copy",
    "ReorderOutput": "layout copy",
    "Concat": "layout copy",
    "QLinearConcat": "layout copy",
    "QuantizeLinear": "quantize",
    "DequantizeLinear": "quantize",
    "MaxPool": "pool / reduce",
    "NhwcMaxPool": "pool / reduce",
    "ReduceMean": "pool / reduce",
    "GlobalAveragePool": "pool / reduce",
    "QLinearGlobalAveragePool": "pool / reduce",
}
_ELEMENTWISE = {
    "Add",
    "Sub",
    "Mul",
    "Div",
    "Relu",
    "Clip",
    "QLinearAdd",
    "QLinearMul",
    "Sum",
    "HardSigmoid",
    "HardSwish",
}
_ELEMENTWISE |= {"Sigmoid", "QLinearSigmoid"}


def xnnpack_kind(event: str) -> str:
    for prefix, kind in _XNNPACK_KIND:
        if event.startswith(prefix):
            return kind
    return "other"


def ort_kind(op_type: str, input_shapes: list | None = None) -> str:
    """A convolution whose weight (the first 4-D input after the data) is 1x1 is a GEMM, as
    XNNPACK counts it, so the two engines' kinds compare."""
    kind = _ORT_KIND.get(op_type) or ("elementwise" if op_type in _ELEMENTWISE else "other")
    if kind == "convolution" and input_shapes:
        dims = [next(iter(t.values())) for t in input_shapes[1:] if isinstance(t, dict) and t]
        weight = next((d for d in dims if len(d) == 4), None)
        if weight is not None and weight[2:] == [1, 1]:
            return "1x1 / GEMM"
    return kind


def _summary(
    ops: list[OpTime], total_ms: float, outside_ms: float, outside: list[OpTime] | None = None
) -> EngineProfile:
    by_kind: dict[str, float] = defaultdict(float)
    for op in ops:
        by_kind[op.kind] += op.ms
    if outside_ms > 0:
        by_kind["outside the delegate"] += outside_ms
    kinds = {k: round(by_kind[k], 3) for k in (*KINDS, "outside the delegate") if by_kind.get(k)}
    top = sorted(ops, key=lambda o: -o.ms)[:10]
    return EngineProfile(round(total_ms, 3), round(outside_ms, 3), kinds, tuple(top), tuple(outside or ()))


def profile_pte(path: Path, x, runs: int) -> EngineProfile:
    """Per-operator medians of `runs` executions of `path` (ETDump + Inspector)."""
    from executorch.devtools import Inspector
    from executorch.extension.pybindings.portable_lib import _load_for_executorch

    from export.threads import executorch_threads

    executorch_threads()
    module = _load_for_executorch(str(path), enable_etdump=True, debug_buffer_size=0)
    with tempfile.TemporaryDirectory() as tmp:
        # the tracer keeps every run, the first (weight packing) too: medians leave it out
        for _ in range(runs + 1):
            module.forward([x])
        etdump = Path(tmp) / "run.etdp"
        module.write_etdump_result_to_file(str(etdump))
        frame = Inspector(etdump_path=str(etdump)).to_dataframe()
    rows = frame[frame["event_block_name"] == "Execute"]
    ops: list[OpTime] = []
    outside: list[OpTime] = []
    delegate_ms = total_ms = 0.0
    for name, ms, delegated in zip(rows["event_name"], rows["p50 (ms)"], rows["is_delegated_op"], strict=True):
        if name == "Method::execute":
            total_ms += ms
        elif name == "DELEGATE_CALL":
            delegate_ms += ms
        else:  # XNNPACK's operators, or a portable-kernel op outside the delegate
            (ops if delegated else outside).append(OpTime(name, xnnpack_kind(name), round(float(ms), 4)))
    return _summary(ops, total_ms, max(total_ms - delegate_ms, 0.0), outside)


def profile_ort(session_for, x, runs: int) -> EngineProfile:
    """Per-node median time of `runs` runs of input `x` (numpy) in ONNX Runtime's profiler;
    `session_for(prefix)` makes a session that profiles into files starting with `prefix`."""
    with tempfile.TemporaryDirectory() as tmp:
        session = session_for(str(Path(tmp) / "ort"))
        feed = {session.get_inputs()[0].name: x}
        session.run(None, feed)  # warm-up, like the .pte's
        for _ in range(runs):
            session.run(None, feed)
        events = json.loads(Path(session.end_profiling()).read_text())
    per_node: dict[str, list[float]] = defaultdict(list)
    op_type: dict[str, str] = {}
    shapes: dict[str, list] = {}
    runs_ms: list[float] = []
    for e in events:
        if e.get("cat") == "Session" and e.get("name") == "model_run":
            runs_ms.append(e["dur"] / 1e3)
        if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time"):
            node = e["name"].removesuffix("_kernel_time")
            per_node[node].append(e["dur"] / 1e3)
            op_type[node] = e["args"].get("op_name", "?")
            shapes[node] = e["args"].get("input_type_shape", [])
    ops = []
    for node, times in per_node.items():
        ms = statistics.median(times[1:] or times)  # the warm-up dropped
        ops.append(OpTime(f"{op_type[node]} {node}", ort_kind(op_type[node], shapes[node]), round(ms, 4)))
    total = statistics.median(runs_ms[1:] or runs_ms) if runs_ms else 0.0
    return _summary(ops, total, 0.0)


def table(profiles: dict[str, EngineProfile]) -> str:
    """Kinds of work (rows) by engine (columns): ms and share of the engine's total."""
    from tabulate import tabulate

    kinds = [k for k in (*KINDS, "outside the delegate") if any(k in p.kinds for p in profiles.values())]
    rows = []
    for k in kinds:
        row = [k]
        for p in profiles.values():
            ms = p.kinds.get(k)
            row.append(f"{ms:.1f} ({100 * ms / p.total_ms:.0f} %)" if ms and p.total_ms else "-")
        rows.append(row)
    rows.append(["total (traced)", *(f"{p.total_ms:.1f}" for p in profiles.values())])
    heads = ["ms (share)", *(_short(n) for n in profiles)]
    return tabulate(rows, headers=heads, tablefmt="plain", disable_numparse=True)


def top_ops(name: str, profile: EngineProfile, n: int = 5) -> str:
    ops = ", ".join(f"{o.op} {o.ms:.1f} ms" for o in profile.top[:n])
    return f"{_short(name)}: slowest ops: {ops}"


def _short(name: str) -> str:
    """ "deeplab_v3_resnet50_xnnpack_fp32.pte" -> "xnnpack_fp32.pte"; "onnxruntime fp32 <model> 224x224
    rne-0.5" -> "onnxruntime fp32 224x224 rne-0.5"."""
    name = re.sub(r"^[a-z0-9_]+?_(xnnpack|coreml)_", r"\1_", name)
    return re.sub(r"^(onnxruntime \w+) [a-z0-9_]+ (\d+x\d+)", r"\1 \2", name)


def chart(profiles: dict[str, EngineProfile]) -> bytes:
    """A stacked horizontal bar per engine, one colour per kind of work, as PNG bytes."""
    # matplotlib is imported only here: only --profile draws, and it costs ~1 s to import
    import matplotlib

    matplotlib.use("Agg")  # no display: write the file only
    import matplotlib.pyplot as plt

    names = list(profiles)
    kinds = [k for k in (*KINDS, "outside the delegate") if any(k in p.kinds for p in profiles.values())]
    fig, ax = plt.subplots(figsize=(9, 0.5 * len(names) + 2.2), dpi=100)
    left = [0.0] * len(names)
    colours = plt.get_cmap("tab10")
    for i, k in enumerate(kinds):
        widths = [profiles[n].kinds.get(k, 0.0) for n in names]
        ax.barh([_short(n) for n in names], widths, left=left, label=k, color=colours(i % 10))
        left = [a + b for a, b in zip(left, widths, strict=True)]
    ax.invert_yaxis()
    ax.set_xlabel("ms per inference (traced, median op times)")
    fig.legend(loc="lower center", ncol=5, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.1, 1, 1))  # room for the legend below the axis
    png = io.BytesIO()
    fig.savefig(png, format="png", metadata={"Software": None})  # no version stamp: same data, same bytes
    plt.close(fig)
    return png.getvalue()
