"""Source `python`: the maintainer's own PyTorch. `model.builder` is "package.module:function" (on
the import path) or "path/to/file.py:function" (relative to the config file, else the working
folder); it is called with `model.kwargs` and must return an nn.Module.

`--weights default` is the builder's own weights, plus `model.path` loaded over them when given (a
state dict, weights_only=True); `--weights PATH` a state dict; `random` the builder's module with
every layer's parameters re-initialised under the config's seed (a builder that loads trained
weights itself cannot pass them off as random). The builder file's digest is part of the weights'
identity, so an edit to it rebuilds.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from export.errors import ExportError
from export.files import sha256_file
from export.sources import (
    SOURCE_FIELDS,
    Draft,
    LoadedModel,
    NewRequest,
    Source,
    check_fields,
    file_identity,
    fit_state_dict,
    read_state_dict,
    register,
    relative_to_config,
    written_path,
)

if TYPE_CHECKING:
    from torch import nn

    from export.config import ModelConfig

SOURCE_FIELDS["python"] = ("builder", "kwargs", "path")


def split(cfg: ModelConfig, source: Path | None = None) -> tuple[str, str]:
    """("module or file", "function") of model.builder."""
    return split_text(cfg.model.builder or "", f"{source or cfg.source}: model.builder")


def split_text(builder: str, where: str) -> tuple[str, str]:
    module, sep, fn = builder.rpartition(":")
    if not sep or not module or not fn.isidentifier():
        raise ExportError(f"{where}: {builder!r}: expected 'package.module:function' or 'path/to/file.py:function'")
    return module, fn


def builder_file(cfg: ModelConfig, source: Path | None = None) -> Path | None:
    module, _ = split(cfg, source)
    if module.endswith(".py"):
        return relative_to_config(source or cfg.source, module)
    return None


def check(cfg: ModelConfig, source: Path) -> None:
    from export.yaml_records import config_error

    check_fields(cfg, source, SOURCE_FIELDS["python"], needs=("builder",))
    try:
        path = builder_file(cfg, source)
    except ExportError as e:
        config_error(source, "model.builder", str(e).split("model.builder: ", 1)[-1])
    if path is not None and not path.is_file():
        config_error(
            source, "model.builder", f"{path}: no such file (relative to {source.parent} or the working folder)"
        )


def _function(cfg: ModelConfig):
    module_name, fn = split(cfg)
    return load_function(module_name, fn, builder_file(cfg), f"{cfg.source}: model.builder {cfg.model.builder!r}")


def load_function(module_name: str, fn: str, path: Path | None, where: str):
    """The builder function from a file (`path`) or an importable module; one error naming it."""
    try:
        if path is not None:
            spec = importlib.util.spec_from_file_location(f"rne_export_builder_{path.stem}", path)
            if spec is None or spec.loader is None:
                raise ImportError(f"cannot load {path}")
            module = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = module
            spec.loader.exec_module(module)
        else:
            module = importlib.import_module(module_name)
    except Exception as e:  # the builder's own code: any error it raises means "does not import"
        raise ExportError(
            f"{where} does not import: {type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"
        ) from None
    func = getattr(module, fn, None)
    if not callable(func):
        raise ExportError(f"{where}: {module_name} has no function {fn!r}")
    return func


def build(cfg: ModelConfig) -> nn.Module:
    from torch import nn

    func = _function(cfg)
    try:
        model = func(**cfg.model.kwargs)
    except Exception as e:
        raise ExportError(
            f"{cfg.source}: model.builder {cfg.model.builder!r} failed with kwargs {cfg.model.kwargs}: "
            f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"
        ) from None
    if not isinstance(model, nn.Module):
        raise ExportError(
            f"{cfg.source}: model.builder {cfg.model.builder!r} returned {type(model).__name__}, not a torch.nn.Module"
        )
    return model


def _code_identity(cfg: ModelConfig) -> str:
    """The builder and its file's digest (a module on the import path: its file, when it has one)."""
    path = builder_file(cfg)
    if path is None:
        try:
            spec = importlib.util.find_spec(split(cfg)[0])
        except (ImportError, ValueError):
            spec = None
        path = Path(spec.origin) if spec is not None and spec.origin and Path(spec.origin).is_file() else None
    return f"builder {cfg.model.builder}" + (f" (sha256 {sha256_file(path)})" if path else "")


def identity(cfg: ModelConfig, weights: str) -> tuple[str, str]:
    from export.files import existing_path
    from export.store.uptodate import random_identity

    code = _code_identity(cfg)
    if weights == "random":
        return "random", f"{random_identity(cfg)} of {code}"
    if weights == "default":
        extra = ""
        if cfg.model.path:
            p = existing_path(str(relative_to_config(cfg.source, cfg.model.path)), f"model.path in {cfg.source}")
            extra = f" + {file_identity(p)}"
        return "default", f"{code}'s own weights{extra}"
    return "path", file_identity(existing_path(weights, "--weights", "valid values: default, random, or a state dict"))


def load(cfg: ModelConfig, weights: str) -> LoadedModel:
    import torch

    kind, ident = identity(cfg, weights)
    torch.manual_seed(cfg.model.random_seed)
    model = build(cfg)
    if kind == "random":
        for m in model.modules():
            reset = getattr(m, "reset_parameters", None)
            if callable(reset):
                reset()
    elif kind == "path" or cfg.model.path:
        path = Path(weights) if kind == "path" else relative_to_config(cfg.source, cfg.model.path or "")
        fit_state_dict(
            model, read_state_dict(path, f"weights {path}"), f"weights {path}", f"builder {cfg.model.builder}"
        )
    return LoadedModel(model.eval(), ident, kind)


def describe(req: NewRequest) -> Draft:
    """`new --python FILE.py:FUNCTION`: the builder is called (random init) and run once at the size to
    learn how many channels it outputs; its labels and normalization are the maintainer's to say."""
    import torch
    from torch import nn

    module, fn = split_text(req.value, "--python")
    path = Path(module) if module.endswith(".py") else None
    builder = f"{written_path(module, req.config_dir, '--python')}:{fn}" if path else req.value
    model: dict = {"source": "python", "builder": builder}
    if req.kwargs:
        model["kwargs"] = req.kwargs
    if req.weights:
        model["path"] = written_path(req.weights, req.config_dir, "--weights")
    func = load_function(module, fn, path, f"--python {req.value}")
    torch.manual_seed(0)
    try:
        net = func(**req.kwargs)
    except Exception as e:  # the builder's own code
        raise ExportError(f"--python {req.value} failed with kwargs {req.kwargs}: {type(e).__name__}: {e}") from None
    if not isinstance(net, nn.Module):
        raise ExportError(f"--python {req.value} returned {type(net).__name__}, not a torch.nn.Module")
    h, w = req.size or (224, 224)
    try:
        with torch.no_grad():
            out = net.eval()(torch.zeros(1, 3, h, w))
    except Exception as e:
        raise ExportError(
            f"--python {req.value}: the model fails on a 1x3x{h}x{w} input: {type(e).__name__}: {e}"
        ) from None
    first = next(iter(out.values())) if isinstance(out, dict) else out[0] if isinstance(out, (tuple, list)) else out
    channels = int(first.shape[1]) if isinstance(first, torch.Tensor) and first.dim() == 4 else None
    said = f"the model outputs {channels} channel(s) at {h}x{w}" if channels else "its output is not [1,K,H,W]"
    return Draft(
        name=fn if path is None else path.stem,
        model=model,
        labels=None,
        labels_from=f"a python builder's files do not name its classes ({said})",
        channels=channels,
    )


register(
    Source(
        "python", check, identity, load, describe, "FILE.py:FUNCTION or package.module:FUNCTION (labels from --labels)"
    )
)
