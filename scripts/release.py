"""One release, the same steps locally (`make release`) and on CI (.github/workflows/release.yml):

1. matrix   the model configs (configs/*.yaml, or the ones named)
2. export   every model's variants, up to --jobs models at a time, each in its own process on its
            share of the cores; then, one model at a time on the whole machine, its benchmark
            (--bench-runs, 0: none) and model card; a failed gate fails that model (its message
            printed) after the others end
3. compat   each model's files in the older ExecuTorch runtimes its RNE releases embed (a failure
            fails the release before anything is published); --skip-compat skips it, loudly
4. publish  each model's folder to its repo (--repo 'owner/{model}') under --tag, verified
5. merge    every published.json into one modelUrls.ts + model_urls.py in <out>/release/

`all` runs 2 to 5; CI runs 2 per model on its own runner, then 4 and 5 once.
Only the standard library here: each step is `python -m export ...` in a child process.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def models_in(configs: Path, names: list[str] | None) -> list[str]:
    """The model configs to release: all of configs/*.yaml (model files only) or the named ones."""
    known = sorted(p.stem for p in configs.glob("*.yaml"))
    if not names:
        return known
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SystemExit(f"error: no model config {', '.join(unknown)} in {configs}; valid: {', '.join(known)}")
    return list(dict.fromkeys(names))


def export_cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "export", *args]


def run(cmd: list[str], log: Path | None = None, env: dict[str, str] | None = None) -> tuple[int, str]:
    """Run one step, its output straight through or (parallel legs) into `log`; returns the exit
    code and its last `error:` line (or its last lines), for the summary."""
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
    tail: list[str] = []
    error = None
    with open(log, "w") if log is not None else open(os.devnull, "w") as sink:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert proc.stdout is not None
        for line in proc.stdout:
            (sink if log is not None else sys.stdout).write(line)
            tail = [*tail[-4:], line.rstrip("\n")]
            if line.startswith("error:"):
                error = line.rstrip("\n")
        rc = proc.wait()
    return rc, error or "\n".join(tail)


# export.threads.ENV and export.threads.share, written out: this script imports nothing from the tool
THREADS = "RNE_EXPORT_THREADS"


def build_env(jobs: int) -> dict[str, str]:
    """A build leg's environment: with `jobs` legs side by side, each on its share of the cores
    (lowering is mostly one-threaded Python; thread pools spinning on each other's cores slow both),
    unless RNE_EXPORT_THREADS is set already."""
    env = dict(os.environ)
    if jobs > 1 and not env.get(THREADS, "").strip():
        env[THREADS] = str(max(1, len(os.sched_getaffinity(0)) // jobs))
    return env


def build_one(
    model: str, configs: Path, out: Path, weights: str, log: Path | None, env: dict[str, str]
) -> tuple[int, str]:
    cmd = export_cli(
        "build", "--config", str(configs / f"{model}.yaml"), "--weights", weights, "--out", str(out / model)
    )
    return run(cmd, log, env)


def measure_one(
    model: str, configs: Path, out: Path, weights: str, log: Path | None, bench_runs: int
) -> tuple[int, str]:
    """The model's benchmark (the card's host table; the macOS job adds Apple silicon's beside it),
    run while nothing else runs, measured again only when the files changed (so a re-run of a
    release changes nothing); then its card."""
    folder = out / model
    if bench_runs and not bench_current(folder):
        bench = ("bench", "--manifest", str(folder / "manifest.json"), "--runs", str(bench_runs))
        rc, said = run(
            export_cli(*bench, "--config", str(configs / f"{model}.yaml"), "--weights", weights),
            log and log.with_suffix(".bench.log"),
        )
        if rc != 0:
            return rc, said
    return run(export_cli("card", "--manifest", str(folder / "manifest.json")), log and log.with_suffix(".card.log"))


def bench_current(folder: Path) -> bool:
    """Did bench.json measure exactly the files the manifest lists now?"""
    try:
        measured = json.loads((folder / "bench.json").read_text()).get("artifacts")
        listed = json.loads((folder / "manifest.json").read_text())["artifacts"]
    except (OSError, ValueError, KeyError, AttributeError):
        return False
    return measured == {name: entry.get("sha256") for name, entry in listed.items()}


def export(models: list[str], configs: Path, out: Path, weights: str, jobs: int, bench_runs: int = 0) -> int:
    """2. Builds, `jobs` models at a time on their shares of the cores; then each built model's
    benchmark and card in turn (a timing taken beside a build would measure the build too); prints
    each model's time and returns the first failure's code."""
    env = build_env(jobs)

    def log(model: str) -> Path | None:  # parallel legs write logs, so their lines do not interleave
        return out / "logs" / f"{model}.log" if jobs > 1 else None

    def build(model: str) -> tuple[int, str, float]:
        start = time.perf_counter()
        rc, said = build_one(model, configs, out, weights, log(model), env)
        return rc, said, time.perf_counter() - start

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        built = dict(zip(models, pool.map(build, models), strict=True))
    results = {}
    for m, (rc, said, seconds) in built.items():
        if rc == 0:
            start = time.perf_counter()
            rc, said = measure_one(m, configs, out, weights, log(m), bench_runs)
            seconds += time.perf_counter() - start
        results[m] = (rc, said, seconds)
    failed = [(m, rc, said) for m, (rc, said, _) in results.items() if rc != 0]
    for m, (rc, _, seconds) in results.items():
        print(f"export {m}: {'ok' if rc == 0 else f'FAILED (exit {rc})'} in {seconds:.0f} s", flush=True)
    for m, rc, said in failed:
        print(f"error: export {m} failed (exit {rc}): {said}", file=sys.stderr, flush=True)
    return failed[0][1] if failed else 0


def compat(models: list[str], out: Path, runtimes: list[str]) -> int:
    """3. Runtime compatibility of each model's files (recorded in its manifest)."""
    for m in models:
        rc, _ = run(
            export_cli(
                "compat", "--manifest", str(out / m / "manifest.json"), *[a for r in runtimes for a in ("--runtime", r)]
            )
        )
        if rc != 0:
            print(f"error: compat {m} failed (exit {rc}); nothing was published", file=sys.stderr)
            return rc
    return 0


def repo_for(pattern: str, model: str, several: bool) -> str:
    if "{model}" not in pattern and several:
        raise SystemExit(
            f"error: --repo {pattern}: several models need one repo each; use a pattern like 'owner/{{model}}'"
        )
    return pattern.replace("{model}", model.replace("_", "-"))


def publish(models: list[str], out: Path, repo: str, tag: str, allow_random: bool, skip_compat: bool) -> int:
    """4. Each model's folder to its repo under the tag (publish verifies before it tags)."""
    for m in models:
        cmd = ["publish", "--manifest", str(out / m / "manifest.json"), "--repo", repo_for(repo, m, len(models) > 1)]
        cmd += ["--tag", tag, "--push"] + (["--allow-random-weights"] if allow_random else [])
        cmd += ["--skip-compat"] if skip_compat else []
        rc, _ = run(export_cli(*cmd))
        if rc != 0:
            print(f"error: publish {m} failed (exit {rc}); the models before it are published", file=sys.stderr)
            return rc
    return 0


def merge(models: list[str], out: Path) -> int:
    """5. One constants module from every model's published.json."""
    published = [str(out / m / "published.json") for m in models]
    return run(export_cli("codegen", *published, "--out", str(out / "release")))[0]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("step", choices=["matrix", "export", "compat", "publish", "merge", "all"])
    p.add_argument("--models", nargs="*", help="model config names (default: every configs/*.yaml)")
    p.add_argument("--configs", type=Path, default=ROOT / "configs")
    p.add_argument("--out", type=Path, default=ROOT / "artifacts")
    p.add_argument("--weights", default="default", help="as for `export build`: default | random | PATH")
    p.add_argument(
        "--jobs",
        "-j",
        type=int,
        default=1,
        help="models built at once, each on its share of the cores (benchmarks: one at a time)",
    )
    p.add_argument("--repo", help="'owner/{model}' ({model} with dashes), or one repo for one model")
    p.add_argument("--tag", help="version tag, e.g. v1.0.0")
    p.add_argument("--allow-random-weights", action="store_true", help="publish test builds (random weights)")
    p.add_argument("--skip-compat", action="store_true", help="skip the runtime compatibility step (said loudly)")
    p.add_argument("--runtime", action="append", default=[], help="compat: only this ExecuTorch version")
    p.add_argument("--bench-runs", type=int, default=10, help="export: timed bench runs per engine (0: no bench)")
    a = p.parse_args(argv)
    models = models_in(a.configs, a.models)
    if a.step == "matrix":  # for the workflow's matrix: a JSON list on one line
        print(json.dumps(models))
        return 0
    if a.step in ("publish", "all") and not (a.repo and a.tag):
        p.error(f"{a.step} needs --repo and --tag")
    if a.jobs < 1:
        p.error("--jobs must be >= 1")
    if a.step in ("export", "all"):
        rc = export(models, a.configs, a.out, a.weights, a.jobs, a.bench_runs)
        if rc:
            return rc
    if a.step in ("compat", "all"):
        if a.skip_compat:
            print(
                "WARNING: --skip-compat: no runtime compatibility check; publish records what was not proven",
                flush=True,
            )
        else:
            rc = compat(models, a.out, a.runtime)
            if rc:
                return rc
    if a.step in ("publish", "all"):
        rc = publish(models, a.out, a.repo, a.tag, a.allow_random_weights, a.skip_compat)
        if rc:
            return rc
    if a.step in ("merge", "publish", "all"):
        return merge(models, a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
