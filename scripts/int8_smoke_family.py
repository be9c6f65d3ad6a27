"""The smoke bound of configs/base/segmenter.yaml, measured: for each test model of a source (random
weights, several seeds) the eager quantized model (the int8 file's arithmetic) under the shipped
recipe and under broken ones (flat-grey calibration, observers never fed), worst held-apart photo's
centered logits SNR vs eager fp32. The bound must sit between the worst healthy and the best broken.
Flat-grey calibration is not a broken recipe for a model whose activations are clamped (ReLU6 /
Hardtanh: MobileNet-V2 encoders): every range is [0, 6] whatever the photos; those rows are kept
and counted neither way. Writes docs/data/int8_smoke_family.json.

    .venv/bin/python scripts/int8_smoke_family.py [--seeds 0 1] [--models person_mask smp_unet ...]
    .venv/bin/python scripts/int8_smoke_family.py --summarize-only   # the file's rows again
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

OUT = ROOT / "docs" / "data" / "int8_smoke_family.json"
MODELS = ("person_mask", "smp_unet", "smp_deeplabv3plus", "segformer_b0")
RECIPES = ("shipped", "grey", "uncalibrated")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    ap.add_argument("--summarize-only", action="store_true")
    args = ap.parse_args()
    if args.summarize_only:
        data = json.loads(OUT.read_text())
        write(data["rows"], data["command"])
        return
    import torch
    from support import source_config

    from export.checks.int8_family import recipe_cfg
    from export.config_file import load_config
    from export.convert.feeds import accuracy_inputs, calibration_inputs
    from export.convert.lower import export_for
    from export.convert.quantize import calibration_set, eager_accuracy, fp32_references, quantize
    from export.convert.rewrite import xnnpack_forms
    from export.convert.wrap import example_input, wrap
    from export.sources import load_model

    rows = []
    with tempfile.TemporaryDirectory() as d:
        for name in args.models:
            folder = Path(d) / name
            folder.mkdir()
            base = load_config(source_config(name, folder))
            variant = base.variant("xnnpack_int8")
            for seed in args.seeds:
                cfg = dataclasses.replace(base, model=dataclasses.replace(base.model, random_seed=seed))
                model = load_model(cfg, "random").module
                clamped = any(isinstance(m, (torch.nn.ReLU6, torch.nn.Hardtanh)) for m in model.modules())
                module = wrap(model, cfg, variant)
                program, _ = export_for(xnnpack_forms(module)[0], example_input(variant), variant)
                refs = fp32_references(module, accuracy_inputs(cfg, variant))
                for recipe in RECIPES:
                    start = time.perf_counter()
                    rcfg = recipe_cfg(cfg, recipe, folder)
                    images = [] if recipe == "uncalibrated" else calibration_set(rcfg)
                    quantized = quantize(program, variant, calibration_inputs(rcfg, variant, images))[0]
                    per = eager_accuracy(quantized, refs, cfg.accuracy.bounds.near_tie)
                    worst = min(a.centered_snr_db for a in per.values())
                    rows.append(
                        {
                            "model": name,
                            "seed": seed,
                            "recipe": recipe,
                            "worst_centered_snr_db": round(worst, 2),
                            "clamped_activations": clamped,
                        }
                    )
                    print(
                        f"{name} seed {seed} {recipe:12s} {worst:6.2f} dB  ({time.perf_counter() - start:.0f} s)",
                        flush=True,
                    )
    write(rows, "python scripts/int8_smoke_family.py " + " ".join(sys.argv[1:]))


def broken(row: dict) -> bool | None:
    """True: a broken recipe; False: the shipped one; None: grey frames on clamped activations."""
    if row["recipe"] == "shipped":
        return False
    if row["recipe"] == "grey" and row["clamped_activations"]:
        return None
    return True


def write(rows: list[dict], command: str) -> None:
    for r in rows:
        r["broken"] = broken(r)
    healthy = [r["worst_centered_snr_db"] for r in rows if r["broken"] is False]
    bad = [r["worst_centered_snr_db"] for r in rows if r["broken"] is True]
    data = {
        "command": command,
        "metric": "centered_snr_db, worst held-apart photo, eager quantized model vs eager fp32 (random weights)",
        "worst_healthy": min(healthy),
        "best_broken": max(bad),
        "rows": rows,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(data, indent=1) + "\n")
    print(f"worst healthy {min(healthy):.2f} dB, best broken {max(bad):.2f} dB -> {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
