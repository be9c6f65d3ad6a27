"""A build request from the command line: configs x variants, one folder per model when several;
answered without importing torch when every variant is up to date (export/store/uptodate.py),
every model's weights checked before any work, then the pipeline per model and one summary table."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from export.config import ModelConfig
from export.config_file import find_config, load_config
from export.errors import ExportError

if TYPE_CHECKING:
    from export.records import Entry


def summary_table(results) -> str:
    """One row per artifact of a build: size, delegation, parity, int8 accuracy, seconds."""
    from tabulate import tabulate

    rows = []
    for r in results:
        e = r.entry
        wst = e.parity.worst
        acc = e.accuracy
        rows.append(
            (
                r.artifact,
                f"{e.bytes / 1e6:.1f}",
                str(e.delegation.delegated_nodes),
                str(e.delegation.non_delegated_compute_nodes),
                e.parity.mode,
                *(
                    (f"{wst.decisive_agreement * 100:.3f}%", f"{wst.rel_max_abs:.2e}", f"{wst.snr_db:.1f}")
                    if wst
                    else ("-", "-", "-")
                ),
                f"{acc.worst.snr_vs_noise_db:+.1f}" if acc else "-",
                "up to date" if r.up_to_date else f"{e.export_seconds:.1f}",
            )
        )
    headers = (
        "artifact",
        "MB",
        "delegated",
        "non-deleg",
        "parity",
        "decisive argmax",
        "rel err",
        "snr dB",
        "int8 dB vs noise",
        "seconds",
    )
    return tabulate(rows, headers=headers, tablefmt="plain", disable_numparse=True)


def select(configs: list[ModelConfig], variant_names: list[str] | None) -> list[tuple[ModelConfig, list[str] | None]]:
    """Pair each config with the requested variants it has; a name no config has is an error."""
    if not variant_names:
        return [(c, None) for c in configs]
    known = {v.name for c in configs for v in c.variants}
    missing = [repr(n) if not n.strip() or n != n.strip() else n for n in variant_names if n not in known]
    if missing:
        raise ExportError(f"unknown variant(s) {', '.join(missing)}; valid variants: {', '.join(sorted(known))}")
    pairs = [(c, [n for n in variant_names if n in {v.name for v in c.variants}]) for c in configs]
    return [(c, names) for c, names in pairs if names]


def run_build(
    config_paths: list[Path], variant_names: list[str] | None, weights: str, out: Path, force: bool = False
) -> int:
    """`rne-export build`: configs (paths or names), the variants asked for, one folder per model
    when several; exit code 0."""
    configs = [load_config(find_config(p)) for p in config_paths]
    if len(configs) > 1 and weights not in ("default", "random"):
        raise ExportError("--weights PATH fits one model: pass a single --config with it")
    plan = select(configs, variant_names)  # fail on a bad variant name before any work
    outs = [out / cfg.name if len(configs) > 1 else out for cfg, _ in plan]  # a folder per model
    if not force and _all_fresh(plan, outs, weights):
        return 0
    from export.convert.pipeline import build
    from export.sources import weights_identity

    # every model's weights before any work: offline, name every checkpoint to place, not the first
    problems = []
    for cfg, _ in plan:
        try:
            weights_identity(cfg, weights)
        except ExportError as e:
            problems.append(str(e))
    if len(problems) == 1:
        raise ExportError(problems[0])
    if problems:
        raise ExportError(f"{len(problems)} of {len(plan)} models cannot get their weights: " + " | ".join(problems))

    results = []
    for (cfg, names), out_dir in zip(plan, outs, strict=True):
        results += build(cfg, names, weights, out_dir, force=force)
    print(summary_table(results))
    for folder in outs:
        print(f"manifest: {folder / 'manifest.json'}")
    if results and all(r.up_to_date for r in results):
        print("everything up to date")
    return 0


@dataclass(frozen=True)
class _Fresh:
    artifact: str
    entry: Entry
    up_to_date: bool = True


def _all_fresh(plan, outs: list[Path], weights: str) -> bool:
    """Every requested variant up to date by what the last build recorded (export.store.uptodate):
    the same lines as a build that skips them all, without importing torch."""
    from export.store.uptodate import fresh_entries

    found = []
    for (cfg, names), out in zip(plan, outs, strict=True):
        variants = [cfg.variant(n) for n in names] if names else list(cfg.variants)
        fresh = fresh_entries(out, cfg, variants, weights) if out.is_dir() else None
        if fresh is None:
            return False
        found += [(v, cfg.artifact_name(v), fresh[cfg.artifact_name(v)]) for v in variants]
    for v, name, _ in found:
        print(f"[{v.name}] up to date: {name} (config, weights and tools unchanged)", file=sys.stderr, flush=True)
    print(summary_table([_Fresh(name, entry) for _, name, entry in found]))
    for out in outs:
        print(f"manifest: {out / 'manifest.json'}")
    print("everything up to date")
    return True


def command(args) -> int:
    """`rne-export build`."""
    return run_build(args.config, args.variant, args.weights, args.out, force=args.force)
