"""The records every stage hands on and every reader reads: one definition each.

The build's stages return them (parity, delegation, accuracy, bundle, latency), the configs are
parsed into the option records (contract, tolerances, recipe, Core ML options, accuracy bounds),
and `Entry` is one artifact's line in manifest.json, made of them; `Published` is published.json
(bench.json and profile.json: export/bench_records.py). Stdlib dataclasses, so configs and stages build them
plainly; pydantic validates them where JSON comes in, and `write_with_schema` writes each file with
its JSON Schema beside it (manifest.schema.json, published.schema.json). No torch import.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, cast

import pydantic

from export.files import write_bytes_atomic

STRICT = pydantic.ConfigDict(extra="forbid")  # a key this tool does not know is a wrong manifest
# A file the manifest names is a bare name in the manifest's own folder: nothing it says can make
# publish, bench, card or run read or upload a file elsewhere ("../x", "/etc/x", ".hidden").
FileName = Annotated[str, pydantic.StringConstraints(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,200}$")]


@dataclass(frozen=True)
class Contract:
    """What the hook's native runtime feeds the model and reads back (export.config.CONTRACTS)."""

    __pydantic_config__ = STRICT
    name: str
    description: str
    normalize_in_graph: bool  # True: the graph applies ImageNet mean/std itself
    runtime_mean: tuple[float, float, float] | None  # what the runtime subtracts after /255
    runtime_std: tuple[float, float, float] | None

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class InputInfo:
    __pydantic_config__ = STRICT
    shape: tuple[int, int, int, int]
    dtype: str
    layout: str
    range: tuple[float, float] | Literal["ImageNet-normalized", "model-normalized"]


@dataclass(frozen=True)
class OutputInfo:
    __pydantic_config__ = STRICT
    index: int
    shape: tuple[int, int, int, int]
    dtype: str
    kind: str


@dataclass(frozen=True)
class OutputAdapter:
    """How the model's own output became output 0, [1,K,H,W] float32 class scores (export/convert/wrap.py)."""

    __pydantic_config__ = STRICT
    picked: str  # "tensor", "dict key 'out'", "tuple index 0"
    channels: int  # what the model itself outputs (1: a one-channel mask)
    # bilinear upsample in the graph from the model's output size to the input's (SegFormer: 1/4)
    upsampled_from: tuple[int, int] | None = None
    # one channel -> two class scores [background, class]: logit z -> [-z/2, z/2] (softmax = sigmoid);
    # probability p -> [1-p, p] (argmax = p > 0.5, finite where a saturated sigmoid's logit is not)
    one_channel: Literal["logit", "probability"] | None = None

    def describe(self) -> str:
        parts = [self.picked]
        if self.upsampled_from:
            parts.append(f"bilinear upsample {self.upsampled_from[0]}x{self.upsampled_from[1]} -> input size")
        if self.one_channel == "logit":
            parts.append("one-channel logit z -> [-z/2, z/2]")
        elif self.one_channel == "probability":
            parts.append("one-channel probability p -> [1-p, p]")
        return "; ".join(parts)


@dataclass(frozen=True)
class Metrics:
    """One file's logits against its reference's (export.metrics.compare: how each is computed)."""

    __pydantic_config__ = STRICT
    max_abs: float  # information: scales with the logits
    rmse: float  # information: scales with the logits
    ref_range: float  # the reference's logit range (max - min): the scale the relative error uses
    rel_max_abs: float
    snr_db: float
    cosine: float
    argmax_agreement: float  # all pixels (information for parity; the accuracy gate's metric)
    decisive_agreement: float
    decisive_fraction: float  # share of pixels that are not near-ties

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Tolerances:
    """Parity bounds that mean the same for any weights (see export.metrics): no absolute error
    bound, since logits of random init span ~1 unit and a trained net's tens of units."""

    __pydantic_config__ = STRICT
    max_rel_err: float  # worst per-input max |file - reference| / reference logit range
    min_snr_db: float  # worst per-input 10*log10(sum ref^2 / sum err^2)
    min_cosine: float  # worst per-input cosine similarity of flattened logits
    min_decisive_agreement: float  # worst per-input argmax agreement on pixels that are not near-ties
    near_tie: float = 0.02  # top-2 margin below this fraction of the logit range is a near-tie


@dataclass(frozen=True)
class CoreMLOptions:
    __pydantic_config__ = STRICT
    deployment_target: str = "iOS17"  # coremltools.target member
    compute_units: str = "ALL"  # coremltools.ComputeUnit member
    lower_full_graph: bool = False  # True: fail instead of leaving any op outside Core ML


@dataclass(frozen=True)
class Accuracy:
    """The int8 file vs eager fp32 on one photo. Agreement, mIoU and SNR depend on how many
    near-ties the weights have; `snr_vs_noise_db` (the gated one), `stable_agreement` and
    `flips_vs_noise` are normalized by the fp32 model's own stability under sensor noise."""

    __pydantic_config__ = STRICT
    argmax_agreement: float  # all pixels (what the app shows)
    miou: float  # masks vs fp32's
    snr_db: float  # logits vs fp32's
    # SNR of the logits with each pixel's mean over classes removed (softmax and argmax ignore it):
    # the same for any logit scale and offset
    centered_snr_db: float
    # centered_snr_db minus the same SNR of fp32 on the photo with 1 % sensor noise (worst draw):
    # int8's error in units of what noise does to this model; near-ties and logit scale cancel
    snr_vs_noise_db: float
    decisive_agreement: float  # pixels whose fp32 top-2 margin is >= near_tie x the logit range
    decisive_fraction: float
    stable_agreement: float  # pixels whose fp32 class every noise draw keeps
    stable_fraction: float
    noise_agreement: float  # fp32 vs fp32 on the noisy photo (worst draw): the model's own stability
    flips_vs_noise: float  # int8's flipped pixels / the noise's (mean over draws; floor: 1 pixel)


# metric -> whether higher is better; the order tables print in
ACCURACY_METRICS = {
    "snr_vs_noise_db": True,
    "centered_snr_db": True,
    "stable_agreement": True,
    "flips_vs_noise": False,
    "decisive_agreement": True,
    "argmax_agreement": True,
    "miou": True,
    "snr_db": True,
    "stable_fraction": True,
    "decisive_fraction": True,
    "noise_agreement": True,
}


@dataclass(frozen=True)
class AccuracyBounds:
    """Bounds on the int8 file vs eager fp32, each metric's worst held-apart photo (metrics:
    Accuracy). A bound left out (None) is recorded for information, not gated."""

    __pydantic_config__ = STRICT
    # int8's logits SNR minus fp32's under 1 % sensor noise: error relative to the model's own stability
    min_snr_vs_noise_db: float | None = None
    # ...unless int8's centered SNR is at least this: then its logits are faithful whatever the
    # model's noise sensitivity (a model that barely reacts to its input has a huge noise SNR)
    enough_centered_snr_db: float | None = None
    # logits SNR with each pixel's mean over classes removed: the same for any logit scale
    min_centered_snr_db: float | None = None
    # normalized by the fp32 model's own stability under sensor noise
    min_stable_agreement: float | None = None  # agreement on pixels fp32 keeps under noise
    max_flips_vs_noise: float | None = None  # int8's flipped pixels / noise's
    # agreement on pixels whose fp32 top-2 margin is >= near_tie x the logit range
    min_decisive_agreement: float | None = None
    # these depend on how many near-ties the weights have
    min_argmax_agreement: float | None = None  # all pixels
    min_miou: float | None = None  # masks vs fp32's
    min_snr_db: float | None = None  # logits vs fp32's
    near_tie: float = 0.05

    def failures(self, worst: dict[str, float]) -> list[str]:
        """'metric=value (bound op b)' for each bound the worst-photo metrics break."""
        failed = check(worst, self.gated())
        if self.enough_centered_snr_db is not None and worst["centered_snr_db"] >= self.enough_centered_snr_db:
            failed = [f for f in failed if not f.startswith("snr_vs_noise_db=")]
        return failed

    def gated(self) -> dict[str, tuple[str, float]]:
        """metric -> (op, bound) for the bounds that are set."""
        out: dict[str, tuple[str, float]] = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.name not in ("near_tie", "enough_centered_snr_db") and v is not None:
                op, metric = f.name.split("_", 1)
                out[metric] = (">=" if op == "min" else "<=", v)
        return out


def check(values: Mapping[str, float], bounds: Mapping[str, tuple[str, float]]) -> list[str]:
    """Failed checks as 'name=value (bound op b)'; NaN always fails. bounds: name -> (op, bound)."""
    failed = []
    for name, (op, bound) in bounds.items():
        v = values[name]
        ok = (v <= bound) if op == "<=" else (v >= bound)
        if not ok or math.isnan(v):
            failed.append(f"{name}={v:.6g} (bound {op} {bound:g})")
    return failed


@dataclass(frozen=True)
class QuantizationRecipe:
    """int8 PT2E recipe for XNNPACK (weights symmetric int8, activations per-tensor int8)."""

    __pydantic_config__ = STRICT
    activation_observer: str = "histogram"  # histogram (L2-optimal clipping) | minmax
    per_channel: bool = True  # per-output-channel weight scales
    # module names left unquantized (e.g. model.classifier.4), or `auto`: the most sensitive layers,
    # one at a time, until the accuracy gate passes (export.convert.quantize.auto_keep_fp32)
    keep_fp32: tuple[str, ...] | str = ()
    # keep_fp32: auto stops before the kept layers' extra bytes pass this share of the int8 weights.
    # why 5 %: a layer or two of a ResNet (DeepLabV3-ResNet50's largest 3x3 conv: 2.4 MB fp32 of
    # ~40 MB int8); more, and the file stops being an int8 file
    keep_fp32_cap: float = 0.05


@dataclass(frozen=True)
class ParityRecord:
    __pydantic_config__ = STRICT
    mode: Literal["executed", "emulated", "not executed"]
    why: str | None
    static_checks: tuple[str, ...]
    inputs: tuple[str, ...]
    bounds: dict[str, tuple[Literal["<=", ">="], float] | float]
    worst: Metrics | None  # None: not executed here (Core ML fp32 on Linux)
    per_input: dict[str, Metrics]


@dataclass(frozen=True)
class DriftRecord(Metrics):
    """fp16 files: their parity against eager fp32 *is* the fp16 drift; said explicitly."""

    __pydantic_config__ = STRICT
    reference: str
    mode: str


@dataclass(frozen=True)
class DelegationRecord:
    __pydantic_config__ = STRICT
    delegated_nodes: int
    non_delegated_compute_nodes: int
    delegated_subgraphs: int
    non_delegated_ops: dict[str, int]


@dataclass(frozen=True)
class LatencyRecord:
    """int8/fp32 median latency, interleaved runs; ratio None (with why) when fp32 was not built."""

    __pydantic_config__ = STRICT
    ratio: float | None
    why: str | None = None
    int8_ms: float | None = None
    fp32_ms: float | None = None
    runs: int | None = None
    fp32_artifact: str | None = None


@dataclass(frozen=True)
class LabelScoresRecord:
    __pydantic_config__ = STRICT
    miou: float
    pixel_accuracy: float


@dataclass(frozen=True)
class LabelsRecord:
    """mIoU and pixel accuracy against ground truth (accuracy.labels, VOC layout)."""

    __pydantic_config__ = STRICT
    folder: str
    images: int
    seconds_per_image: float
    scores: dict[str, LabelScoresRecord]  # "eager fp32", "int8 file", "fp16 estimate" (an fp16 variant)
    miou_drop: float
    max_miou_drop: float


@dataclass(frozen=True)
class AutoKeepStep:
    __pydantic_config__ = STRICT
    kept: tuple[str, ...]
    passes: bool
    worst: Accuracy  # the eager quantized model vs fp32 with these layers in fp32


@dataclass(frozen=True)
class AutoKeepRecord:
    """`keep_fp32: auto`: the layers kept in fp32 and what they cost."""

    __pydantic_config__ = STRICT
    kept: tuple[str, ...]
    extra_bytes: int  # fp32 minus int8 bytes of the kept layers' weights
    share_of_int8_weights: float
    cap: float
    bounds: Literal["smoke", "release"]
    steps: tuple[AutoKeepStep, ...]


@dataclass(frozen=True)
class AccuracyRecord:
    __pydantic_config__ = STRICT
    reference: str
    images: tuple[str, ...]
    bounds: Literal["smoke", "release"]
    bounds_values: AccuracyBounds
    worst: Accuracy
    per_image: dict[str, Accuracy]
    calibration: tuple[str, ...]
    calibration_samples: int
    recipe: QuantizationRecipe
    latency_ratio_to_fp32: LatencyRecord
    keep_fp32_auto: AutoKeepRecord | None = None
    labels: LabelsRecord | None = None


@dataclass(frozen=True)
class BundleRecord:
    __pydantic_config__ = STRICT
    path: FileName
    cases: int
    atol: float
    rtol: float
    verified: str  # "executed", or why not
    sha256: str
    bytes: int


@dataclass(frozen=True)
class ConfigRef:
    __pydantic_config__ = STRICT
    file: str
    path: str
    sha256: str  # of the expanded config
    variant_hash: str


@dataclass(frozen=True)
class WeightsRef:
    __pydantic_config__ = STRICT
    kind: Literal["default", "path", "random"]
    identity: str


@dataclass(frozen=True)
class CompatResult:
    """One artifact in one older ExecuTorch runtime, as `export compat` found it."""

    __pydantic_config__ = STRICT
    executorch: str
    rne: str  # the React Native ExecuTorch releases that embed this runtime
    loads: bool | None  # None: not runnable on the checking host (Core ML off Apple platforms)
    error: str | None  # the runtime's own words when it does not load or run; failed bounds otherwise
    vs_eager: Metrics | None  # on the bundled photos, as the parity gate compares
    vs_exporter_max_abs: float | None  # against the exporting runtime's output on the same inputs
    passed: bool


@dataclass(frozen=True)
class RneSchemaRecord:
    """The export gate that ran react-native-executorch's own load-time check (export/rne/rne_schema.py)
    on the file read back from disk; an entry exists only if it passed."""

    __pydantic_config__ = STRICT
    package: str  # the npm release whose compiled check ran, e.g. react-native-executorch@0.10.2
    passed: bool


@dataclass(frozen=True)
class Entry:
    """One artifact: written only after its file passed every gate."""

    __pydantic_config__ = STRICT
    model: str
    variant: str
    path: FileName
    sha256: str
    bytes: int
    backend: str
    delegate: str
    precision: Literal["fp32", "fp16", "int8"]
    contract: Contract
    input: InputInfo
    output: OutputInfo
    labels: tuple[str, ...]
    parity: ParityRecord
    fp16_drift_vs_fp32: DriftRecord | None
    tolerances: Tolerances
    delegation: DelegationRecord
    coreml: CoreMLOptions | None
    export_seconds: float
    stage_seconds: dict[str, float]
    versions: dict[str, str]
    platform: str
    config: ConfigRef
    weights: WeightsRef
    git_commit: str | None
    exported_at: str
    cache_key: str
    accuracy: AccuracyRecord | None  # int8 only
    bundle: BundleRecord
    min_rne: str | None = None  # the oldest React Native ExecuTorch release the file claims
    compat: dict[str, CompatResult] | None = None  # executorch version -> result (`export compat`)
    rne_schema: RneSchemaRecord | None = None  # None: no schema-checking release line serves its contract
    # modules replaced by exact, cheaper forms before export (export.convert.rewrite), e.g. ASPP convolutions
    # that mostly read padding; parity is against the original module
    graph_rewrites: tuple[str, ...] = ()
    output_adapter: OutputAdapter | None = None  # how the model's output became output 0 (None: as it was)
    # multiply-accumulates of the traced program per kind (export.convert.macs); None: built before they were counted
    macs: dict[str, int] | None = None


@dataclass(frozen=True)
class Manifest:
    __pydantic_config__ = STRICT
    schema: int
    artifacts: dict[str, Entry] = field(default_factory=dict)


# --- JSON in and out: pydantic validates and serializes every record above ---------------------

R = TypeVar("R")
_ADAPTERS: dict[type, pydantic.TypeAdapter[Any]] = {}


def adapter(cls: type) -> pydantic.TypeAdapter[Any]:
    """pydantic's validator and serializer of a record type, built once per type."""
    if cls not in _ADAPTERS:
        _ADAPTERS[cls] = pydantic.TypeAdapter(cls)
    return _ADAPTERS[cls]


def first_error(e: pydantic.ValidationError) -> str:
    """ "dotted.key: message" of a validation's first error (and how many more)."""
    err = e.errors()[0]
    where = ".".join(str(p) for p in err["loc"]) or "<top level>"
    more = f" (and {e.error_count() - 1} more)" if e.error_count() > 1 else ""
    return f"{where}: {err['msg']}{more}"


def from_json_data(cls: type[R], data: Any) -> R:
    """Validated as the JSON it is, strictly: `"bytes": "12"` is wrong, not a value to coerce
    (python-mode lax validation would take it). Raises pydantic.ValidationError."""
    return cast(R, adapter(cls).validate_json(json.dumps(data), strict=True))


def json_data(record: object) -> Any:
    return adapter(type(record)).dump_python(record, mode="json")


def json_schema(cls: type, title: str) -> dict[str, Any]:
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "title": title, **adapter(cls).json_schema()}


def write_with_schema(target: Path, record: object, schema: Path, title: str) -> None:
    """The record's JSON Schema first, so a reader can validate without this tool, then the record
    as JSON (two-space indent, a newline); each file written atomically."""
    for path, data in ((schema, json_schema(type(record), title)), (target, json_data(record))):
        write_bytes_atomic(path, (json.dumps(data, indent=2) + "\n").encode())
