"""The export orchestrator: config + weights -> verified .pte/.bpte files + manifest entries, one
variant at a time through the stages export/convert/stages.py names, in that order."""

from __future__ import annotations

import datetime as dt
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from export.config import BACKENDS, ModelConfig, QuantizationRecipe, Variant
from export.convert.feeds import Feeds, OnceEach, feeds_for
from export.convert.macs import count as count_macs
from export.convert.rewrite import trim_padded_taps, xnnpack_forms
from export.convert.stages import stage
from export.convert.wrap import example_input, wrap
from export.errors import ExportError
from export.files import ensure_writable_dir, scratch, sha256_file
from export.progress import Timer
from export.provenance import git_commit, platform_id, tool_versions
from export.records import (
    AccuracyRecord,
    AutoKeepRecord,
    BundleRecord,
    ConfigRef,
    DelegationRecord,
    DriftRecord,
    Entry,
    InputInfo,
    LatencyRecord,
    OutputAdapter,
    OutputInfo,
    ParityRecord,
    RneSchemaRecord,
    WeightsRef,
)
from export.rne.rne_schema import preflight
from export.sources import LoadedModel, load_model, weights_identity
from export.sources.weights import default_checkpoint
from export.store.manifest import MANIFEST_NAME, commit_entry, set_aside_undescribed, settle
from export.store.uptodate import cache_key, record, up_to_date
from export.threads import one_thread
from export.timing import latency_ratio

if TYPE_CHECKING:  # annotations only: the stages import these where they run
    import torch
    from executorch.exir import EdgeProgramManager


@dataclass(frozen=True)
class Result:
    artifact: str
    path: Path
    entry: Entry
    up_to_date: bool = False


@dataclass
class Weights:
    """`--weights` resolved to an identity up front; the model itself is built on first need."""

    cfg: ModelConfig
    spec: str
    kind: str
    identity: str
    _loaded: LoadedModel | None = None
    load_seconds: float = 0.0

    def load(self) -> LoadedModel:
        if self._loaded is None:
            timer = Timer(self.cfg.name)
            with stage(timer, "load"):
                self._loaded = load_model(self.cfg, self.spec)
            self.load_seconds = timer.seconds["load"]
        return self._loaded


def build(
    cfg: ModelConfig, variant_names: list[str] | None, weights: str, out_dir: str | Path, force: bool = False
) -> list[Result]:
    """Export the named variants (all when None) of one model: the request checked before any work
    (variants exist, the folder is writable, calibration photos and node are there), the weights'
    identity resolved, up-to-date variants skipped, then each other variant through the stages
    (`export_variant`)."""
    # the request, before any work
    variants = [cfg.variant(n) for n in variant_names] if variant_names else list(cfg.variants)
    out = ensure_writable_dir(out_dir)
    if (out / MANIFEST_NAME).exists() and not (out / MANIFEST_NAME).is_file():
        raise ExportError(f"{out / MANIFEST_NAME} is not a file; move it away so the export can write its manifest")
    settle(out)  # finish what an interrupted export committed; drop what it did not
    names = [cfg.artifact_name(v) for v in cfg.variants]
    set_aside_undescribed(out, [*names, *map(bundle_name, names)])  # a damaged manifest: said once
    if any(v.precision == "int8" for v in variants):  # folder, count, held apart: before fp32 is built
        from export.convert.quantize import calibration_set

        calibration_set(cfg)
    preflight([(v.contract, v.min_rne) for v in variants])  # node + the npm package the schema gate runs
    # the weights' identity (the model is loaded on first need); skip what is up to date
    kind, identity = weights_identity(cfg, weights)
    w = Weights(cfg, weights, kind, identity)
    results = []
    for v in variants:
        name, key = cfg.artifact_name(v), cache_key(cfg, v, identity)
        entry = None if force else up_to_date(out, name, key)
        if entry is not None:
            print(f"[{v.name}] up to date: {name} (config, weights and tools unchanged)", file=sys.stderr, flush=True)
            results.append(Result(name, out / name, entry, up_to_date=True))
            continue
        results.append(export_variant(cfg, v, w, out, key))
    checkpoint = default_checkpoint(cfg) if kind == "default" and cfg.model.source == "torchvision" else None
    record(out, cfg, weights, identity, checkpoint)  # lets the next no-op re-export skip torch
    return results


def export_variant(cfg: ModelConfig, variant: Variant, weights: Weights, out: Path, key: str) -> Result:
    """One variant through the stages (export/convert/stages.py) after `load`; each is a function
    below with typed in and out."""
    # lower, quantize, verify and bundle import ExecuTorch (its compiler alone ~9 s): each stage imports
    # them where it runs, so an up-to-date re-export never pays for them
    from export.convert.bundle import BUNDLED_CASES
    from export.convert.lower import serialize

    name, timer = cfg.artifact_name(variant), Timer(variant.name)
    exported = export_stage(cfg, variant, weights, timer)  # wrap, rewrite, export, quantize
    feeds = exported.feeds
    reference = OnceEach(exported.parity_reference, pinned=feeds.photos()[:BUNDLED_CASES])
    with stage(timer, "lower", variant.backend):
        lowered = lower_stage(exported, cfg, variant, weights, name)
    # serialize, verify and bundle into temp files; commit: the files and their manifest entry, or nothing
    with scratch(out / name) as pte, scratch(out / bundle_name(name)) as bpte:
        with stage(timer, "serialize"):
            serialize(lowered.edge, pte)
        with stage(timer, "verify"):
            checked = verify_stage(pte, exported, reference, cfg, variant, weights.kind, name)
        with stage(timer, "bundle", ".bpte"):
            runs = checked.parity.mode == "executed"  # the file ran here: so will its bundle
            bundle = bundle_stage(pte, bpte, reference, feeds.photos(), variant, runs, bundle_name(name))
        if checked.accuracy is not None:  # a measurement, not a gate: after every gate passed
            checked = replace(
                checked, accuracy=replace(checked.accuracy, latency_ratio_to_fp32=_int8_latency(pte, cfg, variant, out))
            )
        seconds = {"load": weights.load_seconds, **timer.seconds}
        with stage(timer, "commit"):
            entry = manifest_entry(cfg, variant, weights, name, pte, lowered, checked, bundle, key, seconds)
            commit_entry(out, name, {name: pte, bundle.path: bpte}, entry)
    return Result(name, out / name, entry)


def bundle_name(artifact: str) -> str:
    return artifact[: -len(".pte")] + ".bpte"


@dataclass(frozen=True)
class Exported:
    """After wrap, rewrite, export and quantize: the eager model under its contract, and what gets lowered."""

    module: torch.nn.Module  # eager fp32 with the contract's wrapper (int8's accuracy reference)
    program: torch.export.ExportedProgram  # what is lowered (int8: the quantized program)
    parity_reference: torch.nn.Module  # what the file must match (int8: the quantized eager model)
    feeds: Feeds  # what the stages after wrap feed the model and the file (export.convert.feeds)
    calibration: list[str] | None = None  # int8: the calibration images, in order
    samples: int = 0  # int8: calibration samples fed (images x views)
    recipe: QuantizationRecipe | None = None  # int8: as applied (keep_fp32: auto resolved to layers)
    auto_keep: AutoKeepRecord | None = None  # int8 with keep_fp32: auto: the layers kept and their cost
    rewrites: tuple[str, ...] = ()  # modules replaced by exact cheaper forms before export (rewrite)
    adapter: OutputAdapter | None = None  # how the model's output became output 0 (export.convert.wrap)
    macs: dict[str, int] = field(default_factory=dict)  # the traced program's multiply-accumulates per kind


def export_stage(cfg: ModelConfig, variant: Variant, weights: Weights, timer: Timer) -> Exported:
    from export.convert.lower import export_for
    from export.convert.quantize import auto_keep_fp32, calibration_set, quantize

    loaded = weights.load()
    with stage(timer, "wrap"):
        module = wrap(loaded.module, cfg, variant)
        calibration = calibration_set(cfg) if variant.precision == "int8" else None
        feeds = feeds_for(cfg, variant, calibration)
    # XNNPACK: ops it has no kernel for in forms it delegates, and convolutions that mostly read
    # padding lose those taps (int8 too: the weight family keeps its gap on the trimmed graph,
    # docs/int8.md); the original module stays the parity and accuracy reference.
    traced: torch.nn.Module = module
    rewrites: list[str] = []
    if variant.backend == "xnnpack":
        with stage(timer, "rewrite"):
            traced, forms = xnnpack_forms(module)
            traced, rewrites = trim_padded_taps(traced, example_input(variant))
            rewrites += forms
    with stage(timer, "export"):
        program, traced_forms = export_for(traced, example_input(variant), variant)
        rewrites += traced_forms
    adapter = module.adapter
    macs = count_macs(program)  # after the rewrites: trimmed taps are not work
    if variant.precision != "int8":
        return Exported(module, program, module, feeds, rewrites=tuple(rewrites), adapter=adapter, macs=macs)
    with stage(timer, "quantize", "int8"):
        recipe = variant.quantization or QuantizationRecipe()
        auto = None
        if "auto" in recipe.keep_fp32:
            log = lambda msg: print(f"[{variant.name}] {msg}", file=sys.stderr, flush=True)  # noqa: E731
            with one_thread():  # its choice of layers must not depend on the thread count either
                (reference, quantized, samples), auto = auto_keep_fp32(
                    program, module, cfg, variant, feeds, weights.kind, log
                )
            recipe = replace(recipe, keep_fp32=auto.kept)
        else:
            reference, quantized, samples = quantize(program, variant, feeds.calibration)
    return Exported(
        module, quantized, reference, feeds, calibration, samples, recipe, auto, tuple(rewrites), adapter, macs
    )


@dataclass(frozen=True)
class Lowered:
    edge: EdgeProgramManager
    delegation: DelegationRecord
    rewrites: tuple[str, ...] = ()  # as Exported.rewrites: recorded in the manifest
    adapter: OutputAdapter | None = None  # as Exported.adapter
    macs: dict[str, int] = field(default_factory=dict)  # as Exported.macs


def lower_stage(exported: Exported, cfg: ModelConfig, variant: Variant, weights: Weights, name: str) -> Lowered:
    """Lower for the variant's backend, then the delegation gate. The seed (config, weights, tools)
    makes Core ML's otherwise random identifiers reproducible."""
    from export.convert.lower import delegation_gate, delegation_of, lower

    edge = lower(exported.program, variant, seed=f"{cfg.variant_hash(variant)}|{weights.identity}|{tool_versions()}")
    delegation = delegation_of(edge)
    delegation_gate(delegation, variant, name)
    return Lowered(edge, delegation, exported.rewrites, exported.adapter, exported.macs)


@dataclass(frozen=True)
class Checked:
    """The verify stage's records: the file read back from disk against its reference; int8 also against fp32."""

    parity: ParityRecord
    accuracy: AccuracyRecord | None
    rne_schema: RneSchemaRecord | None = None  # react-native-executorch's own check passed (None: not served)


def verify_stage(
    pte: Path, exported: Exported, reference: OnceEach, cfg: ModelConfig, variant: Variant, weights_kind: str, name: str
) -> Checked:
    """The verify stage's gates (`reference`: the parity reference, each output kept for the bundle);
    the int8 record's latency ratio is measured after the bundle (LatencyRecord(None) until then)."""
    from export.convert.quantize import accuracy_gate
    from export.convert.verify import verify

    feeds = exported.feeds
    parity, schema = verify(pte, reference, exported.program, cfg, variant, name, feeds.parity)
    if variant.precision != "int8":
        return Checked(parity, None, schema)
    gate = accuracy_gate(pte, exported.module, cfg, variant, feeds.accuracy, weights_kind, name)
    accuracy = AccuracyRecord(
        reference=gate.reference,
        images=tuple(gate.per_image),
        bounds=gate.bounds,
        bounds_values=gate.bounds_values,
        worst=gate.worst,
        per_image=gate.per_image,
        calibration=tuple(exported.calibration or ()),
        calibration_samples=exported.samples,
        recipe=exported.recipe or QuantizationRecipe(),
        latency_ratio_to_fp32=LatencyRecord(None, why="not measured yet"),
        keep_fp32_auto=exported.auto_keep,
        labels=gate.labels,
    )
    return Checked(parity, accuracy, schema)


def bundle_stage(
    pte: Path, bpte: Path, reference, photos: list, variant: Variant, runnable: bool, name: str
) -> BundleRecord:
    """The bundle stage: the .bpte with real-photo cases (the parity photos) and their eager expected
    outputs, verified by the runtime's bundled verification when the backend runs here (`runnable`)."""
    import torch

    from export.convert.bundle import BUNDLED_CASES, verify_bundle, write_bundle

    with torch.no_grad():
        cases = [(x, reference(x)) for x in photos[:BUNDLED_CASES]]
    # ExecuTorch's check is absolute (|got - want| <= atol): the parity bound, scaled by the
    # expected logits' range, means the same for any weights
    atol = variant.tolerances.max_rel_err * max(float(y.max() - y.min()) for _, y in cases)
    write_bundle(pte, bpte, cases)
    if runnable:
        verify_bundle(bpte, len(cases), atol=atol, rtol=0.0, artifact=name)
    why_not = f"not run here: {BACKENDS.get(variant.backend).runtime_id} is not in this ExecuTorch runtime"
    verified = "executed" if runnable else why_not
    return BundleRecord(name, len(cases), atol, 0.0, verified, sha256_file(bpte), bpte.stat().st_size)


def _int8_latency(tmp: Path, cfg: ModelConfig, variant: Variant, out: Path) -> LatencyRecord:
    """int8/fp32 latency when the fp32 sibling (same backend, input, contract) is in the folder."""

    sibling = out / cfg.artifact_name(replace(variant, precision="fp32"))
    if not sibling.is_file():
        return LatencyRecord(None, why=f"{sibling.name} not built in {out}; export the fp32 variant first")
    return latency_ratio(tmp, sibling, example_input(variant))


def _recorded(adapter: OutputAdapter | None, cfg: ModelConfig) -> OutputAdapter | None:
    """What the manifest says of the output: always, but for torchvision's "out" shipped as it was."""
    plain = adapter is None or (adapter.upsampled_from is None and adapter.one_channel is None)
    return None if adapter is None or (plain and cfg.model.source == "torchvision") else adapter


def manifest_entry(
    cfg: ModelConfig,
    variant: Variant,
    weights: Weights,
    name: str,
    pte: Path,
    lowered: Lowered,
    checked: Checked,
    bundle: BundleRecord,
    key: str,
    seconds: dict[str, float],
) -> Entry:
    """The commit stage's entry: what the files are (`pte`: where it waits to take its name), made of the stages' records."""
    contract = variant.runtime_contract
    h, w = variant.input.height, variant.input.width
    feed_range: tuple[float, float] | str = "ImageNet-normalized" if contract.name == "rne-0.9" else "model-normalized"
    parity = checked.parity
    # fp16 files: their parity against eager fp32 *is* the fp16 drift; said explicitly here
    drift = None
    if variant.precision == "fp16" and parity.worst is not None:
        drift = DriftRecord(**parity.worst.as_dict(), reference="eager fp32", mode=parity.mode)
    return Entry(
        model=cfg.name,
        variant=variant.name,
        path=name,
        sha256=sha256_file(pte),
        bytes=pte.stat().st_size,
        backend=variant.backend,
        delegate=BACKENDS.get(variant.backend).runtime_id,
        precision=variant.precision,  # type: ignore[arg-type]  # the config loader admits these three only
        contract=contract,
        input=InputInfo(
            (1, 3, h, w),
            "float32",
            "NCHW RGB",
            (0.0, 1.0) if contract.normalize_in_graph else feed_range,  # type: ignore[arg-type]
        ),
        output=OutputInfo(0, (1, cfg.model.num_classes, h, w), "float32", "logits"),
        labels=tuple(cfg.labels),
        parity=parity,
        fp16_drift_vs_fp32=drift,
        tolerances=variant.tolerances,
        delegation=lowered.delegation,
        graph_rewrites=lowered.rewrites,
        macs=lowered.macs or None,
        output_adapter=_recorded(lowered.adapter, cfg),
        coreml=variant.coreml,
        export_seconds=round(sum(seconds.values()), 3),
        stage_seconds=seconds,
        versions=tool_versions(),
        platform=platform_id(),
        config=ConfigRef(cfg.source.name, str(cfg.source), cfg.sha256, cfg.variant_hash(variant)),
        weights=WeightsRef(weights.kind, weights.identity),  # type: ignore[arg-type]  # weights_identity's kinds
        git_commit=git_commit(),
        exported_at=dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
        cache_key=key,
        accuracy=checked.accuracy,
        bundle=bundle,
        min_rne=variant.min_rne,
        rne_schema=checked.rne_schema,
    )
