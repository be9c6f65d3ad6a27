"""One .pte's load time and peak memory, measured in a fresh process (bench runs it as
`python -m export.checks.memory_probe FILE RUNS`, one child per file, so no other file's memory
counts). It imports only what running the file needs."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path


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

    from export.threads import runtime

    rt = runtime()  # the runtime itself is not the artifact's cost
    meta_program = rt.load_program(artifact)
    shape = meta_program.metadata("forward").input_tensor_meta(0).sizes()
    del meta_program
    x = torch.from_numpy(np.random.default_rng(0).random(shape, dtype=np.float32))
    rss0 = _vm("VmRSS")
    t0 = time.perf_counter()
    method = rt.load_program(artifact).load_method("forward")
    load_s = time.perf_counter() - t0
    for _ in range(runs):
        method.execute([x])
    return {"load_ms": load_s * 1e3, "peak_rss_increment_mb": (_vm("VmHWM") - rss0) / 1024}


if __name__ == "__main__":  # bench's child: not a user command, so not in the CLI
    print(json.dumps(probe(Path(sys.argv[1]), int(sys.argv[2]))))
