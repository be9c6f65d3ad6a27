"""Steps 3-5: torch.export, lower to a backend, delegation gate, serialize to bytes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from executorch.devtools.backend_debug import get_delegation_info
from executorch.exir import EdgeProgramManager, to_edge_transform_and_lower

from .config import Variant
from .errors import ExportError, GateError
from .registry import Registry

# Graph nodes that move data between delegate calls but compute nothing.
NON_COMPUTE_OPS = frozenset({"getitem"})


def _xnnpack_partitioners(variant: Variant) -> list:
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner

    return [XnnpackPartitioner()]


def _coreml_partitioners(variant: Variant) -> list:
    # coremltools is imported only here: it is heavy, prints proxy warnings on Linux, and only
    # Core ML variants need it.
    import coremltools as ct
    from executorch.backends.apple.coreml.compiler import CoreMLBackend
    from executorch.backends.apple.coreml.partition import CoreMLPartitioner

    opts = variant.coreml
    target_name = opts.deployment_target if opts else "iOS17"
    units_name = opts.compute_units if opts else "ALL"
    try:
        target = ct.target[target_name]
    except KeyError:
        raise ExportError(
            f"unknown coreml.deployment_target {target_name!r}; valid: {', '.join(ct.target.__members__)}"
        ) from None
    try:
        units = ct.ComputeUnit[units_name]
    except KeyError:
        raise ExportError(
            f"unknown coreml.compute_units {units_name!r}; valid: {', '.join(ct.ComputeUnit.__members__)}"
        ) from None
    precision = {"fp16": ct.precision.FLOAT16, "fp32": ct.precision.FLOAT32}[variant.precision]
    specs = CoreMLBackend.generate_compile_specs(
        compute_unit=units, minimum_deployment_target=target, compute_precision=precision
    )
    return [CoreMLPartitioner(compile_specs=specs)]


PARTITIONERS: Registry[Callable[[Variant], list]] = Registry("backend")
PARTITIONERS.register("xnnpack", _xnnpack_partitioners)
PARTITIONERS.register("coreml", _coreml_partitioners)


@dataclass(frozen=True)
class Delegation:
    delegated: int
    non_delegated: int  # compute ops only (getitem excluded)
    subgraphs: int
    non_delegated_ops: dict[str, int]

    def as_dict(self) -> dict:
        return {
            "delegated_nodes": self.delegated,
            "non_delegated_compute_nodes": self.non_delegated,
            "delegated_subgraphs": self.subgraphs,
            "non_delegated_ops": self.non_delegated_ops,
        }


def export_program(module: torch.nn.Module, example: torch.Tensor) -> torch.export.ExportedProgram:
    with torch.no_grad():
        return torch.export.export(module, (example,), strict=False)


def lower(program: torch.export.ExportedProgram, variant: Variant) -> EdgeProgramManager:
    return to_edge_transform_and_lower(program, partitioner=PARTITIONERS.get(variant.backend)(variant))


def delegation_of(edge: EdgeProgramManager) -> Delegation:
    """ExecuTorch's own delegation count, with the non-delegated compute ops named."""
    gm = edge.exported_program().graph_module
    info = get_delegation_info(gm)
    leftover: dict[str, int] = {}
    for node in gm.graph.nodes:
        if node.op != "call_function":
            continue
        op = getattr(node.target, "__name__", str(node.target))  # edge ops: "aten.cumsum.default"
        if op in NON_COMPUTE_OPS or op == "executorch_call_delegate":
            continue
        leftover[op] = leftover.get(op, 0) + 1
    ignored = sum(b.non_delegated for t, b in info.delegation_by_operator.items() if t in NON_COMPUTE_OPS)
    non_delegated = info.num_non_delegated_nodes - ignored
    if non_delegated != sum(leftover.values()):  # two views of one graph must agree
        raise AssertionError(f"delegation count mismatch: {non_delegated} vs {leftover}")
    return Delegation(info.num_delegated_nodes, non_delegated, info.num_delegated_subgraphs, dict(sorted(leftover.items())))


def delegation_gate(d: Delegation, variant: Variant, artifact: str) -> None:
    blocked = {op: n for op, n in d.non_delegated_ops.items() if op not in variant.allow_non_delegated}
    if blocked:
        ops = ", ".join(f"{op} x{n}" for op, n in blocked.items())
        raise GateError(
            f"delegation gate: {artifact}: {sum(blocked.values())} compute op(s) not delegated to "
            f"{variant.backend}: {ops}. They would run on portable CPU kernels. Allow them explicitly with "
            f"allow_non_delegated: [{', '.join(blocked)}] in the variant, or change the model."
        )
    if d.subgraphs == 0:
        raise GateError(f"delegation gate: {artifact}: nothing was delegated to {variant.backend}")


def to_bytes(edge: EdgeProgramManager) -> bytes:
    return edge.to_executorch().buffer
