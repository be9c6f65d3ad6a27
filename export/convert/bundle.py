"""The bundle stage: a BundledProgram (.bpte) beside each .pte: the same program plus a few real-photo inputs
and their eager expected outputs, so a phone test can check the very file with ExecuTorch's
bundled verification. Verified here on the host when the runtime has the backend."""

from __future__ import annotations

from pathlib import Path

import torch

from export.errors import GateError

BUNDLED_CASES = 2  # why: two real photos prove the file on a device; each adds an input+output tensor


def write_bundle(pte: Path, target: Path, cases: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
    from executorch.devtools.bundled_program.config import MethodTestCase, MethodTestSuite
    from executorch.devtools.bundled_program.core import BundledProgram
    from executorch.devtools.bundled_program.serialize import serialize_from_bundled_program_to_flatbuffer

    suite = MethodTestSuite(
        method_name="forward",
        test_cases=[MethodTestCase(inputs=[x], expected_outputs=[y]) for x, y in cases],
    )
    data = serialize_from_bundled_program_to_flatbuffer(BundledProgram(None, [suite], pte_file_path=str(pte)))
    with open(target, "wb") as f:
        f.write(data)


def verify_bundle(path: Path, n_cases: int, atol: float, rtol: float, artifact: str) -> None:
    """ExecuTorch's own bundled verification: load each bundled input, run, compare with the
    bundled expected output (|got - want| <= atol + rtol*|want|)."""
    from executorch.extension.pybindings.portable_lib import _load_bundled_program_from_buffer

    from export.threads import executorch_threads

    executorch_threads()
    bundle = _load_bundled_program_from_buffer(path.read_bytes())
    for i in range(n_cases):
        try:  # loads bundled input i, runs the method, compares with bundled expected output i
            bundle.verify_result_with_bundled_expected_output("forward", i, rtol, atol)
        except RuntimeError as e:
            raise GateError(
                f"bundled verification: {artifact}: case {i} differs from its expected output "
                f"beyond atol={atol:g} rtol={rtol:g} ({str(e).splitlines()[0][:200]})"
            ) from None
