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
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from .config import CONTRACTS, ModelConfig, load_config
from .errors import ExportError
from .files import sha256_file, write_bytes_atomic
from .manifest import Entry, checked_files, read_manifest, tool_versions

BENCH_NAME = "bench.json"
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


def _vm(field: str) -> int:
    """kB of VmRSS / VmHWM for this process (Linux /proc)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def probe(artifact: Path, runs: int) -> dict:
    """In a fresh process: load time and peak RSS increment of one .pte (load + `runs` inferences)."""
    import numpy as np
    import torch
    from executorch.runtime import Runtime

    runtime = Runtime.get()  # the runtime itself is not the artifact's cost
    meta_program = runtime.load_program(artifact)
    shape = meta_program.metadata("forward").input_tensor_meta(0).sizes()
    del meta_program
    x = torch.from_numpy(np.random.default_rng(0).random(shape, dtype=np.float32))
    rss0 = _vm("VmRSS")
    t0 = time.perf_counter()
    method = runtime.load_program(artifact).load_method("forward")
    load_s = time.perf_counter() - t0
    for _ in range(runs):
        method.execute([x])
    return {"load_ms": load_s * 1e3, "peak_rss_increment_mb": (_vm("VmHWM") - rss0) / 1024}


def _probe_subprocess(artifact: Path, runs: int) -> dict:
    proc = subprocess.run(
        [sys.executable, "-m", "export", "bench-probe", str(artifact), "--runs", str(runs)],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise ExportError(f"memory probe of {artifact} failed: {proc.stderr.strip().splitlines()[-1:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _onnx_session(module, example):
    import onnxruntime as ort
    import torch

    program = torch.onnx.export(module, (example,), dynamo=True, verbose=False)
    options = ort.SessionOptions()
    # No spin-waiting after a run: in an interleaved loop a spinning pool would steal the cores
    # from whichever engine runs next.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(program.model_proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda x: session.run(None, {name: x.numpy()})[0]


def interleaved(engines: dict[str, Callable[[], object]], runs: int, warmup: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {k: [] for k in engines}
    for r in range(warmup + runs):
        for name, fn in engines.items():
            t0 = time.perf_counter()
            fn()
            dt = time.perf_counter() - t0
            if r >= warmup:
                times[name].append(dt * 1e3)
    return times


def latency_ratio(int8_path: Path, fp32_path: Path, example, runs: int = 5) -> dict:
    """Median latency of the int8 file over its fp32 sibling, interleaved in this process."""
    import statistics

    from executorch.runtime import Runtime

    rt = Runtime.get()
    methods = {k: rt.load_program(p).load_method("forward") for k, p in (("int8", int8_path), ("fp32", fp32_path))}
    times = interleaved({k: functools.partial(m.execute, [example]) for k, m in methods.items()}, runs, warmup=1)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        "int8_ms": med["int8"],
        "fp32_ms": med["fp32"],
        "ratio": med["int8"] / med["fp32"],
        "runs": runs,
        "fp32_artifact": fp32_path.name,
    }


def run_bench(
    manifest_path: Path,
    runs: int,
    warmup: int,
    weights: str | None,
    config: Path | None,
    config_dir: Path,
    out: Path | None = None,
) -> dict:
    manifest = read_manifest(manifest_path)  # the manifest's problems before torch is imported
    folder = manifest_path.parent
    entries = manifest.artifacts
    if not entries:
        raise ExportError(f"{manifest_path} lists no artifacts; run the export first")
    models = sorted({e.model for e in entries.values()})
    if config is not None and len(models) > 1:
        raise ExportError(f"--config fits one model, but {manifest_path} holds {', '.join(models)}")

    import torch
    from executorch.runtime import Runtime

    from .preprocess import load_photo
    from .reference import SegmentationModel, preprocess, resize_outputs
    from .weights import load_model
    from .wrap import wrap

    bgr = load_photo(PHOTO)
    runtime = Runtime.get()
    engines: dict[str, Callable[[], object]] = {}
    baseline: dict[str, tuple[str, str]] = {}
    skipped: dict[str, str] = {}
    variant_of = {}
    files: dict[str, Path] = {}  # each runnable artifact, as checked against its manifest entry
    for model in models:
        mine = {n: e for n, e in entries.items() if e.model == model}
        first = next(iter(mine.values()))
        cfg = config_for(first, config_dir, config)
        loaded = load_model(cfg, weights_for(first, weights))
        by_name = {cfg.artifact_name(v): (cfg, v) for v in cfg.variants}
        unknown = [n for n in mine if n not in by_name]
        if unknown:
            raise ExportError(f"{', '.join(unknown)} not in {cfg.source}; re-export or pass the right --config")
        variant_of.update({n: by_name[n] for n in mine})
        # Artifacts of one input size and contract share an eager and an ONNX Runtime baseline.
        groups: dict[tuple, list[str]] = {}
        for name in mine:
            v = by_name[name][1]
            groups.setdefault((v.input.height, v.input.width, v.contract), []).append(name)
        for (h, w, contract), names in groups.items():
            tag = f"{model} {h}x{w} {contract}" if len(models) > 1 or len(groups) > 1 else ""
            eager_key, ort_key = f"eager fp32 {tag}".strip(), f"onnxruntime fp32 {tag}".strip()
            eager = wrap(loaded.module, cfg, by_name[names[0]][1])
            x = torch.from_numpy(preprocess(bgr, h, w, CONTRACTS.get(contract)))
            engines[eager_key] = functools.partial(eager, x)
            engines[ort_key] = functools.partial(_onnx_session(eager, x), x)
            baseline[eager_key] = baseline[ort_key] = (eager_key, ort_key)
            for name in names:
                e = mine[name]
                if not runtime.backend_registry.is_available(e.delegate):
                    skipped[name] = f"{e.delegate} is not in this ExecuTorch runtime"
                    continue
                pte, _ = checked_files(folder, name, e)
                files[name] = pte
                method = runtime.load_program(pte).load_method("forward")
                engines[name] = functools.partial(method.execute, [x])
                baseline[name] = (eager_key, ort_key)
    print(
        f"bench: {len(engines)} engines, {warmup} warm-up + {runs} runs each, interleaved, input photo {PHOTO}",
        file=sys.stderr,
        flush=True,
    )
    with torch.no_grad():
        times = interleaved(engines, runs, warmup)
    med = {k: statistics.median(v) for k, v in times.items()}
    results = {
        k: {
            "median_ms": med[k],
            "min_ms": min(v),
            "max_ms": max(v),
            "ratio_to_eager": med[k] / med[baseline[k][0]],
            "ratio_to_onnxruntime": med[k] / med[baseline[k][1]],
        }
        for k, v in times.items()
    }
    for name in entries:
        if name in engines:
            results[name].update(_probe_subprocess(files[name], runs=3))
            cfg_n, v_n = variant_of[name]
            fp32 = cfg_n.artifact_name(dataclasses.replace(v_n, precision="fp32"))
            if entries[name].precision == "int8" and fp32 in results:
                results[name]["ratio_to_fp32"] = med[name] / med[fp32]
    # resize cost: what forward(resize=True) adds to the hook's forward, timed on its own (it is far
    # below the forward's run-to-run noise), for ARGMAX plus one class of interest
    resize = None
    runnable = [n for n in entries if n in engines]
    if runnable:
        first = entries[runnable[0]]
        ref = SegmentationModel(files[runnable[0]], first.contract.name, list(first.labels))
        label = [ref.labels[1]]
        t_forward = interleaved({"forward": lambda: ref.forward(bgr, label)}, runs, warmup)["forward"]
        small = ref.forward(bgr, label)
        h, w = bgr.shape[:2]
        t_resize = interleaved({"resize": lambda: resize_outputs(small, h, w)}, runs * 10, warmup)["resize"]
        resize = {
            "artifact": runnable[0],
            "image": f"{w}x{h}",
            "classes": 1 + len(label),
            "forward_ms": statistics.median(t_forward),
            "resize_cost_ms": statistics.median(t_resize),
        }
    bench = {
        "schema": 1,
        "models": models,
        "input": f"photo:{PHOTO}, resized to each artifact's input",
        "runs": runs,
        "warmup": warmup,
        "host": {
            "machine": platform.machine(),
            "processor": platform.processor() or "?",
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            **tool_versions(),
            "onnxruntime": _version("onnxruntime"),
        },
        "engines": results,
        "not_run": skipped,
        "resize": resize,
    }
    target = out or folder / BENCH_NAME
    write_bytes_atomic(target, (json.dumps(bench, indent=2) + "\n").encode())
    print(table(bench))
    print(f"wrote {target}")
    return bench


def _version(pkg: str) -> str:
    from importlib import metadata

    return metadata.version(pkg)


def table(bench: dict) -> str:
    from tabulate import tabulate

    rows = []
    for name, r in bench["engines"].items():
        rows.append(
            (
                name,
                f"{r['median_ms']:.2f}",
                f"{r['ratio_to_eager']:.2f}",
                f"{r['ratio_to_onnxruntime']:.2f}",
                f"{r['ratio_to_fp32']:.2f}" if "ratio_to_fp32" in r else "-",
                f"{r['load_ms']:.0f}" if "load_ms" in r else "-",
                f"{r['peak_rss_increment_mb']:.0f}" if "peak_rss_increment_mb" in r else "-",
            )
        )
    lines = [
        tabulate(
            rows,
            headers=("engine", "median ms", "x eager", "x onnxruntime", "x fp32", "load ms", "peak MB"),
            tablefmt="plain",
            disable_numparse=True,
        )
    ]
    for name, why in bench["not_run"].items():
        lines.append(f"{name}: not run here ({why})")
    if bench["resize"]:
        rz = bench["resize"]
        lines.append(
            f"resize=True adds {rz['resize_cost_ms']:.3f} ms ({rz['classes']} maps to {rz['image']}) "
            f"to a {rz['forward_ms']:.1f} ms forward of {rz['artifact']}"
        )
    lines.append(
        "ratios: median latency / median latency of eager fp32 (x eager) or ONNX Runtime (x onnxruntime); < 1 is faster"
    )
    return "\n".join(lines)
