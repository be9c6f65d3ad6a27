"""`export verify-coreml`: a manifest's Core ML files executed where Core ML runs. On Linux they get
an fp16 estimate (emulated) or only static checks; a macOS host whose ExecuTorch runtime registers
CoreMLBackend (the macOS arm64 `executorch` wheel's pybindings link libexecutorch_backend_coreml)
runs them: the release's macOS job runs this, and publish refuses Core ML files without it.

1. refuse a host whose ExecuTorch runtime has no CoreMLBackend: one line, nothing changed
2. per Core ML artifact: the file checked against its manifest, its config (sha-checked) and weights
   (as `bench` finds them), the eager model under the file's contract
3. parity executed: the file read from disk vs eager, on the same photos and seeded inputs as the
   export's gates, with the variant's bounds (a failure is a gate failure, exit 3)
4. the .bpte's bundled verification by the runtime
5. the manifest entry rewritten (parity mode executed, on which host and compute units; the bundle
   verified); the Linux fp16 estimate stays in the card's history as the cross-check
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from export.errors import ExportError, GateError
from export.host import host_description, runs_here
from export.records import DriftRecord, Entry
from export.store.manifest import checked_files, read_manifest, write_entry

CORE_ML = "CoreMLBackend"


def verify_coreml(
    manifest_path: Path,
    weights: str | None,
    config: Path | None,
    config_dir: Path,
    execute: Callable[[Path], Callable] | None = None,
    check_bundle: Callable[[Path, int, float, str], None] | None = None,
) -> list[str]:
    """Proves every Core ML file of the manifest; returns their names. `execute` / `check_bundle`:
    how a file is run and its bundle checked (default: this host's runtime; tests inject them)."""

    manifest = read_manifest(manifest_path)
    folder = manifest_path.parent
    names = [n for n, e in manifest.artifacts.items() if e.delegate == CORE_ML]
    if not names:
        raise ExportError(f"{manifest_path} lists no Core ML file; nothing to verify")
    # 1.
    if execute is None and not runs_here(CORE_ML):
        raise GateError(
            f"verify-coreml: {CORE_ML} is not in this host's ExecuTorch runtime ({host_description()}): Core ML "
            "files execute only on macOS (the release's macOS job runs this command); nothing was changed"
        )
    host = host_description()
    proven = []
    for name in names:
        entry = manifest.artifacts[name]
        print(f"[{name}] executing on {host} ...", file=sys.stderr, flush=True)
        write_entry(
            folder, name, prove_one(name, entry, folder, weights, config, config_dir, host, execute, check_bundle)
        )
        proven.append(name)
    return proven


def prove_one(
    name: str,
    entry: Entry,
    folder: Path,
    weights: str | None,
    config: Path | None,
    config_dir: Path,
    host: str,
    execute: Callable[[Path], Callable] | None,
    check_bundle: Callable[[Path, int, float, str], None] | None,
) -> Entry:
    """Steps 2-4 for one file; the new entry (nothing written when a gate fails)."""
    from export.checks.bench import config_for, weights_for
    from export.convert.bundle import verify_bundle
    from export.convert.feeds import parity_inputs
    from export.convert.lower import export_program
    from export.convert.verify import executed, verify
    from export.convert.wrap import example_input, wrap
    from export.sources import load_model

    pte, bpte = checked_files(folder, name, entry)  # 2.
    cfg = config_for(entry, config_dir, config)
    variant = cfg.variant(entry.variant)
    module = wrap(load_model(cfg, weights_for(entry, weights)).module, cfg, variant)
    program = export_program(module, example_input(variant))
    run = (execute or executed)(pte)
    parity, _ = verify(
        pte, module, program, cfg, variant, name, parity_inputs(cfg, variant), run, rne_check=False
    )  # 3.
    (check_bundle or (lambda p, n, atol, a: verify_bundle(p, n, atol=atol, rtol=0.0, artifact=a)))(  # 4.
        bpte, entry.bundle.cases, entry.bundle.atol, name
    )
    units = entry.coreml.compute_units if entry.coreml else "ALL"
    parity = replace(
        parity,
        why=f"executed on {host} by ExecuTorch's CoreMLBackend (compute units requested: {units}; Core ML picks "
        "among those the host has)",
    )
    drift = entry.fp16_drift_vs_fp32  # 5.
    if entry.precision == "fp16" and parity.worst is not None:
        drift = DriftRecord(**parity.worst.as_dict(), reference="eager fp32", mode="executed")
    return replace(entry, parity=parity, fp16_drift_vs_fp32=drift, bundle=replace(entry.bundle, verified="executed"))


def unexecuted_coreml(entries: dict[str, Entry]) -> list[str]:
    """Core ML files whose parity was not executed (emulated or static only): publish's refusal."""
    return [n for n, e in entries.items() if e.delegate == CORE_ML and e.parity.mode != "executed"]


def command(args) -> int:
    """`rne-export verify-coreml`."""
    from export.data import CONFIGS

    done = verify_coreml(args.manifest, args.weights, args.config, CONFIGS)
    print(f"Core ML executed and recorded in {args.manifest}: {', '.join(done)}")
    return 0
