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
    path.write_text(text)
    return path


@pytest.fixture(scope="session")
def tiny_build(tmp_path_factory) -> Path:
    """Every variant of the tiny net, built once per session. Read-only: copy before changing it."""
    from export import pipeline
    from export.config import load_config

    out = tmp_path_factory.mktemp("tiny-build")
    pipeline.build(load_config(TINY), None, "random", out)
    return out


@pytest.fixture
def tiny_yaml_text() -> str:
    return TINY.read_text()
