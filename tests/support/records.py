"""Records for tests that need a manifest entry or a published.json without an export: built from
the package's own typed records (export.records), then handed over as the JSON data a file holds,
which a test may edit."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from export.records import (
    BundleRecord,
    ConfigRef,
    Contract,
    DelegationRecord,
    Entry,
    InputInfo,
    Metrics,
    OutputInfo,
    ParityRecord,
    Tolerances,
    WeightsRef,
    from_json_data,
    json_data,
)
from export.release.published import Published
from export.rne.runtimes import PASCAL_VOC_LABELS

BASE = "https://huggingface.co/org/repo/resolve/v1.0.0"
PERFECT = Metrics(0.0, 0.0, 1.0, 0.0, 99.0, 1.0, 1.0, 1.0, 0.9)
RNE09_CONTRACT = json_data(
    Contract("rne-0.9", "normalized by the runtime", False, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
)


def sample_entry(
    path: str,
    model: str = "tiny_segnet",
    backend: str = "xnnpack",
    precision: str = "fp32",
    variant: str | None = None,
    **over,
) -> dict:
    """A complete manifest entry for tests that need one without an export (JSON data; `over`
    replaces top-level keys)."""
    entry = Entry(
        model=model,
        variant=variant or f"{backend}_{precision}",
        path=path,
        sha256="ab" * 32,
        bytes=1000,
        backend=backend,
        delegate={"xnnpack": "XnnpackBackend"}.get(backend, "CoreMLBackend"),
        precision=precision,  # type: ignore[arg-type]
        contract=Contract("rne-0.5", "d", True, None, None),
        input=InputInfo((1, 3, 8, 8), "float32", "NCHW RGB", (0.0, 1.0)),
        output=OutputInfo(0, (1, 21, 8, 8), "float32", "logits"),
        # the seed models' labels: Pascal VOC's 21, which every release line takes
        labels=tuple(label.upper() for label in PASCAL_VOC_LABELS),
        parity=ParityRecord(
            "executed", None, (), ("photo:chelsea",), {"snr_db": (">=", 40.0)}, PERFECT, {"photo:chelsea": PERFECT}
        ),
        fp16_drift_vs_fp32=None,
        tolerances=Tolerances(1e-4, 80.0, 0.99999, 0.999),
        delegation=DelegationRecord(3, 0, 1, {}),
        coreml=None,
        export_seconds=1.0,
        stage_seconds={"lower": 1.0},
        versions={"python": "3", "torch": "t", "torchvision": "tv", "executorch": "e", "coremltools": "c"},
        platform="Linux-x86_64",
        config=ConfigRef("x.yaml", "configs/x.yaml", "cd" * 32, "ef" * 32),
        weights=WeightsRef("random", "random(seed=0)"),
        git_commit=None,
        exported_at="2026-11-25T00:00:00+00:00",
        cache_key="00" * 32,
        accuracy=None,
        bundle=BundleRecord(path.replace(".pte", ".bpte"), 2, 1e-4, 0.0, "executed", "12" * 32, 2000),
    )
    return {**json_data(entry), **over}


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
    return [typed(p) for p in pub] if isinstance(pub, list) else from_json_data(Published, pub)


def change_manifest(arts: Path) -> None:
    from export.store.manifest import read_manifest, write_entry

    entry = read_manifest(arts / "manifest.json").artifacts["tiny_segnet_xnnpack_fp32.pte"]
    write_entry(
        arts, "tiny_segnet_xnnpack_fp32.pte", dataclasses.replace(entry, exported_at="2030-01-01T00:00:00+00:00")
    )
