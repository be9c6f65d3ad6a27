"""Latency, measured one way for the build and for `bench`: engines run interleaved, run by run, so
machine noise hits all of them alike; medians and their ratios."""

from __future__ import annotations

import functools
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from export.records import LatencyRecord


def interleaved(engines: dict[str, Callable[[], object]], runs: int, warmup: int) -> dict[str, list[float]]:
    """Milliseconds per timed run of each engine; warm-up runs are not kept."""
    times: dict[str, list[float]] = {k: [] for k in engines}
    for r in range(warmup + runs):
        for name, fn in engines.items():
            t0 = time.perf_counter()
            fn()
            dt = time.perf_counter() - t0
            if r >= warmup:
                times[name].append(dt * 1e3)
    return times


def medians(times: dict[str, list[float]]) -> dict[str, float]:
    return {k: statistics.median(v) for k, v in times.items()}


def latency_ratio(int8_path: Path, fp32_path: Path, example, runs: int = 5) -> LatencyRecord:
    """Median latency of the int8 file over its fp32 sibling, interleaved in this process (the
    build's record; `bench` times every engine the same way)."""
    from export.threads import runtime

    rt = runtime()
    methods = {k: rt.load_program(p).load_method("forward") for k, p in (("int8", int8_path), ("fp32", fp32_path))}
    med = medians(interleaved({k: functools.partial(m.execute, [example]) for k, m in methods.items()}, runs, 1))
    return LatencyRecord(med["int8"] / med["fp32"], None, med["int8"], med["fp32"], runs, fp32_path.name)
