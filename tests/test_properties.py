"""Property tests: generated configs and manifests, valid-looking or not, meet only the project's
own errors (one line naming the file), never another exception."""

from __future__ import annotations

import json

import yaml
from conftest import TINY
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from export.config import load_config
from export.errors import ExportError
from export.manifest import read_manifest

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


@RUNS
@given(key=st.sampled_from(KEYS), value=values)
def test_config_with_any_section_replaced_fails_only_as_config_error(tmp_path, key, value):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(_mutated(TINY_DATA, key, value)))
    try:
        load_config(path)
    except ExportError as e:
        assert str(path) in str(e) and "\n" not in str(e), str(e)


@RUNS
@given(text=st.text(max_size=200))
def test_config_from_any_text_fails_only_as_config_error(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    try:
        load_config(path)
    except ExportError as e:
        assert str(path) in str(e) and "\n" not in str(e), str(e)


def _sample_manifest() -> dict:
    from conftest import sample_entry

    return {"schema": 4, "artifacts": {"m_xnnpack_fp32.pte": sample_entry("m_xnnpack_fp32.pte", "m")}}


@RUNS
@given(data=st.data())
def test_manifest_with_any_field_replaced_fails_only_as_export_error(tmp_path, data):
    manifest = _sample_manifest()
    entry = manifest["artifacts"]["m_xnnpack_fp32.pte"]
    key = data.draw(st.sampled_from(sorted(entry)))
    entry[key] = data.draw(values)
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(manifest))
    try:
        read_manifest(path)
    except ExportError as e:
        assert str(path) in str(e) and "re-export" in str(e), str(e)
