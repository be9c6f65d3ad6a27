"""scripts/release.py's export step with its child processes recorded, not run: builds side by side on
their shares of the cores, every benchmark after the last build, on the whole machine (end to end
against the local Hub: tests/e2e/test_release.py)."""

from __future__ import annotations

import importlib.util
import os
import threading
import time

import pytest
from support import ROOT


@pytest.fixture
def release(monkeypatch):
    spec = importlib.util.spec_from_file_location("release_script", ROOT / "scripts" / "release.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    events: list[tuple[str, str, str | None]] = []  # (step, model, RNE_EXPORT_THREADS) at start and end
    lock = threading.Lock()

    def run(cmd, log=None, env=None):
        step, model = cmd[3], next(a for a in cmd if a.endswith(".yaml") or a.endswith(".json"))
        threads = (env if env is not None else os.environ).get("RNE_EXPORT_THREADS")
        with lock:
            events.append((f"start {step}", model.split("/")[-2 if model.endswith(".json") else -1], threads))
        time.sleep(0.05)  # long enough for a second leg to start beside it
        with lock:
            events.append((f"end {step}", "", None))
        return 0, ""

    monkeypatch.setattr(module, "run", run)
    monkeypatch.setattr(os, "sched_getaffinity", lambda _: {0, 1, 2, 3})
    return module, events


def test_builds_share_the_cores_and_benchmarks_run_alone_after_them(release, tmp_path, monkeypatch):
    module, events = release
    monkeypatch.delenv("RNE_EXPORT_THREADS", raising=False)
    assert module.export(["a", "b", "c"], tmp_path, tmp_path, "random", jobs=2, bench_runs=3) == 0
    builds = [e for e in events if e[0] == "start build"]
    assert [t for _, _, t in builds] == ["2", "2", "2"]  # 4 cores, 2 legs
    steps = [e[0] for e in events]
    last_build_end = max(i for i, s in enumerate(steps) if s == "end build")
    first_bench = steps.index("start bench")
    assert first_bench > last_build_end, steps
    # one measurement at a time, nothing beside it, on every core
    for i, s in enumerate(steps):
        if s == "start bench":
            assert steps[i + 1] == "end bench", steps
    assert all(t is None for s, _, t in events if s in ("start bench", "start card"))
    assert [m for s, m, _ in events if s == "start bench"] == ["a", "b", "c"]


def test_a_set_thread_count_is_kept_and_one_job_uses_every_core(release, tmp_path, monkeypatch):
    module, events = release
    monkeypatch.setenv("RNE_EXPORT_THREADS", "3")
    module.export(["a", "b"], tmp_path, tmp_path, "random", jobs=2, bench_runs=0)
    assert {t for s, _, t in events if s == "start build"} == {"3"}
    assert not [s for s, _, _ in events if s == "start bench"]  # --bench-runs 0: no benchmark
    events.clear()
    monkeypatch.delenv("RNE_EXPORT_THREADS")
    module.export(["a"], tmp_path, tmp_path, "random", jobs=1, bench_runs=0)
    assert {t for s, _, t in events if s == "start build"} == {None}
