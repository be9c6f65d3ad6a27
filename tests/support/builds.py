"""What the tests build from: configs written beside them, seeded checkpoints (the weight family's
realistic member), the models `rne-export new` writes configs for, and builds shared by every test
worker (made once, read-only)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from support.paths import DATA

# Both kinds of weights every gate and bound is exercised on: seeded random init (near-zero,
# near-tied logits) and the realistic fixture (tens of units, clear winners).
WEIGHT_KINDS = ("random", "realistic")


def write_yaml(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def realistic_checkpoint(builder: str, path: Path, seed: int = 0) -> Path:
    """A seeded checkpoint with a trained net's logit scale and decisiveness (export.checks.weight_family)."""

    import torch

    from export.checks import weight_family

    torch.save(weight_family.make(builder, seed=seed, log=lambda *_: None), path)
    return path


def made_once(root: Path, names: list[str], make: Callable[[str, Path], None]) -> dict[str, Path]:
    """`make(name, folder)` for each name, once across all test workers: a worker first takes the
    names no other has started (so two workers build two things side by side), then waits for the
    rest. A make that failed is retried by the next worker. The folders are read-only to tests."""
    from filelock import FileLock, Timeout

    folders = {n: root / f"shared-{n}" for n in names}
    pending = list(names)
    for blocking in (False, True):
        for name in list(pending):
            lock = FileLock(f"{folders[name]}.lock")
            try:
                lock.acquire(blocking=blocking)
            except Timeout:
                continue  # another worker is making it: take the next one, come back for it
            try:
                done = root / f"shared-{name}.done"  # beside the folder: tests copy the folder
                if not done.exists():
                    shutil.rmtree(folders[name], ignore_errors=True)
                    folders[name].mkdir()
                    make(name, folders[name])
                    done.touch()
            finally:
                lock.release()
            pending.remove(name)
    return folders


def segformer_folder(folder: Path, size: int = 64) -> Path:
    """A SegFormer b0-sized model (transformers' default SegformerConfig, 4 labels, seeded init)
    saved with save_pretrained beside its preprocessor_config.json, as a maintainer keeps one."""
    import torch
    from transformers import SegformerConfig, SegformerForSemanticSegmentation, SegformerImageProcessor

    labels = ["background", "sky", "tree", "person"]
    cfg = SegformerConfig(num_labels=4, id2label=dict(enumerate(labels)), label2id={x: i for i, x in enumerate(labels)})
    torch.manual_seed(0)
    SegformerForSemanticSegmentation(cfg).save_pretrained(folder)
    SegformerImageProcessor(size={"height": size, "width": size}).save_pretrained(folder)
    return folder


# test models whose config `rne-export new` writes, as a maintainer would get it (source, value, flags)
NEW_MODELS = {
    "smp_unet": ("smp", "Unet:resnet18", {"labels": "background,road,car", "size": "64"}),
    "segformer_b0": ("transformers", "segformer", {}),
}


def source_config(name: str, folder: Path) -> Path:
    """The config of a test model: written by `rne-export new` into `folder` (NEW_MODELS; the SegFormer
    beside its save_pretrained folder), else tests/data/<name>.yaml."""
    if name not in NEW_MODELS:
        return DATA / f"{name}.yaml"
    from export.scaffold import NewArgs, new_config

    source, value, flags = NEW_MODELS[name]
    if source == "transformers":
        value = str(segformer_folder(folder / value))
    out = folder / f"{name}.yaml"
    return new_config(NewArgs(source, value, name=name, out=out, force=True, **flags), f"rne-export new --{source}")[0]


THREE_CHANNELS = """
from torch import nn


def build():
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 3, 1))
"""


# the members' recipe with fewer, smaller scenes and steps: seconds per member on the tiny net
SMALL = {"size": 64, "n_train": 32, "steps": 60}
