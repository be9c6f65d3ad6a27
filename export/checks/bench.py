"""`make bench`: latency of each artifact against eager PyTorch and ONNX Runtime, measured in one run.

One process, one input (a real photo, preprocessed as the hook's native runtime does), engines
interleaved run by run so machine noise hits all of them alike; medians and ratios. Peak memory
and model load time are measured per artifact in a fresh process each, so numbers do not mix.
Results go to bench.json for the model card. Nothing here asserts on time.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from export.bench_records import (
    BENCH_NAME,
    BENCH_SCHEMA_NAME,
    BENCH_SCHEMA_VERSION,
    PROFILE_CHART,
    PROFILE_NAME,
    PROFILE_SCHEMA_NAME,
    PROFILE_SCHEMA_VERSION,
    Bench,
    BenchAccuracy,
    BenchHost,
    EngineProfile,
    EngineTiming,
    HostPeak,
    Profile,
    ResizeCost,
)
from export.checks.onnx_peer import onnx_fp32, onnx_int8, ort_runner, ort_session
from export.config import ModelConfig, Variant
from export.config_file import load_config
from export.data import CONFIGS
from export.errors import ExportError
from export.files import existing_file, sha256_file, write_bytes_atomic
from export.host import runs_here
from export.provenance import tool_versions, version_of
from export.records import Entry, write_with_schema
from export.store.manifest import checked_files, read_manifest
from export.threads import executorch_threads
from export.timing import interleaved, medians

PHOTO = "chelsea"  # why: a real photo at a size the hook typically gets (451x300)


def config_for(entry: Entry, config_dir: Path, explicit: Path | None) -> ModelConfig:
    """The config the artifact was exported from, checked by sha256 so eager matches the file."""
    if explicit and not explicit.is_file():
        raise ExportError(f"--config {explicit}: no such file")
    candidates = [explicit] if explicit else [Path(entry.config.path), config_dir / entry.config.file]
    for path in candidates:
        if path and path.is_file():
            cfg = load_config(path)
            if cfg.name != entry.model:
                raise ExportError(
                    f"--config {path} is model {cfg.name}'s, but {entry.path} is {entry.model}'s; "
                    f"pass {entry.model}'s config ({entry.config.file})"
                )
            if cfg.sha256 != entry.config.sha256:
                raise ExportError(f"{path} changed since {entry.path} was exported (sha256 differs); re-export first")
            return cfg
    raise ExportError(f"config {entry.config.file} of {entry.path} not found; pass --config")


def weights_for(entry: Entry, explicit: str | None) -> str:
    """`--weights` value that reproduces the artifact's weights; refuses a mismatch."""
    kind, identity = entry.weights.kind, entry.weights.identity
    if explicit:
        if explicit in ("default", "random") and explicit != kind:
            raise ExportError(f"--weights {explicit}, but {entry.path} was exported with {identity}")
        if explicit not in ("default", "random") and sha256_file(explicit) not in identity:
            raise ExportError(f"--weights {explicit} is not the checkpoint {entry.path} was exported with ({identity})")
        return explicit
    if kind == "path":
        raise ExportError(f"{entry.path} was exported from {identity}; pass --weights PATH to that checkpoint")
    return kind


def _probe_subprocess(artifact: Path, runs: int) -> dict:
    proc = subprocess.run(
        [sys.executable, "-m", "export.checks.memory_probe", str(artifact), str(runs)],  # in a fresh process
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise ExportError(f"memory probe of {artifact} failed: {proc.stderr.strip().splitlines()[-1:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


@dataclasses.dataclass
class Plan:
    """What one bench run times: engines by name, each file's baselines, the inputs fed."""

    engines: dict[str, Callable[[], object]] = dataclasses.field(default_factory=dict)
    # engine -> (eager fp32, ONNX Runtime fp32, its peer: ONNX Runtime int8 for an int8 file)
    baseline: dict[str, tuple[str, str, str]] = dataclasses.field(default_factory=dict)
    inputs: dict[str, Any] = dataclasses.field(default_factory=dict)  # engine -> its input tensor
    files: dict[str, Path] = dataclasses.field(default_factory=dict)  # runnable artifacts, checked
    onnx: dict[str, Path] = dataclasses.field(default_factory=dict)  # ONNX Runtime engine -> model
    skipped: dict[str, str] = dataclasses.field(default_factory=dict)
    variant_of: dict[str, tuple[ModelConfig, Variant]] = dataclasses.field(default_factory=dict)
    accuracy: dict[str, BenchAccuracy] = dataclasses.field(default_factory=dict)  # int8 engines vs eager fp32
    macs: dict[str, int] = dataclasses.field(default_factory=dict)  # engine -> its program's MACs (export.convert.macs)
    int8: set[str] = dataclasses.field(default_factory=set)  # engines that run int8 (their peak is int8's)


@dataclasses.dataclass(frozen=True)
class Setup:
    """What every model's engines share in one bench run."""

    folder: Path  # the manifest's folder: the files
    photo: Any  # the BGR photo every engine is fed (resized per input group)
    tmp: Path  # ONNX models
    threads: dict[str, int]  # torch, executorch, onnxruntime
    weights: str | None
    config: Path | None
    config_dir: Path
    several: bool  # more than one model: engine names carry the model and input


def run_bench(
    manifest_path: Path,
    runs: int,
    warmup: int,
    weights: str | None,
    config: Path | None,
    config_dir: Path,
    out: Path | None = None,
    profile: bool = False,
) -> Bench:
    """1. read the manifest (before torch), 2. plan: eager, ONNX Runtime fp32 and int8 peers and
    each runnable file per input group, int8 accuracy vs eager fp32, 3. time all interleaved,
    4. probe load time and memory per file, 5. the resize cost, 6. optionally profile op by op,
    7. the host's kernel probe (export.checks.kernels), 8. write bench.json (and profile.json / profile.png)."""
    entries, models = _bench_request(manifest_path, config)  # 1. its problems before torch is imported
    import torch

    from export.checks.kernels import probe as probe_kernels
    from export.host import describe
    from export.rne.preprocess import load_photo

    threads = {"torch": torch.get_num_threads(), "executorch": executorch_threads()}
    threads["onnxruntime"] = threads["executorch"]
    bgr = load_photo(PHOTO)
    with tempfile.TemporaryDirectory() as tmp:
        setup = Setup(manifest_path.parent, bgr, Path(tmp), threads, weights, config, config_dir, len(models) > 1)
        plan = Plan()
        for model in models:  # 2.
            _plan_model(plan, setup, {n: e for n, e in entries.items() if e.model == model})
        times = _time(plan, runs, warmup)  # 3.
        probes = {name: _probe_subprocess(path, runs=3) for name, path in plan.files.items()}  # 4.
        profiles = _profiles(plan, threads["onnxruntime"], runs) if profile else None  # 6.
    kernels = probe_kernels(threads["executorch"])  # 7. what this host's kernels reach per kind
    rates = _achieved(plan, times)
    versions = {**tool_versions(), "onnxruntime": version_of("onnxruntime")}
    host = describe(threads, versions, kernels, _on_the_cpu(rates, plan, entries, threads))
    bench = Bench(
        schema=BENCH_SCHEMA_VERSION,
        models=tuple(models),
        input=f"photo:{PHOTO}, resized to each artifact's input",
        runs=runs,
        warmup=warmup,
        host=host,
        artifacts={n: e.sha256 for n, e in entries.items()},  # the files measured (a stale bench shows)
        engines=_results(plan, times, entries, probes, host.peak, rates),
        peers={n: plan.baseline[n][2] for n in plan.files},
        int8_accuracy=plan.accuracy,
        not_run=plan.skipped,
        resize=_resize_cost(plan, entries, bgr, runs, warmup),  # 5.
    )
    target = out or manifest_path.parent / BENCH_NAME  # 8. and its JSON Schema beside it
    title = f"rne-export bench.json, schema {BENCH_SCHEMA_VERSION}"
    write_with_schema(target, bench, target.parent / BENCH_SCHEMA_NAME, title)
    print(table(bench))
    print(f"wrote {target}")
    if profiles:
        _write_profiles(profiles, bench.host, runs, target.parent)
    return bench


def _time(plan: Plan, runs: int, warmup: int) -> dict[str, list[float]]:
    import torch

    print(
        f"bench: {len(plan.engines)} engines, {warmup} warm-up + {runs} runs each, interleaved, input photo {PHOTO}",
        file=sys.stderr,
        flush=True,
    )
    with torch.no_grad():
        return interleaved(plan.engines, runs, warmup)


def _bench_request(manifest_path: Path, config: Path | None) -> tuple[dict[str, Entry], list[str]]:
    """The manifest's entries and models; a config given for several models is refused."""
    entries = read_manifest(manifest_path).artifacts
    if not entries:
        raise ExportError(f"{manifest_path} lists no artifacts; run the export first")
    models = sorted({e.model for e in entries.values()})
    if config is not None and len(models) > 1:
        raise ExportError(f"--config fits one model, but {manifest_path} holds {', '.join(models)}")
    return entries, models


def _plan_model(plan: Plan, setup: Setup, mine: dict[str, Entry]) -> None:
    """Engines of one model: per input size and contract an eager and an ONNX Runtime fp32
    baseline, an ONNX Runtime int8 peer where the group has an int8 file, and the files."""
    from export.sources import load_model

    first = next(iter(mine.values()))
    cfg = config_for(first, setup.config_dir, setup.config)
    module = load_model(cfg, weights_for(first, setup.weights)).module
    by_name = {cfg.artifact_name(v): v for v in cfg.variants}
    unknown = [n for n in mine if n not in by_name]
    if unknown:
        raise ExportError(f"{', '.join(unknown)} not in {cfg.source}; re-export or pass the right --config")
    plan.variant_of.update({n: (cfg, by_name[n]) for n in mine})
    groups: dict[tuple[int, int, str], dict[str, Variant]] = {}
    for name in mine:
        v = by_name[name]
        groups.setdefault((v.input.height, v.input.width, v.contract), {})[name] = v
    for (h, w, contract), variants in groups.items():
        tag = f"{cfg.name} {h}x{w} {contract}" if setup.several or len(groups) > 1 else ""
        keys = tuple(f"{e} {tag}".strip() for e in ("eager fp32", "onnxruntime fp32", "onnxruntime int8"))
        x, refs = _plan_baselines(plan, setup, cfg, module, variants, keys)
        _plan_files(plan, setup, cfg, {n: mine[n] for n in variants}, x, refs, keys)


def _plan_baselines(plan: Plan, setup: Setup, cfg: ModelConfig, module, variants: dict[str, Variant], keys):
    """One input group's eager and ONNX Runtime fp32 engines, and ONNX Runtime's int8 peer when the
    group has an int8 file. -> the group's input, and eager fp32 on the held-apart photos (int8)."""
    import torch

    from export.convert.feeds import calibration_inputs
    from export.convert.quantize import calibration_set
    from export.convert.wrap import wrap
    from export.rne.preprocess import model_input

    eager_key, ort_key, ort8_key = keys
    first = next(iter(variants.values()))
    h, w = first.input.height, first.input.width
    eager = wrap(module, cfg, first).eval()
    x = model_input(setup.photo, h, w, first.runtime_contract)
    stem = setup.tmp / f"{cfg.name}_{h}x{w}_{first.contract}"
    # the baselines run the wrapped model as it is (no rewrites): their own program's MACs
    plan.onnx[ort_key], macs = onnx_fp32(eager, x, stem.with_suffix(".fp32.onnx"))
    plan.macs[eager_key] = plan.macs[ort_key] = plan.macs[ort8_key] = macs
    plan.int8.add(ort8_key)
    plan.engines[eager_key] = functools.partial(eager, x)
    ort32 = ort_session(plan.onnx[ort_key], setup.threads["onnxruntime"])
    plan.engines[ort_key] = functools.partial(ort_runner(ort32), x)
    int8 = [v for v in variants.values() if v.precision == "int8"]
    refs: dict = {}  # eager fp32 on the held-apart photos: once, for every int8 engine here
    if int8:
        refs = _accuracy_references(eager, cfg, int8[0])
        calibration = calibration_inputs(cfg, int8[0], calibration_set(cfg))
        name8 = ort32.get_inputs()[0].name
        plan.onnx[ort8_key] = onnx_int8(plan.onnx[ort_key], stem.with_suffix(".int8.onnx"), calibration, name8)
        ort8 = ort_runner(ort_session(plan.onnx[ort8_key], setup.threads["onnxruntime"]))
        plan.engines[ort8_key] = functools.partial(ort8, x)
        if acc := _int8_accuracy(lambda t, f=ort8: torch.from_numpy(f(t)), refs, cfg):
            plan.accuracy[ort8_key] = acc
    for key in keys:
        plan.inputs[key] = x
        plan.baseline.setdefault(key, (eager_key, ort_key, ort_key))
    return x, refs


def _plan_files(plan: Plan, setup: Setup, cfg: ModelConfig, files: dict[str, Entry], x, refs: dict, keys) -> None:
    """The group's files this host runs (checked against the manifest), each with its baselines."""
    from export.threads import runtime

    rt = runtime()
    eager_key, ort_key, ort8_key = keys
    for name, e in files.items():
        if not runs_here(e.delegate):
            plan.skipped[name] = f"{e.delegate} is not in this ExecuTorch runtime"
            continue
        pte, _ = checked_files(setup.folder, name, e)
        method = rt.load_program(pte).load_method("forward")
        plan.files[name], plan.inputs[name] = pte, x
        plan.engines[name] = functools.partial(method.execute, [x])
        plan.baseline[name] = (eager_key, ort_key, ort8_key if e.precision == "int8" else ort_key)
        if e.macs:
            plan.macs[name] = sum(e.macs.values())
        if e.precision == "int8":
            plan.int8.add(name)
        if e.precision == "int8":
            run8 = lambda t, m=method: m.execute([t])[0].clone()  # noqa: E731
            if acc := _int8_accuracy(run8, refs, cfg):
                plan.accuracy[name] = acc


def _accuracy_references(eager, cfg: ModelConfig, variant: Variant) -> dict:
    """Eager fp32 on the held-apart photos and their noisy views (export.convert.feeds), once per group."""
    from export.convert.feeds import accuracy_inputs
    from export.convert.quantize import fp32_references

    return fp32_references(eager, accuracy_inputs(cfg, variant)) if cfg.accuracy is not None else {}


def _int8_accuracy(run, refs: dict, cfg: ModelConfig) -> BenchAccuracy | None:
    """An int8 engine vs eager fp32 on the held-apart photos, by the export gate's own metrics
    (worst photo), so a speed-up is never bought with accuracy unseen."""
    from export.convert.quantize import bounds_for, eager_accuracy, worst_accuracy

    if not refs:
        return None
    near_tie = bounds_for(cfg, "path")[1].near_tie
    w = worst_accuracy(list(eager_accuracy(run, refs, near_tie).values()))
    return BenchAccuracy(w.snr_vs_noise_db, w.centered_snr_db, w.decisive_agreement, w.argmax_agreement)


def _achieved(plan: Plan, times: dict[str, list[float]]) -> dict[str, tuple[str, float]]:
    """engine -> (precision, GMAC/s) from its program's MACs and the run's median."""
    med = medians(times)
    return {k: ("int8" if k in plan.int8 else "fp32", plan.macs[k] / 1e6 / med[k]) for k in times if plan.macs.get(k)}


def _on_the_cpu(
    rates: dict[str, tuple[str, float]], plan: Plan, entries: dict[str, Entry], threads: dict[str, int]
) -> dict[str, tuple[str, float]]:
    """The rates of engines that computed on the peak's cores (ExecuTorch's thread count): not a Core
    ML file (it may run on the GPU or the Neural Engine), nor eager torch on another thread count."""
    eager = {b[0] for b in plan.baseline.values()} if threads["torch"] != threads["executorch"] else set()
    return {k: r for k, r in rates.items() if k not in eager and (k not in entries or entries[k].coreml is None)}


def _results(
    plan: Plan,
    times: dict[str, list[float]],
    entries: dict[str, Entry],
    probes: dict[str, dict[str, float]],
    peak: HostPeak | None,
    rates: dict[str, tuple[str, float]],
) -> dict[str, EngineTiming]:
    """Each engine's timing and ratios, its MACs, achieved rate and share of the host's peak; a file's
    also its Core ML compute units, × its fp32 sibling (int8) and its load time and memory (`probes`)."""
    med = medians(times)
    results: dict[str, EngineTiming] = {}
    for k, v in times.items():
        eager, ort, peer = plan.baseline[k]
        coreml = entries[k].coreml if k in plan.files else None
        ratio_to_fp32 = None
        if k in plan.files and entries[k].precision == "int8":
            cfg_n, v_n = plan.variant_of[k]
            fp32 = cfg_n.artifact_name(dataclasses.replace(v_n, precision="fp32"))
            ratio_to_fp32 = med[k] / med[fp32] if fp32 in times else None
        probe = probes.get(k, {})
        gmac = plan.macs[k] / 1e9 if plan.macs.get(k) else None
        gmacs = rates[k][1] if k in rates else None
        top = (peak.int8_gmacs if k in plan.int8 else peak.fp32_gmacs) if peak else None
        results[k] = EngineTiming(
            median_ms=med[k],
            min_ms=min(v),
            max_ms=max(v),
            ratio_to_eager=med[k] / med[eager],
            ratio_to_onnxruntime=med[k] / med[ort],
            ratio_to_peer=med[k] / med[peer],
            coreml_compute_units=coreml.compute_units if coreml is not None else None,  # as set at export
            ratio_to_fp32=ratio_to_fp32,
            load_ms=probe.get("load_ms"),
            peak_rss_increment_mb=probe.get("peak_rss_increment_mb"),
            gmac=gmac,
            gmacs=gmacs,
            peak_share=gmacs / top if gmacs and top else None,
        )
    return results


def _resize_cost(plan: Plan, entries: dict[str, Entry], bgr, runs: int, warmup: int) -> ResizeCost | None:
    """What forward(resize=True) adds to the hook's forward, timed on its own (it is far below the
    forward's run-to-run noise), for ARGMAX plus one class of interest."""
    from export.checks.replay import SegmentationModel, resize_outputs

    runnable = [n for n in entries if n in plan.files]
    if not runnable:
        return None
    first = entries[runnable[0]]
    ref = SegmentationModel(plan.files[runnable[0]], first.contract.name, list(first.labels))
    label = [ref.labels[1]]
    t_forward = interleaved({"forward": lambda: ref.forward(bgr, label)}, runs, warmup)["forward"]
    small = ref.forward(bgr, label)
    h, w = bgr.shape[:2]
    t_resize = interleaved({"resize": lambda: resize_outputs(small, h, w)}, runs * 10, warmup)["resize"]
    return ResizeCost(
        runnable[0],
        image=f"{w}x{h}",
        classes=1 + len(label),
        forward_ms=statistics.median(t_forward),
        resize_cost_ms=statistics.median(t_resize),
    )


def _profiles(plan: Plan, threads: int, runs: int) -> dict[str, EngineProfile]:
    """Op-by-op profiles of every XNNPACK file and of the ONNX Runtime engines (export.checks.op_profile)."""
    from export.checks import op_profile

    out = {}
    for name, path in plan.files.items():
        if plan.variant_of[name][1].backend == "xnnpack":  # Core ML reports no per-op events
            out[name] = op_profile.profile_pte(path, plan.inputs[name], runs)
    for key, model in plan.onnx.items():
        x = plan.inputs[key].numpy()
        out[key] = op_profile.profile_ort(lambda prefix, m=model: ort_session(m, threads, prefix), x, runs)
    return out


def _write_profiles(profiles: dict[str, EngineProfile], host: BenchHost, runs: int, folder: Path) -> None:
    from export.checks import op_profile
    from export.host import label

    doc = Profile(PROFILE_SCHEMA_VERSION, runs, label(host), profiles)
    title = f"rne-export profile.json, schema {PROFILE_SCHEMA_VERSION}"
    write_with_schema(folder / PROFILE_NAME, doc, folder / PROFILE_SCHEMA_NAME, title)
    write_bytes_atomic(folder / PROFILE_CHART, op_profile.chart(profiles))
    print(op_profile.table(profiles))
    for name, p in profiles.items():
        print(op_profile.top_ops(name, p))
    print(f"wrote {folder / PROFILE_NAME}, {folder / PROFILE_CHART}")


def table(bench: Bench) -> str:
    from tabulate import tabulate

    from export.checks.kernels import lines as kernel_lines
    from export.host import label

    def num(v: float | None, fmt: str) -> str:
        return "-" if v is None else format(v, fmt)

    rows = []
    for name, r in bench.engines.items():
        peer = bench.peers.get(name)
        rows.append(
            (
                name,
                f"{r.median_ms:.2f}",
                f"{r.ratio_to_eager:.2f}",
                f"{r.ratio_to_onnxruntime:.2f}",
                f"{r.ratio_to_peer:.2f}" if peer and "int8" in peer else "-",
                num(r.ratio_to_fp32, ".2f"),
                num(r.load_ms, ".0f"),
                num(r.peak_rss_increment_mb, ".0f"),
                num(r.gmac, ".3g"),
                num(r.gmacs, ".1f"),
                num(r.peak_share and 100 * r.peak_share, ".1f"),
            )
        )
    heads = (
        *("engine", "median ms", "x eager", "x ort fp32", "x ort int8", "x fp32", "load ms", "peak MB"),
        *("GMAC", "GMAC/s", "% peak"),
    )
    h = bench.host
    lines = [f"host: {label(h)}, {h.cores or '?'} physical cores; threads {h.threads}"]
    if (pk := bench.host.peak) is not None:
        lines.append(
            f"peak: {pk.cores} cores x {pk.clock_ghz:.2f} GHz ({pk.clock_source}) x {pk.fp32_macs_per_cycle} fp32 / "
            f"{pk.int8_macs_per_cycle} int8 MAC per cycle (assumed: {pk.isa_basis}) = {pk.fp32_gmacs:.0f} fp32, "
            f"{pk.int8_gmacs:.0f} int8 GMAC/s"
        )
    lines.append(tabulate(rows, headers=heads, tablefmt="plain", disable_numparse=True))
    if h.kernels:
        lines += ["kernels on this host (one convolution per kind, seeded weights; median):", *kernel_lines(h.kernels)]
    for name, why in bench.not_run.items():
        lines.append(f"{name}: not run here ({why})")
    for name, a in bench.int8_accuracy.items():
        lines.append(
            f"{name} vs eager fp32 (worst held-apart photo): {a.snr_vs_noise_db:.1f} dB vs noise, "
            f"centered SNR {a.centered_snr_db:.1f} dB, decisive agreement {100 * a.decisive_agreement:.2f} %"
        )
    if bench.resize:
        rz = bench.resize
        lines.append(
            f"resize=True adds {rz.resize_cost_ms:.3f} ms ({rz.classes} maps to {rz.image}) "
            f"to a {rz.forward_ms:.1f} ms forward of {rz.artifact}"
        )
    lines.append(
        "ratios: median latency / median latency of eager fp32, ONNX Runtime fp32 (same wrapped model), "
        "ONNX Runtime int8 (its static QDQ model, same calibration photos; int8 files), the fp32 file; < 1 is faster. "
        "GMAC: the multiply-accumulates of the engine's program, taps that read padding left out (the same work for "
        "every engine of a model); % peak: its "
        "GMAC/s over the host's peak for its precision"
    )
    return "\n".join(lines)


def command(args) -> int:
    """`rne-export bench`: its numbers checked before torch is imported."""
    if args.runs < 1 or args.warmup < 0:
        raise ExportError("--runs must be >= 1 and --warmup >= 0")
    if args.weights not in (None, "default", "random"):
        existing_file(args.weights, "--weights", "valid values: default, random, or a checkpoint PATH")
    run_bench(args.manifest, args.runs, args.warmup, args.weights, args.config, CONFIGS, args.out, profile=args.profile)
    return 0
