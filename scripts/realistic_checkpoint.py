"""A seeded, offline checkpoint whose logits look like a trained segmentation model's: one member
of the weight family (export/checks/weight_family.py says how it is made and its limits).

Usage: python scripts/realistic_checkpoint.py deeplabv3_resnet50 out.pth [--seed N] [--member NAME]
The manifest then records `file out.pth (sha256 ...)` like any other checkpoint.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from export.checks.weight_family import MEMBERS, make_member, member


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("builder", help="a model builder name, e.g. deeplabv3_resnet50 or tiny_segnet")
    ap.add_argument("out", type=Path)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--member", default="fixture", help=f"family member: {', '.join(MEMBERS)}")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--logit-range", type=float, default=None)
    args = ap.parse_args(argv)
    m = member(args.member)
    state = make_member(
        m,
        args.builder,
        seed=args.seed,
        steps=args.steps,
        logit_range="member" if args.logit_range is None else args.logit_range,
    )
    torch.save(state, args.out)
    print(f"wrote {args.out} ({m.name}: {m.why})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
