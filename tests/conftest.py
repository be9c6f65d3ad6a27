from __future__ import annotations

import os

# The local Hub server speaks LFS, not Xet: must be set before huggingface_hub is imported.
os.environ["HF_HUB_DISABLE_XET"] = "1"
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
TINY = DATA / "tiny_segnet.yaml"
DEEPLAB = ROOT / "configs" / "deeplab_v3_resnet50.yaml"


def run_cli(*args: str, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run `python -m export ...` in a fresh process, as a user or release pipeline would."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "export", *args], cwd=ROOT, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


def write_yaml(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def realistic_checkpoint(builder: str, path: Path, seed: int = 0) -> Path:
    """A seeded checkpoint with a trained net's logit scale and decisiveness (scripts/realistic_checkpoint.py)."""
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import realistic_checkpoint as rc
    finally:
        sys.path.pop(0)
    import torch

    torch.save(rc.make(builder, seed=seed, log=lambda *_: None), path)
    return path


@pytest.fixture(scope="session")
def tiny_realistic(tmp_path_factory) -> Path:
    """The tiny net fitted to synthetic scenes: logits span 15-27 units on photos, 5 classes."""
    return realistic_checkpoint("tiny_segnet", tmp_path_factory.mktemp("tiny-ckpt") / "tiny_realistic.pth")


# Both kinds of weights every gate and bound is exercised on: seeded random init (near-zero,
# near-tied logits) and the realistic fixture (tens of units, clear winners).
WEIGHT_KINDS = ("random", "realistic")


@pytest.fixture(scope="session")
def tiny_weights(tiny_realistic):
    return {"random": "random", "realistic": str(tiny_realistic)}


@pytest.fixture(scope="session")
def tiny_builds(tmp_path_factory, tiny_weights) -> dict[str, Path]:
    """Every variant of the tiny net per weight kind, built once per session. Read-only: copy first."""
    from export import pipeline
    from export.config import load_config

    outs = {}
    for kind, weights in tiny_weights.items():
        outs[kind] = tmp_path_factory.mktemp(f"tiny-build-{kind}")
        pipeline.build(load_config(TINY), None, weights, outs[kind])
    return outs


@pytest.fixture(scope="session")
def tiny_build(tiny_builds) -> Path:
    """The random-weights tiny build (publish, bench, card and reference tests use it)."""
    return tiny_builds["random"]


@pytest.fixture
def tiny_yaml_text() -> str:
    return TINY.read_text()
