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
    config_paths: list[Path],
    variant_names: list[str] | None,
    weights: str,
    out: Path,
    force: bool = False,
    jobs: int = 1,
) -> int:
    """`rne-export build`: configs (paths or names), the variants asked for, one folder per model
    when several (`jobs` of them built side by side); exit code 0, or the first failed model's."""
    if jobs < 1:
        raise ExportError(f"--jobs {jobs}: give the number of models to build at once, 1 or more")
    sources = [find_config(p) for p in config_paths]
    configs = [load_config(s) for s in sources]
    if len(configs) > 1 and weights not in ("default", "random"):
        raise ExportError("--weights PATH fits one model: pass a single --config with it")
    plan = select(configs, variant_names)  # fail on a bad variant name before any work
    outs = [out / cfg.name if len(configs) > 1 else out for cfg, _ in plan]  # a folder per model
    if not force and _all_fresh(plan, outs, weights):
        return 0
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

    if jobs > 1 and len(plan) > 1:
        source_of = {cfg.name: s for cfg, s in zip(configs, sources, strict=True)}
        return _side_by_side([(source_of[c.name], names, o) for (c, names), o in zip(plan, outs, strict=True)],
                             weights, out, force, jobs)  # fmt: skip
    from export.convert.pipeline import build  # torch and the stages: ~2 s, only where this process builds

    results = []
    for (cfg, names), out_dir in zip(plan, outs, strict=True):
        results += build(cfg, names, weights, out_dir, force=force)
    print(summary_table(results))
    for folder in outs:
        print(f"manifest: {folder / 'manifest.json'}")
    if results and all(r.up_to_date for r in results):
        print("everything up to date")
    return 0


def _side_by_side(
    builds: list[tuple[Path, list[str] | None, Path]], weights: str, out: Path, force: bool, jobs: int
) -> int:
    """Each model's build in a process of its own, `jobs` at a time, each on its share of the cores
    (RNE_EXPORT_THREADS, unless it is set): lowering is mostly one-threaded Python, so models side by
    side finish sooner than in turn, and the files are the same bytes (export.threads.one_thread).
    A child's progress goes to OUT/logs/<model>.log; its table is printed when it ends. -> 0, or the
    exit code of the first model that failed (the others still finish)."""
    import os
    import subprocess
    import time
    from concurrent.futures import ThreadPoolExecutor

    from export import threads

    env = dict(os.environ)
    if threads.limit() is None:
        env[threads.ENV] = str(threads.share(jobs))
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)

    def one(source: Path, names: list[str] | None, folder: Path) -> tuple[str, int, str, list[str]]:
        log = logs / f"{folder.name}.log"
        args = ["--config", str(source), "--weights", weights, "--out", str(folder)]
        args += [a for n in names or () for a in ("--variant", n)] + (["--force"] if force else [])
        print(f"[{folder.name}] building in its own process ({env[threads.ENV]} thread(s)); progress: {log}",
              file=sys.stderr, flush=True)  # fmt: skip
        start = time.monotonic()
        with open(log, "w") as err:
            proc = subprocess.run([sys.executable, "-m", "export", "build", *args], env=env, stdout=subprocess.PIPE,
                                  stderr=err, text=True)  # fmt: skip
        errors = [ln.rstrip() for ln in log.read_text().splitlines() if ln.startswith("error: ")]
        said = (
            f"built in {time.monotonic() - start:.0f} s" if proc.returncode == 0 else f"FAILED (exit {proc.returncode})"
        )
        print(f"[{folder.name}] {said}", file=sys.stderr, flush=True)
        return folder.name, proc.returncode, proc.stdout, errors

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        done = list(pool.map(lambda b: one(*b), builds))
    for _, _, stdout, _ in done:
        print(stdout, end="")
    failed = [(model, rc, errors) for model, rc, _, errors in done if rc != 0]
    for model, rc, errors in failed:
        why = errors[-1].removeprefix("error: ") if errors else f"exit {rc}, no error line"
        print(f"error: {model}: {why} (its log: {logs / (model + '.log')})", file=sys.stderr, flush=True)
    return failed[0][1] if failed else 0


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
    return run_build(args.config, args.variant, args.weights, args.out, force=args.force, jobs=args.jobs)
