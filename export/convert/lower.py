"""The export, lower and serialize stages: torch.export, lowering to a backend with the delegation
gate, and the program's bytes to disk."""

from __future__ import annotations

import contextlib
import copy
import itertools
import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from executorch.devtools.backend_debug import get_delegation_info
from executorch.exir import EdgeProgramManager, to_edge_transform_and_lower

from export.config import Variant
from export.errors import ExportError, GateError
from export.records import CoreMLOptions, DelegationRecord
from export.registry import Registry

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

    opts = variant.coreml or CoreMLOptions()
    target_name, units_name = opts.deployment_target, opts.compute_units
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
    return [CoreMLPartitioner(compile_specs=specs, lower_full_graph=opts.lower_full_graph)]


PARTITIONERS: Registry[Callable[[Variant], list]] = Registry("backend")
PARTITIONERS.register("xnnpack", _xnnpack_partitioners)
PARTITIONERS.register("coreml", _coreml_partitioners)


def export_program(module: torch.nn.Module, example: torch.Tensor) -> torch.export.ExportedProgram:
    with torch.no_grad():
        return torch.export.export(module, (example,), strict=False)


def export_for(
    module: torch.nn.Module, example: torch.Tensor, variant: Variant
) -> tuple[torch.export.ExportedProgram, list[str]]:
    """torch.export for the variant's backend: for XNNPACK, integer-scale nearest upsamples traced as
    transposed convolutions (export.convert.rewrite). -> (program, the rewrites applied, as graph_rewrites lines)."""
    if variant.backend != "xnnpack":
        return export_program(module, example), []
    from export.convert.rewrite import FORM_DOCS, NearestAsTransposedConv

    with NearestAsTransposedConv() as nearest:
        program = export_program(module, example)
        if nearest.missing:  # the model has such upsamples: with their kernels made, trace it again
            nearest.make_kernels()
            program = export_program(module, example)
    return program, [f"{nearest.count} x nearest: {FORM_DOCS['nearest']}"] if nearest.count else []


def lower(program: torch.export.ExportedProgram, variant: Variant, seed: str) -> EdgeProgramManager:
    """`seed` identifies everything that determines the bytes (config, weights, tool versions)."""
    from export.convert.rewrite import drop_noop_expands, has_batched_matmul

    partitioners = PARTITIONERS.get(variant.backend)(variant)
    ids = _deterministic_coreml_ids(seed) if variant.backend == "coreml" else contextlib.nullcontext()
    # only where a batched matmul left same-shape expands: every other program lowers exactly as before
    passes = [drop_noop_expands] if variant.backend == "xnnpack" and has_batched_matmul(program) else None
    with ids, shared_provenance():
        return to_edge_transform_and_lower(program, transform_passes=passes, partitioner=partitioners)


# what torch.fx.traceback.NodeSource.__init__ does that shared_provenance stands in for
_PROVENANCE_DEEPCOPY = 'copy.deepcopy(node.meta["from_node"])'


@contextlib.contextmanager
def shared_provenance() -> Iterator[None]:
    """torch.fx records where each node came from (`meta["from_node"]`, NodeSource): every time a pass
    re-creates a node it deep-copies the node's whole chain of sources, which grows by one per pass,
    so lowering's dozens of passes copy ever longer chains (41 of 207 s of SegFormer b0's int8
    lowering under cProfile). A source is never changed once made, so a new list of the same sources
    is the same record: same files, byte for byte (test_lower_shares_provenance). Only while
    NodeSource still deep-copies as measured (a later torch may not)."""
    import inspect

    from torch.fx import traceback as fx_traceback

    if _PROVENANCE_DEEPCOPY not in inspect.getsource(fx_traceback.NodeSource.__init__):
        yield
        return

    class _SharedSources:  # stands in for the `copy` module inside torch.fx.traceback
        copy = staticmethod(copy.copy)

        @staticmethod
        def deepcopy(x, memo=None):
            if isinstance(x, list) and all(isinstance(s, fx_traceback.NodeSource) for s in x):
                return list(x)
            return copy.deepcopy(x, memo)

    original = fx_traceback.copy
    fx_traceback.copy = _SharedSources  # type: ignore[assignment]
    try:
        yield
    finally:
        fx_traceback.copy = original


@contextlib.contextmanager
def _deterministic_coreml_ids(seed: str) -> Iterator[None]:
    """Core ML lowering writes random UUIDs into the .pte (the model identifier and the mlpackage's
    Manifest.json item ids), so two lowerings of one model differ byte for byte. Derive them from
    `seed` instead: same inputs, same bytes. The identifier is also the on-device compiled-model
    cache key, and it still changes whenever config, weights or tool versions do."""
    import coremltools as ct
    from executorch.backends.apple.coreml.compiler import coreml_preprocess

    counter = itertools.count()

    class _SeededUUID:  # stands in for the `uuid` module inside coreml_preprocess
        UUID = uuid.UUID

        @staticmethod
        def uuid4() -> uuid.UUID:
            return uuid.uuid5(uuid.NAMESPACE_OID, f"{seed}:identifier:{next(counter)}")

    original_save = ct.models.MLModel.save

    def save(self, save_path: str) -> None:
        original_save(self, save_path)
        manifest = Path(save_path) / "Manifest.json"
        if manifest.is_file():
            _normalize_package_manifest(manifest, seed)
            for spec_file in Path(save_path).glob("Data/*/model.mlmodel"):
                _normalize_spec(spec_file, ct.proto.Model_pb2.Model)

    original_uuid = coreml_preprocess.uuid
    coreml_preprocess.uuid, ct.models.MLModel.save = _SeededUUID, save
    try:
        yield
    finally:
        coreml_preprocess.uuid, ct.models.MLModel.save = original_uuid, original_save


def _normalize_spec(path: Path, model_proto: type) -> None:
    """Drop the conversion date from the spec metadata and serialize its maps in sorted order."""
    spec = model_proto()
    spec.ParseFromString(path.read_bytes())
    spec.description.metadata.userDefined.pop("com.github.apple.coremltools.conversion_date", None)
    path.write_bytes(spec.SerializeToString(deterministic=True))


def _normalize_package_manifest(path: Path, seed: str) -> None:
    """Replace an mlpackage's random item ids by ids derived from the item paths, keys sorted."""
    data = json.loads(path.read_text())
    entries = data.get("itemInfoEntries", {})
    new_ids = {old: str(uuid.uuid5(uuid.NAMESPACE_OID, f"{seed}:{item.get('path')}")) for old, item in entries.items()}
    data["itemInfoEntries"] = {new_ids[old]: item for old, item in entries.items()}
    if data.get("rootModelIdentifier") in new_ids:
        data["rootModelIdentifier"] = new_ids[data["rootModelIdentifier"]]
    path.write_text(json.dumps(data, indent=4, sort_keys=True))


def delegation_of(edge: EdgeProgramManager) -> DelegationRecord:
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
    return DelegationRecord(
        info.num_delegated_nodes, non_delegated, info.num_delegated_subgraphs, dict(sorted(leftover.items()))
    )


def delegation_gate(d: DelegationRecord, variant: Variant, artifact: str) -> None:
    blocked = {op: n for op, n in d.non_delegated_ops.items() if op not in variant.allow_non_delegated}
    if blocked:
        ops = ", ".join(f"{op} x{n}" for op, n in blocked.items())
        raise GateError(
            f"delegation gate: {artifact}: {sum(blocked.values())} compute op(s) not delegated to "
            f"{variant.backend}: {ops}. They would run on portable CPU kernels. Allow them explicitly with "
            f"allow_non_delegated: [{', '.join(blocked)}] in the variant, or change the model."
        )
    if d.delegated_subgraphs == 0:
        raise GateError(f"delegation gate: {artifact}: nothing was delegated to {variant.backend}")


def to_bytes(edge: EdgeProgramManager) -> bytes:
    return edge.to_executorch().buffer


def serialize(edge: EdgeProgramManager, path: Path) -> None:
    """The serialize stage: the program's bytes to `path` (a staged temp file), flushed to disk."""
    import os

    with open(path, "wb") as f:
        f.write(to_bytes(edge))
        f.flush()
        os.fsync(f.fileno())
