"""Model configs as typed records: one YAML per model in configs/ becomes a frozen `ModelConfig`
(its model section, input, contract, variants, tolerances, calibration, accuracy), plus the
contracts an app's hook may hold a model to. Reading and checking a file is export/config_file.py.
No torch import here: the CLI's --help and the publish path read configs cheaply.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from export.errors import ExportError
from export.records import STRICT, AccuracyBounds, Contract, CoreMLOptions, QuantizationRecipe, Tolerances
from export.registry import Registry

# --- runtime contracts -------------------------------------------------------------------------

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


CONTRACTS: Registry[Contract] = Registry("contract")
CONTRACTS.register(
    "rne-0.5",
    Contract(
        "rne-0.5",
        "RGB NCHW float32 pixel/255 in [0,1]; ImageNet mean/std applied inside the graph; "
        "output 0 = float32 logits [1,C,H,W]",
        normalize_in_graph=True,
        runtime_mean=None,
        runtime_std=None,
    ),
)
CONTRACTS.register(
    "rne-0.9",
    Contract(
        "rne-0.9",
        "RGB NCHW float32 (pixel/255 - ImageNet mean)/std, applied by the runtime; output 0 = float32 logits [1,C,H,W]",
        normalize_in_graph=False,
        runtime_mean=IMAGENET_MEAN,
        runtime_std=IMAGENET_STD,
    ),
)
# The 0.10 line's own contract: the runtime applies the model's `normalize:` (pixel·alpha + beta,
# carried by the constant's normalizeOpts) and the graph has none. ImageNet's until a config says
# otherwise (ModelConfig.contract_for puts the config's in).
CONTRACTS.register(
    "rne-0.10",
    Contract(
        "rne-0.10",
        "RGB NCHW float32 (pixel/255 - mean)/std with the model's own mean/std, applied by the runtime "
        "(the constant's normalizeOpts); output 0 = float32 scores [1,K,H,W]",
        normalize_in_graph=False,
        runtime_mean=IMAGENET_MEAN,
        runtime_std=IMAGENET_STD,
    ),
)
MODEL_NORMALIZED = "rne-0.10"  # the one contract whose normalization the config chooses

# --- backends ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class BackendSpec:
    name: str
    runtime_id: str  # the delegate id written into the .pte and registered in the runtime
    precisions: tuple[str, ...]


BACKENDS: Registry[BackendSpec] = Registry("backend")
BACKENDS.register("xnnpack", BackendSpec("xnnpack", "XnnpackBackend", ("fp32", "int8")))
BACKENDS.register("coreml", BackendSpec("coreml", "CoreMLBackend", ("fp16", "fp32")))

# --- config schema ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelSpec:
    """Where the model comes from (`source`: a file in export/sources/, see docs/model-sources.md)."""

    __pydantic_config__ = STRICT
    # torchvision: a name in export.sources.models.MODELS; python: "package.module:function" or "file.py:function"
    builder: str | None = None
    weights: str | None = None  # torchvision: the weights enum member behind `--weights default`
    output_key: str = "out"  # a dict output's entry to ship (torchvision: {"out", "aux"})
    num_classes: int = 21
    random_seed: int = 0  # seed for `--weights random`
    # `--weights random` with every ResNet block's last BN gamma set to this (None: torchvision's init)
    random_residual_gain: float | None = None
    source: str = "torchvision"  # torchvision | smp | transformers | python (export.sources.SOURCES)
    arch: str | None = None  # smp: the architecture (Unet, FPN, DeepLabV3Plus, ...)
    encoder: str | None = None  # smp: the encoder (resnet34, mobilenet_v2, ...)
    # transformers: a save_pretrained folder or a Hub id (from huggingface_hub's cache); smp, python:
    # the trained weights `--weights default` loads (a state dict, or SMP's save_pretrained folder)
    path: str | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)  # passed to the builder / the smp architecture
    output_index: int = 0  # a tuple or list output's entry to ship
    # a one-channel output: what it holds (logit: before a sigmoid; probability: after one)
    mask: str | None = None


# ModelSpec fields added after configs were hashed: left out of the hash while they hold their default,
# so a config that does not use them keeps its variant hash (Core ML's ids are seeded by it)
_LATER_MODEL_FIELDS: dict[str, Any] = {"source": "torchvision", "arch": None, "encoder": None, "path": None}
_LATER_MODEL_FIELDS |= {"kwargs": {}, "output_index": 0, "mask": None}
MASK_KINDS = ("logit", "probability")


Channels = float | tuple[float, float, float]


@dataclass(frozen=True)
class NormalizeSpec:
    """What the runtime does to RGB pixels in 0..255 before the model (contract rne-0.10): `mean`/`std`
    on pixel/255, or `alpha`/`beta` as RNE's normalizeOpts (pixel·alpha + beta); scalar or per channel."""

    __pydantic_config__ = STRICT
    mean: Channels | None = None
    std: Channels | None = None
    alpha: Channels | None = None
    beta: Channels | None = None

    def mean_std(self) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
        """As mean/std on pixel/255: pixel·alpha + beta = (pixel/255 - mean)/std."""

        def three(v: Channels | None, default: float) -> tuple[float, float, float]:
            if v is None:
                return (default,) * 3
            return (float(v),) * 3 if isinstance(v, (int, float)) else tuple(float(x) for x in v)  # type: ignore[return-value]

        if self.alpha is not None:
            alpha, beta = three(self.alpha, 0.0), three(self.beta, 0.0)
            std = tuple(1 / (255 * a) for a in alpha)
            return tuple(-b * s for b, s in zip(beta, std, strict=True)), std  # type: ignore[return-value]
        return three(self.mean, 0.0), three(self.std, 1.0)


@dataclass(frozen=True)
class InputSpec:
    __pydantic_config__ = STRICT
    height: int
    width: int


@dataclass(frozen=True)
class CalibrationSpec:
    """Images for int8 post-training calibration: scikit-image photos by name, or a folder."""

    __pydantic_config__ = STRICT
    images: tuple[str, ...] = ()  # scikit-image bundled photos (offline default)
    folder: str | None = None  # a folder of images instead (e.g. Pascal VOC JPEGImages in release)
    count: int = 4
    seed: int = 0  # shuffles the sample order before taking `count`
    views: int = 1  # framings per image: the full frame, then seeded crops (50-100 % side) and mirrors


@dataclass(frozen=True)
class AccuracySpec:
    """The int8 accuracy gate: file vs eager fp32 on images held apart from calibration."""

    __pydantic_config__ = STRICT
    images: tuple[str, ...]
    bounds: AccuracyBounds
    # Random weights (smoke runs) have near-tied logits, so argmax flips under quantization noise
    # that a trained net shrugs off; their bounds are separate and the manifest says which applied.
    smoke_bounds: AccuracyBounds | None = None
    # a Pascal VOC-layout folder with ground truth (export.convert.voc): mIoU of fp32 and of the int8 file
    # against the labels, and the gate bounds the drop
    labels: str | None = None
    # why 0.02: VOC-val mIoU of int8 vs fp32 DeepLabV3 in published PTQ results drops 0.5-2 points
    max_labels_miou_drop: float = 0.02
    labels_ignore_index: int = 255  # mask pixels not scored (VOC's void; SMP / HF datasets often use 255 or -1 as 255)


@dataclass(frozen=True)
class ParitySpec:
    __pydantic_config__ = STRICT
    images: tuple[str, ...]  # scikit-image bundled photos (names of files in skimage.data_dir)
    random_inputs: int = 2
    seed: int = 0


@dataclass(frozen=True)
class ToleranceDefaults:
    """Parity bounds per precision for variants that do not give their own."""

    __pydantic_config__ = STRICT
    fp32: Tolerances | None = None
    fp16: Tolerances | None = None
    int8: Tolerances | None = None


# coremltools 9.0's ct.target and ct.ComputeUnit members, checked when a config loads (importing
# coremltools there would cost every command seconds); test_config asserts they are still its members.
COREML_TARGETS = (
    *(f"iOS{v}" for v in (13, 14, 15, 16, 17, 18, 26)),
    *(f"macOS{v}" for v in ("10_15", "10_16", 11, 12, 13, 14, 15, 26)),
    *(f"watchOS{v}" for v in (6, 7, 8, 9, 10, 11, 26)),
    *(f"tvOS{v}" for v in (13, 14, 15, 16, 17, 18, 26)),
)
COREML_COMPUTE_UNITS = ("ALL", "CPU_AND_GPU", "CPU_ONLY", "CPU_AND_NE")


@dataclass(frozen=True)
class Variant:
    __pydantic_config__ = STRICT
    backend: str
    precision: str
    # parity of the file against its eager reference (int8: the quantized model); default: the
    # config's tolerances.<precision>. Always set after loading.
    tolerances: Tolerances = None  # type: ignore[assignment]
    # aten op names (e.g. "aten.cumsum.default") allowed to stay outside the delegate
    allow_non_delegated: tuple[str, ...] = ()
    coreml: CoreMLOptions | None = None  # coreml backend only; default: CoreMLOptions()
    quantization: QuantizationRecipe | None = None  # int8 only; default: QuantizationRecipe()
    # default: the model's; the loader fills both in, so they are never None after loading
    input: InputSpec = None  # type: ignore[assignment]
    contract: str = None  # type: ignore[assignment]
    # the oldest React Native ExecuTorch release the file claims (default: every release line of
    # its contract); `export compat` checks the runtime of each claimed line
    min_rne: str | None = None
    name_suffix: str = field(default="", compare=False)  # derived: only what keeps names unique
    # derived at load: the contract as the runtime applies it (rne-0.10: with the model's normalization)
    resolved_contract: Contract | None = field(default=None, compare=False)

    @property
    def name(self) -> str:
        return f"{self.backend}_{self.precision}{self.name_suffix}"

    @property
    def runtime_contract(self) -> Contract:
        """What the app feeds this variant's file (resolved when the config was loaded)."""
        if self.resolved_contract is None:
            raise ExportError(f"variant {self.name}: not loaded from a config (its contract is resolved at load)")
        return self.resolved_contract


@dataclass(frozen=True)
class ModelConfig:
    __pydantic_config__ = STRICT
    name: str
    model: ModelSpec
    input: InputSpec
    contract: str
    labels: tuple[str, ...]
    parity: ParitySpec
    variants: tuple[Variant, ...]
    calibration: CalibrationSpec | None = None
    accuracy: AccuracySpec | None = None
    tolerances: ToleranceDefaults | None = None  # resolved into each variant (not hashed twice)
    normalize: NormalizeSpec | None = None  # contract rne-0.10: the runtime's normalization (default ImageNet)
    source: Path = field(default=Path("?"), compare=False)
    sha256: str = field(default="", compare=False)  # of the expanded config (every file in the chain)

    def variant(self, name: str) -> Variant:
        for v in self.variants:
            if v.name == name:
                return v
        raise ExportError(
            f"unknown variant {name!r} for model {self.name!r} ({self.source}); "
            f"valid variants: {', '.join(v.name for v in self.variants)}"
        )

    def contract_for(self, variant: Variant) -> Contract:
        """The variant's contract as the runtime applies it: rne-0.10 with this model's normalization."""
        contract = CONTRACTS.get(variant.contract)
        if contract.name != MODEL_NORMALIZED or self.normalize is None:
            return contract
        mean, std = self.normalize.mean_std()
        return dataclasses.replace(contract, runtime_mean=mean, runtime_std=std)

    def artifact_name(self, variant: Variant) -> str:
        return f"{self.name}_{variant.name}.pte"

    def variant_hash(self, variant: Variant) -> str:
        """Hash of everything in the config that determines or checks this variant's files: the
        whole config except the other variants (calibration, parity and accuracy sets included)."""
        data = {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name not in ("variants", "tolerances", "source", "sha256")
        }
        data["variant"] = {k: v for k, v in dataclasses.asdict(variant).items() if k != "resolved_contract"}
        model = dataclasses.asdict(self.model)
        data["model"] = {k: v for k, v in model.items() if _LATER_MODEL_FIELDS.get(k, ...) != v}
        if self.normalize is None:
            del data["normalize"]
        if self.accuracy is not None and self.accuracy.labels_ignore_index == 255:  # added later, as above
            data["accuracy"] = {
                k: v for k, v in dataclasses.asdict(self.accuracy).items() if k != "labels_ignore_index"
            }
        as_json = json.dumps(data, sort_keys=True, default=lambda o: dataclasses.asdict(o))
        return hashlib.sha256(as_json.encode()).hexdigest()


# Why: the name becomes file names (<name>_<backend>_<precision>.pte, inside --out) and generated
# TypeScript/Python identifiers (NAME_UPPER), so only what both can carry.
NAME_PATTERN = re.compile(r"[a-z][a-z0-9_]{0,63}")
# Why 2048: the largest side a phone camera frame is fed at in practice; the [1,21,H,W] fp32 output
# alone is 350 MB there, and eager parity at that size already needs several GB of RAM.
MAX_INPUT_SIDE = 2048


def bundled_photos() -> dict[str, Path]:
    """scikit-image's bundled photos (offline, nothing committed), by name: the names configs may
    use. Imported lazily: 15 ms, no OpenCV or torch."""
    import skimage.data

    return {p.stem: p for p in sorted(Path(skimage.data.data_dir).iterdir()) if p.suffix in (".png", ".jpg")}
