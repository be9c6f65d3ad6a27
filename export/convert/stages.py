"""The build's stages, named once, in the order one variant goes through them. Progress lines
(`[variant] lower (xnnpack) ...`), the manifest's `stage_seconds` keys and the docstrings of the
modules that do the work all use these names.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from export.progress import Timer

STAGES: dict[str, str] = {
    "load": "the model and its weights (--weights default | random | PATH; never a silent fallback)",
    "wrap": "the app's contract around the model (normalization in or out of the graph, output 0), and its feeds",
    "rewrite": "exact, cheaper forms for XNNPACK (LayerNorm, GroupNorm, nearest upsample, padded taps)",
    "export": "torch.export at the variant's static input size",
    "quantize": "int8: PT2E static quantization calibrated on photos, then the accuracy gate's model",
    "lower": "to the backend's delegate (XNNPACK, Core ML), then the delegation gate",
    "serialize": "the program's bytes to a temp file beside the target",
    "verify": "the file read back from disk: parity, RNE 0.10's own check, int8 accuracy",
    "bundle": "the .bpte: real-photo cases and their expected outputs, verified by the runtime",
    "commit": "files renamed into place and the manifest entry written (the manifest is the commit point)",
}


@contextlib.contextmanager
def stage(timer: Timer, name: str, detail: str = "") -> Iterator[None]:
    """Time one named stage: `[label] name (detail) ...`, then its seconds under `name`."""
    if name not in STAGES:
        raise KeyError(f"unknown stage {name!r}; stages: {', '.join(STAGES)}")
    with timer.stage(name, detail):
        yield
