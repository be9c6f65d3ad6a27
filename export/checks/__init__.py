"""Checks and measurements run on finished files: latency and the distance to the CPU's limit
(`bench`, `kernels`, `memory_probe`, `onnx_peer`, `op_profile`), the older runtimes apps embed (`compat`,
run through `compat_probe` in a side venv), Core ML where it executes (`coreml_proof`), and the
hook's own steps replayed on a photo (`replay`)."""

__all__ = [
    "bench",
    "kernels",
    "memory_probe",
    "onnx_peer",
    "op_profile",
    "compat",
    "compat_probe",
    "coreml_proof",
    "replay",
]
