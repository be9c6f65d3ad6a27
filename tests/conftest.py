"""The suite's fixtures and hooks: builds shared by every worker (made once per run), the token
search at the end, the marker of each test from its folder (unit/, e2e/, slow/) and the order the
workers take files in. Helpers live in support/."""

from __future__ import annotations

import os

# The local Hub server speaks LFS, not Xet: must be set before huggingface_hub is imported.
os.environ["HF_HUB_DISABLE_XET"] = "1"
# Each test worker computes on its share of the cores, its `export` child processes too (export.threads):
# thread pools that spin on cores the other worker needs slow both. Set before torch is imported.
from export import threads  # torch-free: before torch is imported

os.environ.setdefault(threads.ENV, str(threads.share(int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))))
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from support import (
    DATA,
    HF_TEST_TOKEN,
    OUTPUTS,
    SMALL,
    THREE_CHANNELS,
    TINY,
    WEIGHT_KINDS,
    made_once,
    realistic_checkpoint,
    source_config,
    token_leaks,
    write_yaml,
)
from support.hub_server import HubServer

from export.config_file import load_config

# token_scan: each test's own folder and output searched for the token before pytest deletes them;
# pytester: the test that shows that search failing runs a test session of its own
pytest_plugins = ["support.token_scan", "pytester"]

# The tier of a test is its folder: the marker comes from it (make test-fast runs tests/unit).
TIERS = ("slow", "e2e", "unit")
# make test's workers take whole files in collection order (--dist loadfile --no-loadscope-reorder): the
# slow tier first, longest file first, so no long one starts last (each alone on 2 idle cores, pytest
# --durations); then e2e, then unit
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


def tier(path: Path) -> str:
    return path.parent.name if path.parent.name in TIERS else "unit"


def pytest_collection_modifyitems(items):
    """Each test marked with its folder's tier; files ordered by tier, then LONGEST_FIRST, then as
    collected. Stable: the tests inside a file keep their order."""
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    for item in items:
        if tier(item.path) != "unit":
            item.add_marker(tier(item.path))
    items.sort(key=lambda item: (TIERS.index(tier(item.path)), rank.get(item.path.name, len(rank))))


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


@pytest.fixture(scope="session")
def shared_root(tmp_path_factory) -> Path:
    """A folder every test worker sees (under pytest-xdist: the parent of each worker's own)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if "PYTEST_XDIST_WORKER" in os.environ else base


@pytest.fixture(scope="session")
def tiny_realistic(shared_root) -> Path:
    """The tiny net fitted to synthetic scenes: logits span 15-27 units on photos, 5 classes."""
    [folder] = made_once(
        shared_root, ["tiny-ckpt"], lambda _, f: realistic_checkpoint("tiny_segnet", f / "tiny_realistic.pth")
    ).values()
    return folder / "tiny_realistic.pth"


@pytest.fixture(scope="session")
def tiny_weights(tiny_realistic):
    return {"random": "random", "realistic": str(tiny_realistic)}


@pytest.fixture(scope="session")
def tiny_builds(shared_root, tiny_weights) -> dict[str, Path]:
    """Every variant of the tiny net per weight kind, built once per test run (one kind per worker
    when two run). Read-only: copy first."""

    def build(name: str, out: Path) -> None:
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


@pytest.fixture(scope="session")
def source_builds(shared_root) -> Callable[[str], Path]:
    """name -> the folder with every default variant of that test model (random weights), built once
    per run across workers: person_mask (a python builder), smp_unet, smp_deeplabv3plus, segformer_b0."""

    def get(name: str) -> Path:
        def build(_: str, out: Path) -> None:
            from export.convert import pipeline

            pipeline.build(load_config(source_config(name, out)), None, "random", out / "artifacts")

        return made_once(shared_root, [f"src-{name}"], build)[f"src-{name}"] / "artifacts"

    return get


@pytest.fixture
def hub():
    with HubServer(HF_TEST_TOKEN) as server:
        yield server


@pytest.fixture
def here(tmp_path, monkeypatch) -> Path:
    """An empty working folder outside the checkout, with a maintainer's builder files in it."""
    monkeypatch.chdir(tmp_path)
    shutil.copy(DATA / "models" / "person_mask.py", tmp_path / "person.py")
    (tmp_path / "three.py").write_text(THREE_CHANNELS)
    return tmp_path


@pytest.fixture(scope="session")
def tiny_by_contract(shared_root):
    """The tiny net's XNNPACK artifact under each runtime contract (built once per run), with its
    eager reference."""
    from export.config import CONTRACTS
    from export.convert import pipeline
    from export.convert.wrap import wrap
    from export.sources import load_model

    def config(contract: str, folder: Path) -> Path:
        return write_yaml(folder / "tiny.yaml", TINY.read_text().replace("contract: rne-0.5", f"contract: {contract}"))

    def build(name: str, folder: Path) -> None:
        contract = name.removeprefix("tiny-contract-")
        pipeline.build(load_config(config(contract, folder)), ["xnnpack_fp32"], "random", folder)

    folders = made_once(shared_root, [f"tiny-contract-{c}" for c in CONTRACTS.names()], build)
    out = {}
    for contract in CONTRACTS.names():
        folder = folders[f"tiny-contract-{contract}"]
        cfg = load_config(folder / "tiny.yaml")
        eager = wrap(load_model(cfg, "random").module, cfg, cfg.variants[0])
        out[contract] = (folder / "tiny_segnet_xnnpack_fp32.pte", eager, cfg)
    return out


@pytest.fixture(scope="session")
def tiny_family(shared_root):
    """Every member of the weight family on the tiny net (healthy and broken), seed 0, made once
    per run with fewer, smaller scenes and steps (SMALL): seconds per member."""
    import torch

    from export.checks import weight_family

    members = (*weight_family.FAMILY, *weight_family.BROKEN_MEMBERS)

    def make(_: str, folder: Path) -> None:
        for m in members:
            state = weight_family.make_member(m, "tiny_segnet", seed=0, log=lambda *_: None, **SMALL)
            torch.save(state, folder / f"tiny_segnet_{m.name}_seed0.pth")

    [folder] = made_once(shared_root, ["tiny-family"], make).values()
    return folder, {m.name: folder / f"tiny_segnet_{m.name}_seed0.pth" for m in members}
