"""Step 7: read the serialized file back from disk and prove it faithful to eager PyTorch.

- The program's static I/O is checked against the hook contract (input [1,3,H,W] float32,
  output 0 float32 [1,C,H,W]) and its delegates against the variant's backend.
- When the ExecuTorch runtime has the backend registered, the file is executed on real photos
  and seeded random inputs and compared with eager: mode ``executed``.
- Otherwise (Core ML on Linux) the file cannot run here. The parity numbers are then an
  fp16-emulated estimate (eager model at the variant's precision vs float32), reported as
  ``emulated`` - never as executed.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from executorch.exir._serialize._program import deserialize_pte_binary
from executorch.runtime import Runtime

from .config import BACKENDS, CONTRACTS, ModelConfig, Tolerances, Variant
from .errors import GateError
from .images import load_photo, to_model_input

_DTYPE_FLOAT = 6  # executorch ScalarType::Float


@dataclass(frozen=True)
class Metrics:
    max_abs: float
    rmse: float
    snr_db: float
    cosine: float
    argmax_agreement: float


@dataclass(frozen=True)
class Parity:
    mode: str  # executed | emulated
    inputs: list[str]
    worst: Metrics
    per_input: dict[str, Metrics]

    def as_dict(self) -> dict:
        return {
            "mode": self.mode,
            "inputs": self.inputs,
            "worst": asdict(self.worst),
            "per_input": {k: asdict(v) for k, v in self.per_input.items()},
        }


def compare(ref: torch.Tensor, got: torch.Tensor) -> Metrics:
    ref = ref.detach().double()
    got = got.detach().double()
    err = got - ref
    noise = float(err.pow(2).sum())
    signal = float(ref.pow(2).sum())
    snr = math.inf if noise == 0 else 10 * math.log10(signal / noise) if signal > 0 else -math.inf
    cos = float(torch.nn.functional.cosine_similarity(ref.flatten(), got.flatten(), dim=0))
    agree = float((ref.argmax(1) == got.argmax(1)).double().mean())
    return Metrics(float(err.abs().max()), float(err.pow(2).mean().sqrt()), snr, cos, agree)


def worst_of(ms: list[Metrics]) -> Metrics:
    return Metrics(
        max(m.max_abs for m in ms), max(m.rmse for m in ms), min(m.snr_db for m in ms),
        min(m.cosine for m in ms), min(m.argmax_agreement for m in ms),
    )


def parity_gate(worst: Metrics, tol: Tolerances, artifact: str, mode: str) -> None:
    checks = [
        ("max_abs", worst.max_abs, tol.max_abs, "<="),
        ("rmse", worst.rmse, tol.rmse, "<="),
        ("snr_db", worst.snr_db, tol.min_snr_db, ">="),
        ("cosine", worst.cosine, tol.min_cosine, ">="),
        ("argmax_agreement", worst.argmax_agreement, tol.min_argmax_agreement, ">="),
    ]
    failed = [
        f"{name}={value:.6g} (bound {op} {bound:g})"
        for name, value, bound, op in checks
        if not (value <= bound if op == "<=" else value >= bound) or math.isnan(value)
    ]
    if failed:
        raise GateError(f"parity gate ({mode}): {artifact}: " + "; ".join(failed))


def feed(x: torch.Tensor, contract_name: str) -> torch.Tensor:
    """[0,1] RGB -> what the runtime feeds the graph under `contract_name`."""
    contract = CONTRACTS.get(contract_name)
    if contract.runtime_mean is None:
        return x
    mean = torch.tensor(contract.runtime_mean).view(1, 3, 1, 1)
    std = torch.tensor(contract.runtime_std).view(1, 3, 1, 1)
    return ((x - mean) / std).contiguous()


def photo_inputs(names, variant: Variant) -> dict[str, torch.Tensor]:
    h, w = variant.input.height, variant.input.width
    return {f"photo:{n}": feed(to_model_input(load_photo(n), h, w), variant.contract) for n in names}


def parity_inputs(cfg: ModelConfig, variant: Variant) -> dict[str, torch.Tensor]:
    """Real photos plus seeded uniform inputs, already in the contract's feed format."""
    inputs = photo_inputs(cfg.parity.images, variant)
    gen = torch.Generator().manual_seed(cfg.parity.seed)
    for i in range(cfg.parity.random_inputs):
        x = torch.rand(1, 3, variant.input.height, variant.input.width, generator=gen)
        inputs[f"random:{cfg.parity.seed}:{i}"] = feed(x, variant.contract)
    return inputs


def delegate_ids(pte_bytes: bytes) -> list[str]:
    pte = deserialize_pte_binary(pte_bytes)
    program = getattr(pte, "program", pte)
    return [d.id for plan in program.execution_plan for d in plan.delegates]


def check_program(path: Path, cfg: ModelConfig, variant: Variant) -> None:
    """Static checks on the file: delegate ids and the I/O the hook reads."""
    name = path.name
    backend_id = BACKENDS.get(variant.backend).runtime_id
    ids = delegate_ids(path.read_bytes())
    if not ids or any(i != backend_id for i in ids):
        raise GateError(f"delegation gate: {name}: delegates in file are {ids or 'none'}, expected only {backend_id}")
    meta = Runtime.get().load_program(path).metadata("forward")
    want_in = (1, 3, variant.input.height, variant.input.width)
    want_out = (1, cfg.model.num_classes, variant.input.height, variant.input.width)
    if meta.num_inputs() != 1:
        raise GateError(f"contract: {name}: {meta.num_inputs()} inputs, the hook feeds exactly 1")
    tin = meta.input_tensor_meta(0)
    if tuple(tin.sizes()) != want_in or int(tin.dtype()) != _DTYPE_FLOAT:
        raise GateError(f"contract: {name}: input 0 is {tuple(tin.sizes())} dtype {tin.dtype()}, expected {want_in} float32")
    tout = meta.output_tensor_meta(0)
    if tuple(tout.sizes()) != want_out or int(tout.dtype()) != _DTYPE_FLOAT:
        raise GateError(f"contract: {name}: output 0 is {tuple(tout.sizes())} dtype {tout.dtype()}, expected {want_out} float32")


def backend_available(variant: Variant) -> bool:
    return Runtime.get().backend_registry.is_available(BACKENDS.get(variant.backend).runtime_id)


def verify(path: Path, eager: torch.nn.Module, cfg: ModelConfig, variant: Variant, artifact: str) -> Parity:
    check_program(path, cfg, variant)
    inputs = parity_inputs(cfg, variant)
    with torch.no_grad():
        refs = {k: eager(x) for k, x in inputs.items()}
    if backend_available(variant):
        mode = "executed"
        method = Runtime.get().load_program(path).load_method("forward")
        # clone: the output lives in the program's planned memory, overwritten by the next execute
        # contiguous: the runtime reads the raw buffer as NCHW whatever the tensor's strides say
        outs = {k: method.execute([x.contiguous()])[0].clone() for k, x in inputs.items()}
    elif variant.precision in ("fp16", "fp32"):
        mode = "emulated"
        dtype = {"fp16": torch.float16, "fp32": torch.float32}[variant.precision]
        low = copy.deepcopy(eager).to(dtype)
        with torch.no_grad():
            outs = {k: low(x.to(dtype)).float() for k, x in inputs.items()}
    else:
        raise GateError(f"parity: {artifact}: no runtime for {variant.backend} here and no emulation for {variant.precision}")
    per_input = {k: compare(refs[k], outs[k]) for k in inputs}
    worst = worst_of(list(per_input.values()))
    parity_gate(worst, variant.tolerances, artifact, mode)
    return Parity(mode, list(inputs), worst, per_input)
