from __future__ import annotations

import functools
import os
import re
import shutil

# The local Hub server speaks LFS, not Xet: must be set before huggingface_hub is imported.
os.environ["HF_HUB_DISABLE_XET"] = "1"
# Each test worker computes on its share of the cores, its `export` child processes too (export.threads):
# thread pools that spin on cores the other worker needs slow both. Set before torch is imported.
os.environ.setdefault(
    "RNE_EXPORT_THREADS",
    str(max(1, len(os.sched_getaffinity(0)) // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))),
)
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from token_scan import HF_TEST_TOKEN

from export.rne.runtimes import PASCAL_VOC_LABELS

# token_scan: each test's own folder and output searched for the token before pytest deletes them;
# pytester: the test that shows that search failing runs a test session of its own
pytest_plugins = ["token_scan", "pytester"]

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
TINY = DATA / "tiny_segnet.yaml"
DEEPLAB = ROOT / "configs" / "deeplab_v3_resnet50.yaml"


# The token the local Hub server accepts. Every output of the suite is searched for it at the end:
# what each test printed or raised, what its `export` child processes printed, every file under
# the run's temp folder (artifacts, manifests, published.json, generated modules).
OUTPUTS: list[tuple[str, str]] = []  # (where, text)


def run_cli(*args: str, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run `python -m export ...` in a fresh process, as a user or release pipeline would."""
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run(
        [sys.executable, "-m", "export", *args], cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=timeout
    )
    OUTPUTS.append((f"`export {' '.join(args[:1])}` output", proc.stdout + proc.stderr))
    return proc


# The lines this tool itself writes to stderr: stage progress "[label] lower (xnnpack) ...", "[label] up to
# date", notes, errors, its own warnings, the labels progress, compat's and bench's headers, retries.
OWN_STDERR = re.compile(
    r"^(\[[\w.-]+\] |rne-schema: |note: |error: |WARNING: |  labels: |compat: |bench: |  .*retrying in |\s*$)"
)


@functools.cache
def core_ml_runs() -> bool:
    """Does this host's ExecuTorch runtime execute Core ML (macOS arm64 wheel), or only estimate it?"""
    from executorch.runtime import Runtime

    return Runtime.get().backend_registry.is_available("CoreMLBackend")


def foreign_stderr_lines(stderr: str) -> list[str]:
    """stderr lines that are not this tool's own (other libraries' warnings, the runtime's log)."""
    return [ln for ln in stderr.replace("\r", "\n").splitlines() if not OWN_STDERR.match(ln)]


def token_leaks(token: str, texts: list[tuple[str, str]], folder: Path) -> list[str]:
    """Where `token` appears: in which of the texts, in which files under `folder`."""
    found = [where for where, text in texts if token in text]
    for p in sorted(folder.rglob("*")):
        if p.is_file() and not p.is_symlink() and token.encode() in p.read_bytes():
            found.append(str(p))
    return found


# make test's workers take whole files in collection order (--dist loadfile --no-loadscope-reorder): the
# longest first, so no long one starts last (each alone on 2 idle cores, pytest --durations, 22f8587)
LONGEST_FIRST = (
    "test_sources_slow.py",  # 648 s
    "test_deeplab_realistic_slow.py",  # 497 s
    "test_deeplab_slow.py",  # 401 s
    "test_configs_slow.py",  # 317 s
    "test_installed.py",
    "test_compat.py",
    "test_crash.py",
    "test_bench_card.py",
)


def pytest_collection_modifyitems(items):
    """LONGEST_FIRST's files first, in that order, then the rest. Stable: the tests inside a file keep
    their order."""
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


def pytest_runtest_logreport(report):
    OUTPUTS.extend((f"{report.nodeid} ({report.when}): {title}", text) for title, text in report.sections)
    if report.longrepr:
        OUTPUTS.append((f"{report.nodeid} ({report.when}): failure report", report.longreprtext))


@pytest.fixture(scope="session", autouse=True)
def the_token_is_in_no_output(tmp_path_factory, shared_root):
    yield
    # this worker's folder and the ones shared between workers (the other worker's own folder is
    # its own to check: it may still be writing)
    base = tmp_path_factory.getbasetemp()
    shared = [p for p in shared_root.glob("shared-*") if p.is_dir() and base not in p.parents]
    leaks = token_leaks(HF_TEST_TOKEN, OUTPUTS, base) + [f for d in shared for f in token_leaks(HF_TEST_TOKEN, [], d)]
    assert not leaks, f"the Hub token leaked into: {leaks}"


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
def shared_root(tmp_path_factory) -> Path:
    """A folder every test worker sees (under pytest-xdist: the parent of each worker's own)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if "PYTEST_XDIST_WORKER" in os.environ else base


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


@pytest.fixture(scope="session")
def tiny_realistic(shared_root) -> Path:
    """The tiny net fitted to synthetic scenes: logits span 15-27 units on photos, 5 classes."""
    [folder] = made_once(
        shared_root, ["tiny-ckpt"], lambda _, f: realistic_checkpoint("tiny_segnet", f / "tiny_realistic.pth")
    ).values()
    return folder / "tiny_realistic.pth"


# Both kinds of weights every gate and bound is exercised on: seeded random init (near-zero,
# near-tied logits) and the realistic fixture (tens of units, clear winners).
WEIGHT_KINDS = ("random", "realistic")


@pytest.fixture(scope="session")
def tiny_weights(tiny_realistic):
    return {"random": "random", "realistic": str(tiny_realistic)}


@pytest.fixture(scope="session")
def tiny_builds(shared_root, tiny_weights) -> dict[str, Path]:
    """Every variant of the tiny net per weight kind, built once per test run (one kind per worker
    when two run). Read-only: copy first."""

    def build(name: str, out: Path) -> None:
        from export.config_file import load_config
        from export.convert import pipeline

        pipeline.build(load_config(TINY), None, tiny_weights[name.removeprefix("tiny-build-")], out)

    folders = made_once(shared_root, [f"tiny-build-{kind}" for kind in WEIGHT_KINDS], build)
    return {kind: folders[f"tiny-build-{kind}"] for kind in WEIGHT_KINDS}


@pytest.fixture(scope="session")
def tiny_build(tiny_builds) -> Path:
    """The random-weights tiny build (publish, bench, card and reference tests use it)."""
    return tiny_builds["random"]


@pytest.fixture
def arts(tiny_build, tmp_path) -> Path:
    """A writable copy of the tiny build (compat, publish and verify-coreml write into it)."""
    out = tmp_path / "artifacts"
    shutil.copytree(tiny_build, out)
    return out


@pytest.fixture
def tiny_yaml_text() -> str:
    return TINY.read_text()


def sample_entry(
    path: str,
    model: str = "tiny_segnet",
    backend: str = "xnnpack",
    precision: str = "fp32",
    variant: str | None = None,
    **over,
) -> dict:
    """A complete manifest entry (schema 4) for tests that need one without an export."""
    metrics = {
        "max_abs": 0.0,
        "rmse": 0.0,
        "ref_range": 1.0,
        "rel_max_abs": 0.0,
        "snr_db": 99.0,
        "cosine": 1.0,
        "argmax_agreement": 1.0,
        "decisive_agreement": 1.0,
        "decisive_fraction": 0.9,
    }
    entry = {
        "model": model,
        "variant": variant or f"{backend}_{precision}",
        "path": path,
        "sha256": "ab" * 32,
        "bytes": 1000,
        "backend": backend,
        "delegate": {"xnnpack": "XnnpackBackend"}.get(backend, "CoreMLBackend"),
        "precision": precision,
        "contract": {
            "name": "rne-0.5",
            "description": "d",
            "normalize_in_graph": True,
            "runtime_mean": None,
            "runtime_std": None,
        },
        "input": {"shape": [1, 3, 8, 8], "dtype": "float32", "layout": "NCHW RGB", "range": [0.0, 1.0]},
        "output": {"index": 0, "shape": [1, 21, 8, 8], "dtype": "float32", "kind": "logits"},
        # the seed models' labels: Pascal VOC's 21, which every release line takes
        "labels": [label.upper() for label in PASCAL_VOC_LABELS],
        "parity": {
            "mode": "executed",
            "why": None,
            "static_checks": [],
            "inputs": ["photo:chelsea"],
            "bounds": {"snr_db": [">=", 40.0]},
            "worst": metrics,
            "per_input": {"photo:chelsea": metrics},
        },
        "fp16_drift_vs_fp32": None,
        "tolerances": {
            "max_rel_err": 1e-4,
            "min_snr_db": 80.0,
            "min_cosine": 0.99999,
            "min_decisive_agreement": 0.999,
            "near_tie": 0.02,
        },
        "delegation": {
            "delegated_nodes": 3,
            "non_delegated_compute_nodes": 0,
            "delegated_subgraphs": 1,
            "non_delegated_ops": {},
        },
        "coreml": None,
        "export_seconds": 1.0,
        "stage_seconds": {"lower": 1.0},
        "versions": {"python": "3", "torch": "t", "torchvision": "tv", "executorch": "e", "coremltools": "c"},
        "platform": "Linux-x86_64",
        "config": {"file": "x.yaml", "path": "configs/x.yaml", "sha256": "cd" * 32, "variant_hash": "ef" * 32},
        "weights": {"kind": "random", "identity": "random(seed=0)"},
        "git_commit": None,
        "exported_at": "2026-11-25T00:00:00+00:00",
        "cache_key": "00" * 32,
        "accuracy": None,
        "bundle": {
            "path": path.replace(".pte", ".bpte"),
            "cases": 2,
            "atol": 1e-4,
            "rtol": 0.0,
            "verified": "executed",
            "sha256": "12" * 32,
            "bytes": 2000,
        },
    }
    entry.update(over)
    return entry


BASE = "https://huggingface.co/org/repo/resolve/v1.0.0"


RNE09_CONTRACT = {
    "name": "rne-0.9",
    "description": "normalized by the runtime",
    "normalize_in_graph": False,
    "runtime_mean": [0.485, 0.456, 0.406],
    "runtime_std": [0.229, 0.224, 0.225],
}


def published_file(artifact: str | None, path_in_repo: str, url: str) -> dict:
    """A published.json file record (the digest and size are the sample entries')."""
    return {"artifact": artifact, "path_in_repo": path_in_repo, "url": url, "sha256": "ab" * 32, "bytes": 1000}


def published_record(repo: str, tag: str, commit: str, files: list[dict], artifacts: dict) -> dict:
    """published.json as `publish --push` writes it (schema 1), as JSON data tests may edit."""
    return {
        "schema": 1,
        "repo": repo,
        "tag": tag,
        "commit": commit,
        "endpoint": "https://huggingface.co",
        "published_at": "2026-12-04T00:00:00+00:00",
        "files": files,
        "random_weights": [],
        "compat_not_proven": [],
        "manifest": {"schema": 4, "artifacts": artifacts},
    }


def published(with_coreml: bool = True, with_int8: bool = False, with_rne09: bool = False) -> dict:
    arts, files = {}, []

    def add(name, backend, precision, variant=None, model="deeplab_v3_resnet50", **over):
        arts[name] = sample_entry(name, model, backend, precision, variant, **over)
        files.append(published_file(name, f"{backend}/{name}", f"{BASE}/{backend}/{name}"))

    add("deeplab_v3_resnet50_xnnpack_fp32.pte", "xnnpack", "fp32")
    if with_coreml:
        add("deeplab_v3_resnet50_coreml_fp16.pte", "coreml", "fp16")
    if with_int8:
        add("deeplab_v3_resnet50_xnnpack_int8.pte", "xnnpack", "int8")
    if with_rne09:
        name = "deeplab_v3_resnet50_xnnpack_fp32_rne09.pte"
        add(name, "xnnpack", "fp32", "xnnpack_fp32_rne09", contract=RNE09_CONTRACT)
    files.append(published_file(None, "manifest.json", f"{BASE}/manifest.json"))
    return published_record("org/repo", "v1.0.0", "c" * 40, files, arts)


def typed(pub: dict | list[dict]):
    """The Published record(s) codegen takes, from published() data (checked like a file)."""
    from export.records import Published, from_json_data

    return [typed(p) for p in pub] if isinstance(pub, list) else from_json_data(Published, pub)


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


@pytest.fixture(scope="session")
def source_builds(shared_root) -> Callable[[str], Path]:
    """name -> the folder with every default variant of that test model (random weights), built once
    per run across workers: person_mask (a python builder), smp_unet, smp_deeplabv3plus, segformer_b0."""

    def get(name: str) -> Path:
        def build(_: str, out: Path) -> None:
            from export.config_file import load_config
            from export.convert import pipeline

            pipeline.build(load_config(source_config(name, out)), None, "random", out / "artifacts")

        return made_once(shared_root, [f"src-{name}"], build)[f"src-{name}"] / "artifacts"

    return get
