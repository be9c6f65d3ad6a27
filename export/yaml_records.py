"""YAML into records (configs, the RNE release table): pydantic validates strictly and says which
file and key, e.g. ``configs/x.yaml: variants[1].tolerances.max_ab: unknown key (valid: max_abs, …)``.

One validation system with the manifest's: the records' own pydantic schemas, strict (no "1" for 1,
no 1 for true), unknown keys refused. What YAML holds and JSON cannot (dates, non-string keys,
NaN, infinity) is refused first, by name. A base file of `extends:` need not be a whole config:
`partial` walks its records key by key and validates each value it gives. No torch import.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import types
import typing
from pathlib import Path
from typing import Any

import pydantic

from export.errors import ExportError
from export.records import from_json_data


class ConfigError(ExportError):
    pass


# set by the loader, never by YAML (record name -> fields)
INTERNAL_FIELDS = {"ModelConfig": ("source", "sha256"), "Variant": ("name_suffix", "resolved_contract")}


def config_error(source: Path, key: str, msg: str) -> typing.NoReturn:
    if not key.isprintable():  # a YAML key may hold a newline; the error stays one line
        key = key.encode("unicode_escape").decode()
    raise ConfigError(f"{source}: {key or '<top level>'}: {msg}")


def parse_record(cls: Any, data: Any, source: Path, key: str, partial: bool = False) -> Any:
    """`data` as a `cls` (a record type, or e.g. tuple[Variant, ...]). `partial`: keys and types only
    (a base file need not be a whole config): nothing is returned."""
    _json_ready(data, source, key)
    _walk(cls, data, source, key, leaves=partial)
    return None if partial else _validated(cls, data, source, key)


def _validated(cls: Any, data: Any, source: Path, key: str) -> Any:
    try:
        return from_json_data(cls, data)
    except pydantic.ValidationError as e:
        where, msg = _describe(cls, _chosen(cls, e), key)
        config_error(source, where, msg)


def _json_ready(value: Any, source: Path, key: str) -> None:
    """What YAML can hold that JSON (and so the records) cannot, refused where it is."""
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                config_error(source, key, f"expected string keys, got {k!r}")
            _json_ready(v, source, f"{key}.{k}".lstrip("."))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _json_ready(v, source, f"{key}[{i}]")
    elif isinstance(value, float) and not math.isfinite(value):
        config_error(source, key, f"expected a finite number, got {value!r}")
    elif isinstance(value, (dt.date, bytes, set)):  # YAML timestamps, !!binary, !!set
        config_error(source, key, f"expected a plain value, got {type(value).__name__} {value!r}")


def _walk(tp: Any, value: Any, source: Path, key: str, leaves: bool) -> None:
    """Each record's keys against its fields, into nested records and lists of them: a key the
    loader sets (the file's path and digest, a variant's name suffix) is as unknown to YAML as any
    other. `leaves`: each other value validated on its own (a base file of `extends:` need not be a
    whole config, so it is never validated as one)."""
    tp = _optional_of(tp)
    args = typing.get_args(tp)
    if dataclasses.is_dataclass(tp) and isinstance(value, dict):
        fields, hints = _fields(tp)
        for k, v in value.items():
            where = f"{key}.{k}".lstrip(".")
            if k not in fields:
                config_error(source, where, f"unknown key (valid: {', '.join(fields)})")
            _walk(hints[k], v, source, where, leaves)
    elif typing.get_origin(tp) is tuple and args[1:] == (Ellipsis,) and isinstance(value, list):
        for i, v in enumerate(value):
            _walk(args[0], v, source, f"{key}[{i}]", leaves)
    elif leaves:
        _validated(tp, value, source, key)


def _fields(cls: Any) -> tuple[list[str], dict[str, Any]]:
    """The keys YAML may give a record, and their types."""
    internal = INTERNAL_FIELDS.get(cls.__name__, ())
    names = [f.name for f in dataclasses.fields(cls) if f.init and f.name not in internal]
    return names, typing.get_type_hints(cls)


def _optional_of(tp: Any) -> Any:
    """X for X | None; anything else as it is."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def _is_union(tp: Any) -> bool:
    return typing.get_origin(tp) in (typing.Union, types.UnionType)


def _path(cls: Any, loc: tuple) -> list[tuple[Any, Any]]:
    """Each part of an error's location with the type it indexes; None for a part that names the
    union member pydantic tried (not a key)."""
    out: list[tuple[Any, Any]] = []
    tp = cls
    for part in loc:
        tp = _optional_of(tp)
        if _is_union(tp):
            out.append((part, None))
            tp = None
            continue
        out.append((part, tp))
        args = typing.get_args(tp)
        if isinstance(part, int):
            tp = args[0] if args[1:] == (Ellipsis,) else (args[part] if part < len(args) else None)
        elif dataclasses.is_dataclass(tp):
            tp = _fields(tp)[1].get(part)
        else:  # dict[str, X]
            tp = args[1] if len(args) == 2 else None
    return out


def _chosen(cls: Any, e: pydantic.ValidationError) -> Any:
    """The first error; where the value fitted no member of a union, the last member's error (as a
    field's type reads, the last type is the one to ask for)."""
    errors = e.errors()
    first = errors[0]
    tag = next((i for i, (_, tp) in enumerate(_path(cls, first["loc"])) if tp is None), None)
    if tag is None:
        return first
    return [err for err in errors if err["loc"][:tag] == first["loc"][:tag]][-1]


MESSAGES = {
    "int_type": "expected an integer, got {input!r}",
    "int_from_float": "expected an integer, got {input!r}",
    "float_type": "expected a finite number, got {input!r}",
    "finite_number": "expected a finite number, got {input!r}",
    "string_type": "expected a string, got {input!r}",
    "bool_type": "expected true/false, got {input!r}",
    "tuple_type": "expected a list, got {type}",
    "list_type": "expected a list, got {type}",
    "dataclass_type": "expected a mapping, got {type}",
    "dict_type": "expected a mapping, got {type}",
    "missing_argument": "missing required key",
    "missing": "missing required key",
    "unexpected_keyword_argument": "unknown key (valid: {valid})",
    "extra_forbidden": "unknown key (valid: {valid})",
}


def _describe(cls: Any, err: Any, key: str) -> tuple[str, str]:
    """("dotted.key[i]", message) of one pydantic error, its location walked through the types."""
    where, container = key, None
    for part, tp in _path(cls, err["loc"]):
        if tp is None:
            continue  # a union member's name
        container = tp
        where = f"{where}[{part}]" if isinstance(part, int) else f"{where}.{part}".lstrip(".")
    kind, value = err["type"], err.get("input")
    if kind in ("too_long", "too_short"):
        return where, f"expected {len(typing.get_args(_optional_of(container)))} items, got {len(value)}"
    template = MESSAGES.get(kind)
    if template is None:
        return where, err["msg"]
    if kind in ("unexpected_keyword_argument", "extra_forbidden", "missing_argument", "missing"):
        record = _record_at(cls, err["loc"][:-1])
        valid = ", ".join(_fields(record)[0]) if record is not None else ""
        return where, template.format(valid=valid)
    return where, template.format(input=value, type=type(value).__name__)


def _record_at(cls: Any, loc: tuple) -> Any:
    """The record type at a location (the one a key is unknown to or missing from)."""
    steps = _path(cls, (*loc, "?"))
    tp = _optional_of(steps[-1][1])
    return tp if dataclasses.is_dataclass(tp) else None
