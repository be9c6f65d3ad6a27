"""Property tests: generated configs and manifests, valid-looking or not, meet only the project's
own errors (one line naming the file), never another exception. Each test also counts what the
loader did with its examples: most must be refused (a loader that takes anything passes "never
another exception" too), and any it took must really be valid."""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter

import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from support import TINY

from export.config import BACKENDS, MAX_INPUT_SIDE, NAME_PATTERN, ModelConfig, bundled_photos
from export.config_file import load_config
from export.records import Entry, json_data
from export.store.manifest import StaleManifest, read_manifest
from export.yaml_records import ConfigError

# JSON-like values: what YAML and JSON files can hold (floats include NaN and inf)
scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
TINY_DATA = yaml.safe_load(TINY.read_text())
KEYS = sorted(TINY_DATA)
# why 150: a few seconds on 2 cores, enough to reach nested sections. derandomize: the same
# examples every run, so a failure reproduces; no example database written into the checkout.
RUNS = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


def _mutated(data: dict, key: str, value) -> dict:
    out = dict(data)
    out[key] = value
    return out


def _assert_mostly_refused(outcomes: Counter) -> None:
    """At least half the examples (all of them today) were refused with the expected error; a loader
    that accepts anything, or refuses with another error, fails here."""
    ran = sum(outcomes.values())
    assert ran >= RUNS.max_examples // 2 and outcomes["refused"] >= ran // 2, dict(outcomes)


def _assert_valid_config(cfg: ModelConfig, path) -> None:
    """A config the loader took: the file's own data, and every rule the loader is there to check."""
    expanded = json.dumps(yaml.safe_load(path.read_text()), sort_keys=True).encode()
    assert isinstance(cfg, ModelConfig) and cfg.sha256 == hashlib.sha256(expanded).hexdigest()
    assert NAME_PATTERN.fullmatch(cfg.name), cfg.name
    assert len(cfg.labels) == cfg.model.num_classes == len(set(cfg.labels)) >= 2, cfg.labels
    assert set(cfg.parity.images) <= set(bundled_photos()), cfg.parity.images
    assert cfg.variants and len({v.name for v in cfg.variants}) == len(cfg.variants)
    for v in cfg.variants:
        assert v.precision in BACKENDS.get(v.backend).precisions and v.tolerances is not None and v.contract, v
        assert 0 < v.input.height <= MAX_INPUT_SIDE and 0 < v.input.width <= MAX_INPUT_SIDE, v
        assert v.precision != "int8" or (cfg.calibration is not None and cfg.accuracy is not None), v


def _load(path, outcomes: Counter) -> None:
    try:
        cfg = load_config(path)
    except ConfigError as e:
        assert str(path) in str(e) and "\n" not in str(e), str(e)
        outcomes["refused"] += 1
        return
    _assert_valid_config(cfg, path)
    outcomes["accepted"] += 1


def test_config_with_any_section_replaced_fails_only_as_config_error(tmp_path):
    outcomes: Counter = Counter()

    @RUNS
    @given(key=st.sampled_from(KEYS), value=values)
    @example(key="labels", value=5)  # known bad, whatever is generated
    @example(key="parity", value=TINY_DATA["parity"])  # known good: the file as shipped
    def check(key, value):
        path = tmp_path / "c.yaml"
        path.write_text(yaml.safe_dump(_mutated(TINY_DATA, key, value)))
        _load(path, outcomes)

    check()
    _assert_mostly_refused(outcomes)
    assert outcomes["accepted"] >= 1, dict(outcomes)  # the shipped file itself, checked as valid


def test_config_from_any_text_fails_only_as_config_error(tmp_path):
    outcomes: Counter = Counter()

    @RUNS
    @given(text=st.text(max_size=200))
    @example(text="name: tiny_segnet\n")  # known bad: a mapping missing every other key
    def check(text):
        path = tmp_path / "c.yaml"
        path.write_text(text)
        _load(path, outcomes)

    check()
    _assert_mostly_refused(outcomes)


def _sample_manifest() -> dict:
    from support import sample_entry

    return {"schema": 4, "artifacts": {"m_xnnpack_fp32.pte": sample_entry("m_xnnpack_fp32.pte", "m")}}


def _holds(got, written) -> bool:
    """The value read holds the JSON value written: every given key (the rest are defaults), NaN
    included, an int read into a float field as the same number."""
    if isinstance(written, dict):
        return (
            isinstance(got, dict) and written.keys() <= got.keys() and all(_holds(got[k], written[k]) for k in written)
        )
    if isinstance(written, list):
        return isinstance(got, list) and len(got) == len(written) and all(map(_holds, got, written))
    if isinstance(written, float) and math.isnan(written):
        return isinstance(got, float) and math.isnan(got)
    return got == written and isinstance(got, bool) == isinstance(written, bool)


def test_manifest_with_any_field_replaced_fails_only_as_export_error(tmp_path):
    outcomes: Counter = Counter()

    @RUNS
    @given(data=st.data())
    def check(data):
        manifest = _sample_manifest()
        entry = manifest["artifacts"]["m_xnnpack_fp32.pte"]
        key = data.draw(st.sampled_from(sorted(entry)))
        entry[key] = data.draw(values)
        path = tmp_path / "manifest.json"
        path.write_text(json.dumps(manifest))
        try:
            read = read_manifest(path)
        except StaleManifest as e:
            assert str(path) in str(e) and "re-export" in str(e), str(e)
            outcomes["refused"] += 1
            return
        # taken: a typed entry that holds the value written (nothing coerced or dropped)
        [(name, got)] = read.artifacts.items()
        assert name == "m_xnnpack_fp32.pte" and isinstance(got, Entry), got
        assert _holds(json_data(got)[key], entry[key]), (key, entry[key], json_data(got)[key])
        outcomes["accepted"] += 1

    check()
    _assert_mostly_refused(outcomes)
    # known bad, whatever was generated: a size that is not a number
    bad = _sample_manifest()
    bad["artifacts"]["m_xnnpack_fp32.pte"]["bytes"] = "1000"
    (tmp_path / "manifest.json").write_text(json.dumps(bad))
    try:
        read_manifest(tmp_path / "manifest.json")
    except StaleManifest as e:
        assert "re-export" in str(e), str(e)
    else:
        raise AssertionError('a manifest with "bytes": "1000" was read')
