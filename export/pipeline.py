"""The export orchestrator: config + weights -> verified .pte/.bpte files + manifest entries."""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Iterator

from .config import BACKENDS, CONTRACTS, ModelConfig, QuantizationRecipe, Variant
from .files import ensure_writable_dir, sha256_file, staged
from .lower import delegation_gate, delegation_of, export_program, lower, serialize
from .manifest import MANIFEST_NAME, git_commit, platform_id, read_manifest, tool_versions, write_entry
from .weights import LoadedModel, load_model, weights_identity


@dataclass
class Timer:
    label: str
    seconds: dict[str, float] = field(default_factory=dict)

    @contextlib.contextmanager
    def stage(self, step: str, name: str) -> Iterator[None]:
        print(f"[{self.label}] {step}. {name} ...", file=sys.stderr, flush=True)
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = round(time.perf_counter() - start, 3)
            print(f"[{self.label}] {step}. {name} {self.seconds[name]:.1f} s", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Result:
    artifact: str
    path: Path
    entry: dict
    up_to_date: bool = False


@dataclass
class Weights:
    """`--weights` resolved to an identity up front; the model itself is built on first need."""

    cfg: ModelConfig
    spec: str
    kind: str
    identity: str
    _loaded: LoadedModel | None = None
    load_seconds: float = 0.0

    def load(self) -> LoadedModel:
        if self._loaded is None:
            with Timer(self.cfg.name).stage("2", "load weights"):
                start = time.perf_counter()
                self._loaded = load_model(self.cfg, self.spec)
                self.load_seconds = round(time.perf_counter() - start, 3)
        return self._loaded


def tool_source_hash() -> str:
    """This tool's own code: a change to it re-exports, as a change of config or weights does."""
    h = hashlib.sha256()
    for p in sorted(Path(__file__).resolve().parent.glob("*.py")):
        h.update(p.name.encode() + b"\0" + p.read_bytes())
    return h.hexdigest()


def calibration_hash(cfg: ModelConfig) -> str | None:
    """A calibration folder's contents (names and bytes), not just its path: new photos re-export."""
    cal = cfg.calibration
    if cal is None or not cal.folder or not Path(cal.folder).is_dir():
        return None
    h = hashlib.sha256()
    for p in sorted(Path(cal.folder).iterdir()):
        if p.is_file():
            h.update(p.name.encode() + b"\0" + sha256_file(p).encode())
    return h.hexdigest()


def cache_key(cfg: ModelConfig, variant: Variant, identity: str) -> str:
    """Everything that changes a variant's bytes or verdict: config, weights, tool versions (incl.
    torchao, scikit-image's photos, OpenCV's resize), this tool's code, calibration folder contents
    and the platform (an `emulated` Core ML entry made on Linux executes on macOS)."""
    data = [cfg.variant_hash(variant), identity, tool_versions(), tool_source_hash(),
            calibration_hash(cfg) if variant.precision == "int8" else None, platform_id()]
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def up_to_date(out: Path, name: str, key: str) -> dict | None:
    """The manifest entry when it was made from the same inputs and its files are intact."""
    path = out / MANIFEST_NAME
    if not path.is_file():
        return None
    entry = read_manifest(path)["artifacts"].get(name)
    if not entry or entry.get("cache_key") != key:
        return None
    files = [(entry["path"], entry["sha256"])] + ([(entry["bundle"]["path"], entry["bundle"]["sha256"])] if entry.get("bundle") else [])
    for fname, sha in files:
        f = out / fname
        if not f.is_file() or sha256_file(f) != sha:
            return None
    return entry


def build(cfg: ModelConfig, variant_names: list[str] | None, weights: str, out_dir: str | Path,
          force: bool = False) -> list[Result]:
    """Export the named variants (all when None) of one model.

    1. check the request: variants exist, the output folder is writable (before any work)
    2. resolve the weights (`default` | `random` | PATH; never a silent fallback); skip variants
       whose config, weights and tool versions are unchanged since their manifest entry
    then, per variant, in `export_variant`:
    3. wrap (contract)  4. torch.export  4b. quantize (int8)  5. lower + delegation gate
    6. serialize to a temp file  7. verify it read back from disk (parity; int8 accuracy)
    7b. bundle (.bpte) and verify  8. move into place + manifest entry
    """
    # 1. check the request
    variants = [cfg.variant(n) for n in variant_names] if variant_names else list(cfg.variants)
    out = ensure_writable_dir(out_dir)
    # 2. resolve the weights; skip what is up to date
    kind, identity = weights_identity(cfg, weights)
    w = Weights(cfg, weights, kind, identity)
    results = []
    for v in variants:
        name, key = cfg.artifact_name(v), cache_key(cfg, v, identity)
        entry = None if force else up_to_date(out, name, key)
        if entry is not None:
            print(f"[{v.name}] up to date: {name} (config, weights and tools unchanged)", file=sys.stderr, flush=True)
            results.append(Result(name, out / name, entry, up_to_date=True))
            continue
        results.append(export_variant(cfg, v, w, out, key))
    return results


def export_variant(cfg: ModelConfig, variant: Variant, weights: Weights, out: Path, key: str) -> Result:
    import torch

    from .bundle import BUNDLED_CASES, verify_bundle, write_bundle
    from .quantize import accuracy_gate, calibration_set, quantize
    from .verify import backend_available, verify
    from .wrap import example_input, wrap

    name = cfg.artifact_name(variant)
    bundle_name = name[: -len(".pte")] + ".bpte"
    loaded = weights.load()
    timer = Timer(variant.name)
    # 3. wrap
    with timer.stage("3", "wrap"):
        module = wrap(loaded.module, cfg, variant)
    # 4. torch.export
    with timer.stage("4", "torch.export"):
        program = export_program(module, example_input(variant))
    # 4b. quantize: the file's parity reference becomes the quantized eager model
    reference, calibration, samples = module, None, 0
    if variant.precision == "int8":
        with timer.stage("4b", "quantize (int8)"):
            calibration = calibration_set(cfg)
            reference, program, samples = quantize(program, cfg, variant, calibration)
    # 5. lower + delegation gate
    with timer.stage("5", f"lower ({variant.backend})"):
        edge = lower(program, variant, seed=f"{cfg.variant_hash(variant)}|{weights.identity}|{tool_versions()}")
        delegation = delegation_of(edge)
        delegation_gate(delegation, variant, name)
    runnable = backend_available(variant)
    accuracy = bundle = None
    # 6. serialize, 7. verify from disk, 7b. bundle; files replace the old ones only if all pass
    with staged(out / name) as tmp:
        with timer.stage("6", "serialize"):
            serialize(edge, tmp)
        with timer.stage("7", "verify"):
            parity = verify(tmp, reference, program, cfg, variant, name)
            if variant.precision == "int8":
                accuracy = accuracy_gate(tmp, module, cfg, variant, weights.kind, name)
                accuracy["calibration"] = calibration
                accuracy["calibration_samples"] = samples
                accuracy["recipe"] = asdict(variant.quantization or QuantizationRecipe())
                accuracy["latency_ratio_to_fp32"] = _int8_latency(tmp, cfg, variant, out)
        with staged(out / bundle_name) as tmp_b, timer.stage("7b", "bundle (.bpte)"):
            from .verify import variant_photo_inputs

            with torch.no_grad():
                photos = list(variant_photo_inputs(cfg.parity.images, variant).values())[:BUNDLED_CASES]
                cases = [(x, reference(x)) for x in photos]
            # ExecuTorch's check is absolute (|got - want| <= atol): the parity bound, scaled by
            # the expected logits' range, means the same for any weights
            atol = variant.tolerances.max_rel_err * max(float(y.max() - y.min()) for _, y in cases)
            write_bundle(tmp, tmp_b, cases)
            if runnable:
                verify_bundle(tmp_b, len(cases), atol=atol, rtol=0.0, artifact=bundle_name)
            bundle = {"path": bundle_name, "cases": len(cases), "atol": atol, "rtol": 0.0,
                      "verified": "executed" if runnable else
                      f"not run here: {BACKENDS.get(variant.backend).runtime_id} is not in this ExecuTorch runtime"}
        bundle["sha256"] = sha256_file(out / bundle_name)
        bundle["bytes"] = (out / bundle_name).stat().st_size
    # 8. manifest
    entry = manifest_entry(cfg, variant, weights, out / name, delegation.as_dict(), parity.as_dict(),
                           {"load weights": weights.load_seconds, **timer.seconds})
    entry.update(cache_key=key, accuracy=accuracy, bundle=bundle)
    write_entry(out, name, entry)
    return Result(name, out / name, entry)


def _int8_latency(tmp: Path, cfg: ModelConfig, variant: Variant, out: Path) -> dict:
    """int8/fp32 latency when the fp32 sibling (same backend, input, contract) is in the folder."""
    from .bench import latency_ratio
    from .wrap import example_input

    sibling = out / cfg.artifact_name(replace(variant, precision="fp32"))
    if not sibling.is_file():
        return {"ratio": None, "why": f"{sibling.name} not built in {out}; export the fp32 variant first"}
    return latency_ratio(tmp, sibling, example_input(variant))


def manifest_entry(cfg, variant, weights: Weights, path: Path, delegation: dict, parity: dict, seconds: dict) -> dict:
    contract = CONTRACTS.get(variant.contract)
    h, w = variant.input.height, variant.input.width
    return {
        "model": cfg.name,
        "variant": variant.name,
        "path": path.name,
        "sha256": sha256_file(path),
        "bytes": path.stat().st_size,
        "backend": variant.backend,
        "delegate": BACKENDS.get(variant.backend).runtime_id,
        "precision": variant.precision,
        "contract": contract.as_dict(),
        "input": {
            "shape": [1, 3, h, w],
            "dtype": "float32",
            "layout": "NCHW RGB",
            "range": [0.0, 1.0] if contract.normalize_in_graph else "ImageNet-normalized",
        },
        "output": {"index": 0, "shape": [1, cfg.model.num_classes, h, w], "dtype": "float32", "kind": "logits"},
        "labels": list(cfg.labels),
        "parity": parity,
        # fp16 files: their parity against eager fp32 *is* the fp16 drift; said explicitly here
        "fp16_drift_vs_fp32": {"reference": "eager fp32", "mode": parity["mode"], **parity["worst"]}
        if variant.precision == "fp16" and parity["worst"] else None,
        "tolerances": asdict(variant.tolerances),
        "delegation": delegation,
        "coreml": asdict(variant.coreml) if variant.coreml else None,
        "export_seconds": round(sum(seconds.values()), 3),
        "stage_seconds": seconds,
        "versions": tool_versions(),
        "platform": platform_id(),
        "config": {"file": cfg.source.name, "path": str(cfg.source), "sha256": cfg.sha256,
                   "variant_hash": cfg.variant_hash(variant)},
        "weights": {"kind": weights.kind, "identity": weights.identity},
        "git_commit": git_commit(),
        "exported_at": dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat(),
    }
