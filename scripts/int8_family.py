"""Measure int8 accuracy on a family of weights: healthy recipe vs broken ones; the table behind
the int8 bound (export/checks/int8_family.py does the work; docs/int8.md reads the table).

Usage: python scripts/int8_family.py [--config configs/deeplab_v3_resnet50.yaml]
       [--members a,b] [--recipes shipped,grey] [--seed 0] [--out artifacts/family] [--trim]
Checkpoints are cached in --out (a member takes 5-90 s to make); results go to <out>/table.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from export.checks import weight_family
from export.checks.int8_family import RECIPES, checkpoint, measure, summary
from export.config_file import load_config

ROOT = Path(__file__).resolve().parent.parent


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default=str(ROOT / "configs" / "deeplab_v3_resnet50.yaml"))
    ap.add_argument("--members", default=",".join(weight_family.MEMBERS))
    ap.add_argument("--recipes", default=",".join(RECIPES))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=ROOT / "artifacts" / "family")
    ap.add_argument("--trim", action="store_true", help="quantize the graph with padded taps trimmed")
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    cfg = load_config(args.config)
    variant = cfg.variant("xnnpack_int8")
    args.out.mkdir(parents=True, exist_ok=True)
    table_path = args.out / "table.json"
    table = json.loads(table_path.read_text()) if table_path.is_file() else {}
    for name in args.members.split(","):
        broken_member = name in {m.name for m in weight_family.BROKEN_MEMBERS}
        recipes = ["shipped"] if broken_member else args.recipes.split(",")
        print(f"{name} (seed {args.seed}): {weight_family.member(name).why}", file=sys.stderr, flush=True)
        ckpt = checkpoint(args.out, cfg.model.builder, name, args.seed)
        res = measure(cfg, variant, ckpt, recipes, args.out, args.trim)
        key = f"{name}@{args.seed}"
        judged = name in {m.name for m in weight_family.FAMILY}  # chaotic and outlier members are not
        table[key] = {
            "member": name,
            "seed": args.seed,
            "broken_member": broken_member,
            "judged": judged,
            "trim": args.trim,
            **res,
        }
        table_path.write_text(json.dumps(table, indent=1))
    print(summary(table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
