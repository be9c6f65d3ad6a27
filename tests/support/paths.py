"""Where the tests find the checkout, their data and the two configs most of them build."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data"
TINY = DATA / "tiny_segnet.yaml"
DEEPLAB = ROOT / "configs" / "deeplab_v3_resnet50.yaml"
PERSON = DATA / "person_mask.yaml"  # the python-source test model (a sigmoid mask)
