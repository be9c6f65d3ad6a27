"""Measure each model source on this host and write it as data: docs/data/sources.json, rendered into
docs/model-sources.md between its MEASURED markers (export/release/docs_tables.py). Per test model (one per source, random weights,
every default variant): export seconds per variant, file sizes, ops left outside the delegate, the
graph rewrites that got them in, and `bench`'s fp32 / int8 .pte latency against ONNX Runtime's fp32
/ int8 peers, all from one run of this script.

    .venv/bin/python scripts/measure_sources.py [--runs 10] [--models person_mask smp_unet ...] [--render-only]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import sys
import tempfile
from pathlib import Path

from export.files import write_bytes_atomic
from export.release.docs_tables import stale_pages

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the test models' configs (tests/support)

DATA = ROOT / "docs" / "data" / "sources.json"
PAGE = ROOT / "docs" / "model-sources.md"
MODELS = ("person_mask", "smp_unet", "smp_deeplabv3plus", "segformer_b0")


def measure(name: str, work: Path, runs: int) -> dict:
    from support import source_config  # the test models' configs (SegFormer: saved with save_pretrained)

    from export.checks.bench import run_bench
    from export.config_file import load_config
    from export.convert import pipeline
    from export.store.manifest import read_manifest

    folder = work / name
    folder.mkdir()
    cfg_path = source_config(name, folder)
    cfg = load_config(cfg_path)
    out = folder / "artifacts"
    pipeline.build(cfg, None, "random", out, force=True)
    bench = run_bench(out / "manifest.json", runs, 3, None, cfg_path, ROOT / "configs")
    entries = read_manifest(out / "manifest.json").artifacts
    variants = {}
    for n, e in entries.items():
        timing = bench.engines.get(n)
        variants[e.variant] = {
            "file": n,
            "bytes": e.bytes,
            "export_seconds": e.export_seconds,
            "non_delegated_ops": e.delegation.non_delegated_ops,
            "delegated_nodes": e.delegation.delegated_nodes,
            "graph_rewrites": list(e.graph_rewrites),
            "median_ms": timing.median_ms if timing else None,
            "ratio_to_peer": timing.ratio_to_peer if timing else None,
            "peer": ("onnxruntime int8" if e.precision == "int8" else "onnxruntime fp32") if timing else None,
        }
    return {
        "model": name,
        "source": cfg.model.source,
        "what": {
            "source": cfg.model.source,
            "arch": cfg.model.arch,
            "encoder": cfg.model.encoder,
            "builder": cfg.model.builder,
            "labels": len(cfg.labels),
            "input": f"{cfg.input.height}x{cfg.input.width}",
        },
        "onnxruntime_ms": {k: v.median_ms for k, v in bench.engines.items() if k.startswith("onnxruntime")},
        "variants": variants,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    ap.add_argument("--render-only", action="store_true")
    args = ap.parse_args()
    if not args.render_only:
        import os

        from export.host import cpu_model

        work = Path(tempfile.mkdtemp(prefix="measure-sources-"))
        try:
            models = [measure(n, work, args.runs) for n in args.models]
        finally:
            shutil.rmtree(work, ignore_errors=True)
        data = {
            "schema": 1,
            "command": "python scripts/measure_sources.py " + " ".join(sys.argv[1:]),
            "measured_at": dt.date.today().isoformat(),
            "host": f"{cpu_model()} ({os.cpu_count()} CPUs)",
            "runs": args.runs,
            "models": models,
        }
        DATA.parent.mkdir(parents=True, exist_ok=True)
        DATA.write_text(json.dumps(data, indent=1) + "\n")
    for path, text in stale_pages(ROOT).items():
        write_bytes_atomic(path, text.encode())
    print(f"wrote {DATA.relative_to(ROOT)} and {PAGE.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
