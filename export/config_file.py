"""Reading a model config file: YAML with `extends:` chains, strict typed records (export/config.py),
then what the types cannot say, the model source's own check included. `load_config`,
`find_config` and `list_configs` are the entry points.

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
from pathlib import Path

import yaml

from export.config import (
    BACKENDS,
    CONTRACTS,
    COREML_COMPUTE_UNITS,
    COREML_TARGETS,
    MASK_KINDS,
    MAX_INPUT_SIDE,
    MODEL_NORMALIZED,
    NAME_PATTERN,
    CalibrationSpec,
    ModelConfig,
    NormalizeSpec,
    Variant,
    bundled_photos,
)
from export.records import CoreMLOptions, QuantizationRecipe
from export.yaml_records import ConfigError, config_error, parse_record

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
    return dataclasses.replace(
        cfg, variants=tuple(dataclasses.replace(v, resolved_contract=cfg.contract_for(v)) for v in variants)
    )


def _validate_model(cfg: ModelConfig, source: Path) -> None:
    """The model section, the normalization, then what the source itself can check without torch."""
    from export.sources import SOURCES

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
        from export.data import CONFIGS

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
    from export.data import CONFIGS

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
