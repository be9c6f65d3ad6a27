"""ONNX Runtime (CPU), the peer every file is timed against: the wrapped model exported by
torch.onnx's dynamo exporter, its own static int8 model, and sessions on the same threads as
ExecuTorch's threadpool (bench, its profile and the kernel probe)."""

from __future__ import annotations

from pathlib import Path


def onnx_fp32(module, example, path: Path) -> tuple[Path, int]:
    """The wrapped model as ONNX (torch.onnx's dynamo exporter), the peer every file is timed against;
    -> its path and the MACs of the program it was exported from (the baselines' work)."""
    import torch

    from export.convert.macs import count

    program = torch.onnx.export(module, (example,), dynamo=True, verbose=False)
    assert program is not None, "torch.onnx.export(dynamo=True) returns the program"
    program.save(str(path))
    return path, sum(count(program.exported_program).values())


def onnx_int8(fp32: Path, path: Path, calibration: list, input_name: str) -> Path:
    """ONNX Runtime's own static int8 model: QDQ, per-channel int8 weights, uint8 activations,
    calibrated on the same photos, views and preprocessing as the int8 .pte."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Photos(CalibrationDataReader):
        def __init__(self) -> None:
            self.feeds = iter([{input_name: x.numpy()} for x in calibration])

        def get_next(self):
            return next(self.feeds, None)

    prepared = path.with_suffix(".pre.onnx")
    quant_pre_process(str(fp32), str(prepared))  # shape inference + graph cleanup, as ORT's docs ask
    quantize_static(
        str(prepared),
        str(path),
        Photos(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
    )
    return path


def ort_session(model: Path, threads: int, profile_prefix: str | None = None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads  # the ExecuTorch threadpool's count: same cores for both
    # No spin-waiting after a run: in an interleaved loop a spinning pool would steal the cores
    # from whichever engine runs next.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if profile_prefix:
        options.enable_profiling, options.profile_file_prefix = True, profile_prefix
    return ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])


def ort_runner(session):
    name = session.get_inputs()[0].name
    return lambda x: session.run(None, {name: x.numpy()})[0]
