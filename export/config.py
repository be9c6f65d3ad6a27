"""Model configs: one YAML per model in configs/, parsed into frozen dataclasses.

Unknown keys, missing keys and wrong types are rejected with the file and the dotted key path,
e.g. ``configs/x.yaml: variants[1].tolerances.max_ab: unknown key (valid: max_abs, rmse, …)``.

A model file may say only what differs from a family base: ``extends: base/voc_segmentation.yaml``
(relative to the file). Mappings merge key by key (the model file wins), lists are replaced, and
``extra_variants`` appends to the inherited ``variants``. Each file in the chain is checked on its
own first, so an unknown key names the file it is in. Variants without ``tolerances`` take the
``tolerances.<precision>`` default. What gets hashed is the expanded config.
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

import yaml

from .errors import ExportError
from .records import STRICT, AccuracyBounds, Contract, CoreMLOptions, QuantizationRecipe, Tolerances
from .registry import Registry
from .yaml_records import ConfigError, config_error, parse_record

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
    # torchvision: a name in export.models.MODELS; python: "package.module:function" or "file.py:function"
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
    # a Pascal VOC-layout folder with ground truth (export.voc): mIoU of fp32 and of the int8 file
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

    @property
    def name(self) -> str:
        return f"{self.backend}_{self.precision}{self.name_suffix}"


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
        data["variant"] = variant
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


ACTIVATION_OBSERVERS = ("histogram", "minmax")

# --- strict loader: export.yaml_records validates; below, what the types cannot say --------------


def _resolve_variant(cfg: ModelConfig, v: Variant, source: Path, i: int) -> Variant:
    """Fill in the model's input size and contract; name the variant by what differs from them."""
    inp = v.input or cfg.input
    contract = v.contract or cfg.contract
    coreml = v.coreml or (CoreMLOptions() if v.backend == "coreml" else None)
    tolerances = v.tolerances or getattr(cfg.tolerances, v.precision, None)
    if tolerances is None:
        config_error(
            source,
            f"variants[{i}].tolerances",
            f"missing: give them here or as a default under tolerances.{v.precision}",
        )
    suffix = ""
    if inp != cfg.input:
        suffix += f"_{inp.height}" if inp.height == inp.width else f"_{inp.height}x{inp.width}"
    if contract != cfg.contract:
        suffix += "_" + contract.replace("-", "").replace(".", "")
    return dataclasses.replace(
        v, input=inp, contract=contract, coreml=coreml, tolerances=tolerances, name_suffix=suffix
    )


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


def _check_photos(names: tuple[str, ...], source: Path, key: str) -> None:
    known = bundled_photos()
    for i, name in enumerate(names):
        if name not in known:
            config_error(source, f"{key}[{i}]", f"unknown photo {name!r} (scikit-image photos: {', '.join(known)})")


def _validate(cfg: ModelConfig, source: Path) -> ModelConfig:
    """What the types cannot say: names, photos, labels, each variant, calibration. -> the config
    with every variant resolved (input, contract, tolerances)."""
    if not NAME_PATTERN.fullmatch(cfg.name):
        config_error(
            source, "name", f"{cfg.name!r}: use lowercase letters, digits and _ (it names files and constants)"
        )
    CONTRACTS.get(cfg.contract, where=f"{source}: contract")
    _check_photos(cfg.parity.images, source, "parity.images")
    if cfg.accuracy is not None:
        _check_photos(cfg.accuracy.images, source, "accuracy.images")
    if cfg.calibration is not None and not cfg.calibration.folder:
        _check_photos(cfg.calibration.images, source, "calibration.images")
    if len(cfg.labels) != cfg.model.num_classes:
        config_error(source, "labels", f"{len(cfg.labels)} labels for model.num_classes={cfg.model.num_classes}")
    if len(cfg.labels) < 2:
        config_error(source, "labels", "at least 2 labels (a one-channel mask is background + its class)")
    if len(set(cfg.labels)) != len(cfg.labels):
        config_error(source, "labels", "a label is given twice (they name the classes an app asks for)")
    _validate_model(cfg, source)
    if not cfg.variants:
        config_error(source, "variants", "at least one variant is required")
    for i, v in enumerate(cfg.variants):
        if v.min_rne is not None and not re.fullmatch(r"\d+\.\d+\.\d+", v.min_rne):
            config_error(source, f"variants[{i}].min_rne", f"expected a release like 0.5.7, got {v.min_rne!r}")
    variants: list[Variant] = []
    for i, v in enumerate(cfg.variants):
        v = _validate_variant(cfg, v, source, i)
        if v.name in {seen.name for seen in variants}:
            config_error(source, f"variants[{i}]", f"duplicate variant {v.name!r}")
        variants.append(v)
    if cfg.calibration is not None:
        _validate_calibration(cfg, cfg.calibration, source)
    return dataclasses.replace(cfg, variants=tuple(variants))


def _validate_model(cfg: ModelConfig, source: Path) -> None:
    """The model section, the normalization, then what the source itself can check without torch."""
    from .sources import SOURCES

    src = SOURCES.get(cfg.model.source, where=f"{source}: model.source")
    if cfg.model.mask is not None and cfg.model.mask not in MASK_KINDS:
        config_error(source, "model.mask", f"{cfg.model.mask!r}: valid: {', '.join(MASK_KINDS)}")
    if cfg.normalize is not None:
        _validate_normalize(cfg, cfg.normalize, source)
    src.check(cfg, source)


def _validate_normalize(cfg: ModelConfig, n: NormalizeSpec, source: Path) -> None:
    contracts = {cfg.contract, *(v.contract for v in cfg.variants if v.contract)}
    if contracts != {MODEL_NORMALIZED}:
        others = ", ".join(sorted(contracts - {MODEL_NORMALIZED}))
        config_error(
            source,
            "normalize",
            f"only for contract {MODEL_NORMALIZED} (the runtime applies it); {others} fix ImageNet mean/std, "
            f"so set contract: {MODEL_NORMALIZED} or drop normalize",
        )
    pairs = {"mean/std": (n.mean, n.std), "alpha/beta": (n.alpha, n.beta)}
    given = [name for name, pair in pairs.items() if any(v is not None for v in pair)]
    if len(given) != 1:
        config_error(source, "normalize", "give either mean and std (on pixel/255) or alpha and beta (on 0..255)")
    scale = n.std if given == ["mean/std"] else n.alpha
    values = [scale] if isinstance(scale, (int, float)) else list(scale or ())
    if not values or any(v <= 0 for v in values):
        key = "std" if given == ["mean/std"] else "alpha"
        config_error(source, f"normalize.{key}", f"must be given and positive, got {scale!r}")


def _validate_variant(cfg: ModelConfig, v: Variant, source: Path, i: int) -> Variant:
    """One variant: its backend takes its precision, its options fit; -> resolved (_resolve_variant)."""
    spec = BACKENDS.get(v.backend, where=f"{source}: variants[{i}].backend")
    if v.precision not in spec.precisions:
        config_error(
            source,
            f"variants[{i}].precision",
            f"{v.precision!r} is not supported by backend {v.backend!r} (valid: {', '.join(spec.precisions)})",
        )
    if v.coreml is not None:
        _validate_coreml(v, v.coreml, source, i)
    if v.quantization is not None:
        v = dataclasses.replace(v, quantization=_validate_quantization(v, v.quantization, source, i))
    if v.contract is not None:
        CONTRACTS.get(v.contract, where=f"{source}: variants[{i}].contract")
    v = _resolve_variant(cfg, v, source, i)
    if not (0 < v.input.height <= MAX_INPUT_SIDE and 0 < v.input.width <= MAX_INPUT_SIDE):
        config_error(
            source,
            f"variants[{i}].input" if v.input is not cfg.input else "input",
            f"height and width must be 1..{MAX_INPUT_SIDE}, got {v.input.height}x{v.input.width}",
        )
    if v.precision == "int8" and (cfg.calibration is None or cfg.accuracy is None):
        config_error(source, f"variants[{i}].precision", "int8 needs `calibration` and `accuracy` sections")
    return v


def _validate_coreml(v: Variant, opts: CoreMLOptions, source: Path, i: int) -> None:
    if v.backend != "coreml":
        config_error(source, f"variants[{i}].coreml", "only valid for backend coreml")
    for key, value, valid in (
        ("deployment_target", opts.deployment_target, COREML_TARGETS),
        ("compute_units", opts.compute_units, COREML_COMPUTE_UNITS),
    ):
        if value not in valid:
            config_error(source, f"variants[{i}].coreml.{key}", f"unknown {value!r}; valid: {', '.join(valid)}")


def _validate_quantization(v: Variant, q: QuantizationRecipe, source: Path, i: int) -> QuantizationRecipe:
    """-> the recipe with `keep_fp32: auto` as the one-name tuple ("auto",) the build reads."""
    if v.precision != "int8":
        config_error(source, f"variants[{i}].quantization", "only valid for precision int8")
    if q.activation_observer not in ACTIVATION_OBSERVERS:
        config_error(
            source,
            f"variants[{i}].quantization.activation_observer",
            f"{q.activation_observer!r} is not one of {', '.join(ACTIVATION_OBSERVERS)}",
        )
    if isinstance(q.keep_fp32, str):
        if q.keep_fp32 != "auto":
            config_error(
                source,
                f"variants[{i}].quantization.keep_fp32",
                f"{q.keep_fp32!r}: give a list of module names, or auto",
            )
        return dataclasses.replace(q, keep_fp32=("auto",))
    return q


def _validate_calibration(cfg: ModelConfig, cal: CalibrationSpec, source: Path) -> None:
    if not cal.images and not cal.folder:
        config_error(source, "calibration", "give `images` (scikit-image photo names) or a `folder`")
    if cal.count <= 0:
        config_error(source, "calibration.count", "must be positive")
    if cal.views <= 0:
        config_error(source, "calibration.views", "must be positive")
    if cfg.accuracy is not None and not cal.folder:
        overlap = sorted(set(cal.images) & set(cfg.accuracy.images))
        if overlap:
            config_error(
                source, "accuracy.images", f"{', '.join(overlap)} also calibrate: accuracy needs held-apart images"
            )


MERGE_KEYS = ("extends", "extra_variants")  # read by the loader, not fields of ModelConfig


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (plain YAML keeps the last)."""

    def construct_mapping(self, node, deep=False):
        seen: set = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} is given twice in one mapping", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _read_yaml(source: Path, referrer: str | None = None) -> dict:
    try:
        raw_bytes = source.read_bytes()
    except FileNotFoundError:
        if referrer:
            raise ConfigError(f"{referrer}: extends: {source} not found") from None
        found = ", ".join(str(p) for p in list_configs(source.parent)) or "none"
        raise ConfigError(f"config file not found: {source} (configs in {source.parent}: {found})") from None
    except OSError as e:
        raise ConfigError(f"cannot read config {source}: {e.strerror}") from None
    try:
        data = yaml.load(raw_bytes, Loader=_StrictLoader)  # a SafeLoader subclass
    except yaml.MarkedYAMLError as e:  # one line: what and where
        mark = e.problem_mark
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise ConfigError(f"{source}: not valid YAML: {e.problem}{where}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{source}: not valid YAML: {' '.join(str(e).split())}") from None
    if not isinstance(data, dict):
        config_error(source, "", f"expected a mapping, got {type(data).__name__}")
    return data


def _merge(base: dict, over: dict) -> dict:
    """Mappings merge key by key (`over` wins); anything else in `over` replaces the base's."""
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _expanded(source: Path, chain: tuple[Path, ...] = ()) -> dict:
    """The file's data with its `extends:` chain applied; each file's own keys checked first."""
    data = _read_yaml(source, referrer=str(chain[-1]) if chain else None)
    own = {k: v for k, v in data.items() if k not in MERGE_KEYS}
    parse_record(ModelConfig, own, source, "", partial=True)  # unknown keys and types, named in this file
    extra = data.get("extra_variants", [])
    if not isinstance(extra, list):
        config_error(source, "extra_variants", f"expected a list, got {type(extra).__name__}")
    parse_record(tuple[Variant, ...], extra, source, "extra_variants", partial=True)
    parent = data.get("extends")
    if parent is None:
        if extra:
            config_error(source, "extra_variants", "only valid with `extends:` (append to a base's variants)")
        return own
    if not isinstance(parent, str):
        config_error(
            source, "extends", f"expected a path relative to {source.parent} (or a built-in base), got {parent!r}"
        )
    base_path = (source.parent / parent).resolve()
    if not base_path.exists():  # a base the tool ships (e.g. base/segmenter.yaml) from a config anywhere
        from .data import CONFIGS

        if (CONFIGS / parent).is_file():
            base_path = (CONFIGS / parent).resolve()
    if base_path in chain or base_path == source.resolve():
        config_error(source, "extends", f"{parent} extends itself through {' -> '.join(map(str, chain))}")
    base = _expanded(base_path, (*chain, source.resolve()))
    merged = _merge(base, own)
    merged["variants"] = list(merged.get("variants", [])) + extra
    return merged


def load_config(path: str | Path) -> ModelConfig:
    source = Path(path)
    data = _expanded(source)
    cfg = _validate(parse_record(ModelConfig, data, source, ""), source)
    expanded = json.dumps(data, sort_keys=True).encode()
    return dataclasses.replace(cfg, source=source, sha256=hashlib.sha256(expanded).hexdigest())


def find_config(given: str | Path) -> Path:
    """--config as given: a path (relative to the working folder), else a model name looked up in the
    working folder's configs/, then among the built-in configs shipped with the tool."""
    from .data import CONFIGS

    path = Path(given)
    if path.exists() or path.suffix or len(path.parts) > 1:
        return path
    for folder in (Path("configs"), CONFIGS):
        if (folder / f"{path}.yaml").is_file():
            return folder / f"{path}.yaml"
    names = sorted({p.stem for f in (Path("configs"), CONFIGS) for p in list_configs(f)})
    raise ConfigError(
        f"--config {given}: no such file, and no model of that name in ./configs or the built-in configs "
        f"({', '.join(names)}); `rne-export new` writes one"
    )


def list_configs(folder: str | Path) -> list[Path]:
    folder = Path(folder)
    return sorted(folder.glob("*.yaml")) if folder.is_dir() else []
