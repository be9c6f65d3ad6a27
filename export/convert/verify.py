"""The verify stage: read the serialized file back from disk and prove it faithful to eager PyTorch.

- The program's static I/O is checked against the hook contract (input [1,3,H,W] float32,
  output 0 float32 [1,C,H,W]) and its delegates against the variant's backend.
- When the ExecuTorch runtime has the backend registered, the file is executed on real photos
  (the app's preprocessing) and seeded random inputs and compared with eager: mode ``executed``.
- Otherwise (Core ML on Linux) the file cannot run here:
  - fp16: an estimate, mode ``emulated``: the exported graph with weights, input and every op's
    output rounded to fp16 (fp32 arithmetic inside each op) against fp32. It measures fp16
    storage drift, not Core ML's kernels, and says so.
  - fp32: mode ``not executed``: only the static checks ran; no parity numbers are claimed.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import torch

from export.config import BACKENDS, ModelConfig, Tolerances, Variant
from export.convert.pte import delegate_ids
from export.errors import GateError
from export.host import runs_here
from export.metrics import compare, worst_of
from export.records import ParityRecord, RneSchemaRecord, check
from export.threads import runtime

_DTYPE_FLOAT = 6  # executorch ScalarType::Float
STATIC_CHECKS = ("delegate ids", "input/output shapes and dtypes")


def gate_bounds(tol: Tolerances) -> dict[str, tuple[Literal["<=", ">="], float]]:
    return {
        "rel_max_abs": ("<=", tol.max_rel_err),
        "snr_db": (">=", tol.min_snr_db),
        "cosine": (">=", tol.min_cosine),
        "decisive_agreement": (">=", tol.min_decisive_agreement),
    }


def check_program(path: Path, cfg: ModelConfig, variant: Variant) -> None:
    """Static checks on the file: delegate ids and the I/O the hook reads."""
    name = path.name
    backend_id = BACKENDS.get(variant.backend).runtime_id
    ids = delegate_ids(path.read_bytes(), name)
    if not ids or any(i != backend_id for i in ids):
        raise GateError(f"delegation gate: {name}: delegates in file are {ids or 'none'}, expected only {backend_id}")
    meta = runtime().load_program(path).metadata("forward")
    want_in = (1, 3, variant.input.height, variant.input.width)
    want_out = (1, cfg.model.num_classes, variant.input.height, variant.input.width)
    if meta.num_inputs() != 1:
        raise GateError(f"contract: {name}: {meta.num_inputs()} inputs, the hook feeds exactly 1")
    tin = meta.input_tensor_meta(0)
    if tuple(tin.sizes()) != want_in or int(tin.dtype()) != _DTYPE_FLOAT:
        raise GateError(
            f"contract: {name}: input 0 is {tuple(tin.sizes())} dtype {tin.dtype()}, expected {want_in} float32"
        )
    tout = meta.output_tensor_meta(0)
    if tuple(tout.sizes()) != want_out or int(tout.dtype()) != _DTYPE_FLOAT:
        raise GateError(
            f"contract: {name}: output 0 is {tuple(tout.sizes())} dtype {tout.dtype()}, expected {want_out} float32"
        )


def executed(path: Path):
    """x -> the file's output 0, run by this host's ExecuTorch runtime."""
    method = runtime().load_program(path).load_method("forward")
    # clone: the output lives in the program's planned memory, overwritten by the next execute
    # contiguous: the runtime reads the raw buffer as NCHW whatever the tensor's strides say
    return lambda x: method.execute([x.contiguous()])[0].clone()


def _round_fp16(t):
    """A float32 tensor rounded to the nearest fp16 value (and back): fp16 storage between ops."""
    if isinstance(t, torch.Tensor) and t.dtype == torch.float32:
        return t.to(torch.float16).to(torch.float32)
    return t


FP16_MAX = 65504.0


def fp16_overflow(program: torch.export.ExportedProgram, x: torch.Tensor) -> str:
    """Where fp32 activations first leave fp16's range (graph order), and by how much."""

    class Recorder(torch.fx.Interpreter):
        found: tuple | None = None

        def run_node(self, n):
            out = super().run_node(n)
            if self.found is None and isinstance(out, torch.Tensor) and out.is_floating_point():
                peak = float(out.detach().abs().max()) if out.numel() else 0.0
                if peak > FP16_MAX:
                    stack = n.meta.get("nn_module_stack") or {}
                    where = list(stack.values())[-1][0] if stack else n.name
                    self.found = (where, n.name, peak)
            return out

    rec = Recorder(program.module())
    with torch.no_grad():
        rec.run(x)
    if rec.found is None:
        return "no fp32 activation exceeds fp16's range (65504): the NaN comes from fp16 rounding inside an op"
    where, node, peak = rec.found
    return (
        f"activations overflow fp16 first at {where} ({node}): max |x| = {peak:.4g}, "
        f"{peak / FP16_MAX:.3g}x fp16's largest value 65504; these weights need an fp32 Core ML variant"
    )


def fp16_emulation(program: torch.export.ExportedProgram) -> torch.nn.Module:
    """The exported graph with weights, input and every op's float output rounded to fp16. fp32
    arithmetic inside each op: seconds on a CPU where eager fp16 takes minutes."""
    gm = copy.deepcopy(program.module())
    with torch.no_grad():
        for t in [*gm.parameters(), *gm.buffers()]:
            if t.dtype == torch.float32:
                t.copy_(_round_fp16(t))
    graph = gm.graph
    for node in list(graph.nodes):
        if node.op not in ("placeholder", "call_function") or node.target is _round_fp16:
            continue
        val = node.meta.get("val")
        if not (isinstance(val, torch.Tensor) and val.dtype == torch.float32):
            continue
        with graph.inserting_after(node):
            rounded = graph.call_function(_round_fp16, (node,))
        node.replace_all_uses_with(rounded, delete_user_cb=lambda user, r=rounded: user is not r)
    gm.recompile()
    return gm


def verify(
    path: Path,
    eager: Callable[[torch.Tensor], torch.Tensor],
    program: torch.export.ExportedProgram,
    cfg: ModelConfig,
    variant: Variant,
    artifact: str,
    inputs: dict[str, torch.Tensor],
    runner=None,
    rne_check: bool = True,
) -> tuple[ParityRecord, RneSchemaRecord | None]:
    """The static checks (delegates, the I/O the hook reads, and with `rne_check` RNE's own
    load-time check, export/rne/rne_schema.py), then parity on `inputs` (export.convert.feeds).
    `eager` is the parity reference (int8: the quantized model); `program` what was lowered.
    `runner` (x -> output): how the file is executed when not by this host's runtime (tests).
    -> (the parity record, RNE's check's record: None when no schema-checking line serves the contract)."""
    from export.rne.rne_schema import gate

    check_program(path, cfg, variant)
    tol = variant.tolerances
    gates = gate_bounds(tol)
    bounds: dict[str, tuple[Literal["<=", ">="], float] | float] = {**gates, "near_tie": tol.near_tie}
    runtime_id = BACKENDS.get(variant.backend).runtime_id
    runnable = runner is not None or runs_here(runtime_id)
    schema = gate(path, variant.contract, variant.min_rne, len(cfg.labels), artifact) if rne_check else None
    if runnable:
        mode: Literal["executed", "emulated"] = "executed"
        why: str | None = None
        run = runner or executed(path)
    elif variant.precision == "fp16":
        mode = "emulated"
        why = (
            f"{runtime_id} is not in this ExecuTorch runtime; estimate: the exported graph with "
            "weights, input and every op output rounded to fp16, vs fp32"
        )
        run = fp16_emulation(program)
    else:
        why = (
            f"{runtime_id} is not in this ExecuTorch runtime and {variant.precision} has no emulation "
            "worth the name; only the static checks ran. Run the export on macOS to execute it."
        )
        return ParityRecord("not executed", why, STATIC_CHECKS, (), bounds, None, {}), schema
    with torch.no_grad():
        per_input = {k: compare(eager(x), run(x), tol.near_tie) for k, x in inputs.items()}
    worst = worst_of(list(per_input.values()))
    if variant.precision == "fp16" and not math.isfinite(worst.snr_db):
        bad = next(k for k, m in per_input.items() if not math.isfinite(m.snr_db))
        raise GateError(
            f"parity gate ({mode}): {artifact}: fp16 output is not finite on {bad}: {fp16_overflow(program, inputs[bad])}"
        )
    failed = check(worst.as_dict(), gates)
    if failed:
        raise GateError(f"parity gate ({mode}): {artifact}: " + "; ".join(failed))
    return ParityRecord(mode, why, STATIC_CHECKS, tuple(inputs), bounds, worst, per_input), schema
