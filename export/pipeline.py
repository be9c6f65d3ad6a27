"""The export orchestrator: config + weights -> verified .pte files + manifest entries."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from .config import BACKENDS, CONTRACTS, ModelConfig, Variant
from .files import ensure_writable_dir, sha256_file, staged
from .lower import delegation_gate, delegation_of, export_program, lower, to_bytes
from .manifest import git_commit, tool_versions, write_entry
from .verify import verify
from .weights import LoadedModel, load_model
from .wrap import example_input, wrap


@dataclass
class Timer:
    label: str
    seconds: dict[str, float] = field(default_factory=dict)

    @contextlib.contextmanager
    def stage(self, step: int, name: str) -> Iterator[None]:
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


def build(cfg: ModelConfig, variant_names: list[str] | None, weights: str, out_dir: str | Path) -> list[Result]:
    """Export the named variants (all when None) of one model.

    1. check the request: variants exist, the output folder is writable (before any work)
    2. load the model and its weights (`default` | `random` | PATH; never a silent fallback)
    then, per variant, in `export_variant`:
    3. wrap (contract)  4. torch.export  5. lower + delegation gate  6. serialize to a temp file
    7. verify the file read back from disk (parity gate)  8. move into place + manifest entry
    """
    # 1. check the request
    variants = [cfg.variant(n) for n in variant_names] if variant_names else list(cfg.variants)
    out = ensure_writable_dir(out_dir)
    # 2. load
    timer = Timer(cfg.name)
    with timer.stage(2, "load weights"):
        loaded = load_model(cfg, weights)
    return [export_variant(cfg, v, loaded, out, timer.seconds["load weights"]) for v in variants]


def export_variant(cfg: ModelConfig, variant: Variant, loaded: LoadedModel, out: Path, load_s: float) -> Result:
    name = cfg.artifact_name(variant)
    timer = Timer(variant.name)
    # 3. wrap
    with timer.stage(3, "wrap"):
        module = wrap(loaded.module, cfg)
    # 4. torch.export
    with timer.stage(4, "torch.export"):
        program = export_program(module, example_input(cfg))
    # 5. lower + delegation gate
    with timer.stage(5, f"lower ({variant.backend})"):
        edge = lower(program, variant, seed=f"{cfg.variant_hash(variant)}|{loaded.identity}|{tool_versions()}")
        delegation = delegation_of(edge)
        delegation_gate(delegation, variant, name)
    # 6. serialize, 7. verify from disk; the temp file replaces `name` only when both succeed
    with staged(out / name) as tmp:
        with timer.stage(6, "serialize"):
            data = to_bytes(edge)
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        with timer.stage(7, "verify"):
            parity = verify(tmp, module, cfg, variant, name)
    # 8. manifest
    entry = manifest_entry(cfg, variant, loaded, out / name, delegation.as_dict(), parity.as_dict(),
                           {"load weights": load_s, **timer.seconds})
    write_entry(out, name, entry)
    return Result(name, out / name, entry)


def manifest_entry(cfg, variant, loaded, path: Path, delegation: dict, parity: dict, seconds: dict) -> dict:
    contract = CONTRACTS.get(cfg.contract)
    h, w = cfg.input.height, cfg.input.width
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
        "tolerances": variant.tolerances.__dict__,
        "delegation": delegation,
        "coreml": variant.coreml.__dict__ if variant.coreml else None,
        "export_seconds": round(sum(seconds.values()), 3),
        "stage_seconds": seconds,
        "versions": tool_versions(),
        "config": {"file": cfg.source.name, "path": str(cfg.source), "sha256": cfg.sha256, "variant_hash": cfg.variant_hash(variant)},
        "weights": {"kind": loaded.kind, "identity": loaded.identity},
        "git_commit": git_commit(),
        "exported_at": dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat(),
    }


def summary_table(results: list[Result]) -> str:
    rows = [("artifact", "MB", "delegated", "non-deleg", "parity", "argmax", "max_abs", "snr dB", "seconds")]
    for r in results:
        e = r.entry
        wst = e["parity"]["worst"]
        rows.append((
            r.artifact, f"{e['bytes'] / 1e6:.1f}", str(e["delegation"]["delegated_nodes"]),
            str(e["delegation"]["non_delegated_compute_nodes"]), e["parity"]["mode"],
            f"{wst['argmax_agreement'] * 100:.3f}%", f"{wst['max_abs']:.2e}", f"{wst['snr_db']:.1f}",
            f"{e['export_seconds']:.1f}",
        ))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in rows)
