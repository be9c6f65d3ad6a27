"""Which kernels this host runs well: one convolution of each kind a segmentation backbone spends its
time in, timed in XNNPACK (as ExecuTorch lowers it) and ONNX Runtime, plus a torch GEMM as the host's
practical ceiling. XNNPACK picks its micro-kernels by instruction set and the choice is not visible
from Python; these rates are what it shows. On a 2-core AMD EPYC (AVX2) XNNPACK's 3x3 IGEMM ran at
half its 1x1 GEMM's rate, on an AVX-512 Xeon the reverse (bench.json host.kernels, per host)."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

from export.bench_records import KernelRate
from export.timing import interleaved, medians

# (kind, input channels, output channels, kernel, map side): DeepLabV3-ResNet50's layer4 3x3 and a
# 2048->512 1x1 at 224x224 (28x28 map, output stride 8)
SHAPES = (
    ("3x3 convolution", 512, 512, 3, 28),
    ("1x1 convolution", 2048, 512, 1, 28),
)
GEMM_SIDE = 1024  # torch's fp32 matmul: oneDNN/MKL's rate bounds what a kernel here can reach
RUNS = 15  # interleaved per shape, as bench times its engines


def _xnnpack(conv, x) -> Callable[[], object]:
    import torch
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    from export.threads import runtime

    program = torch.export.export(conv, (x,))
    buffer = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()]).to_executorch().buffer
    method = runtime().load_program(buffer).load_method("forward")
    return lambda: (buffer, method.execute([x]))  # the method reads the buffer: keep it alive


def _onnxruntime(conv, x, threads: int, folder: Path) -> Callable[[], object]:
    from export.checks.onnx_peer import onnx_fp32, ort_session

    session = ort_session(onnx_fp32(conv, x, folder / "conv.onnx")[0], threads)
    feed = {session.get_inputs()[0].name: x.numpy()}
    return lambda: session.run(None, feed)


def probe(threads: int) -> tuple[KernelRate, ...]:
    """Median ms and GMAC/s of each SHAPES convolution in XNNPACK and ONNX Runtime (fp32, `threads`
    threads, seeded random weights), and of torch's fp32 GEMM."""
    import torch

    from export.convert.rewrite import TrimmedConv

    torch.manual_seed(0)
    rates = []
    with torch.no_grad(), tempfile.TemporaryDirectory() as tmp:
        for kind, cin, cout, k, side in SHAPES:
            conv = torch.nn.Conv2d(cin, cout, k, padding=k // 2).eval()
            x = torch.rand(1, cin, side, side)
            macs = side * side * cin * cout * k * k
            shape = f"{cin}->{cout}, {k}x{k}, {side}x{side} map"
            runs = [
                ("xnnpack", kind, _xnnpack(conv, x)),
                ("onnxruntime", kind, _onnxruntime(conv, x, threads, Path(tmp))),
            ]
            if k > 1:  # the same sum as k*k 1x1 convolutions over shifted windows (XNNPACK: GEMM, not IGEMM)
                runs.append(("xnnpack", f"{kind} as {k * k} 1x1 taps", _xnnpack(TrimmedConv(conv, side, side), x)))
            med = medians(interleaved({str(i): run for i, (_, _, run) in enumerate(runs)}, RUNS, 2))
            for i, (engine, what, _) in enumerate(runs):
                ms = med[str(i)]
                rates.append(
                    KernelRate(engine, f"fp32 {what}", shape, threads, round(ms, 3), round(macs / ms / 1e6, 1))
                )
        a = torch.rand(GEMM_SIDE, GEMM_SIDE)
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            ms = medians(interleaved({"gemm": lambda: a @ a}, RUNS, 2))["gemm"]
        finally:
            torch.set_num_threads(before)
        shape = f"{GEMM_SIDE}x{GEMM_SIDE} @ {GEMM_SIDE}x{GEMM_SIDE}"
        rates.append(KernelRate("torch", "fp32 GEMM", shape, threads, round(ms, 3), round(GEMM_SIDE**3 / ms / 1e6, 1)))
    return tuple(rates)


def lines(rates: tuple[KernelRate, ...]) -> list[str]:
    """The probe as table rows: engine, kind, shape, ms, GMAC/s."""
    return [f"  {r.engine:<12} {r.kind:<38} {r.shape:<28} {r.median_ms:>8.2f} ms {r.gmacs:>7.1f} GMAC/s" for r in rates]
