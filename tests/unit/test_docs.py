"""The measured tables in docs/ are rendered from their data (docs/data/): a page that says other
than its data fails, naming the page; changing the data changes the page. And every test file says
what it proves."""

from __future__ import annotations

import json
import shutil

import pytest
from support import ROOT

from export.errors import ExportError
from export.release.docs_tables import BLOCKS, render_pages


def test_every_measured_table_reads_as_its_data():
    stale = [str(path.relative_to(ROOT)) for path, text in render_pages(ROOT).items() if path.read_text() != text]
    assert stale == [], f"run `make docs`: {stale}"


@pytest.fixture
def copy(tmp_path):
    """The docs and their data in a folder of their own, to change."""
    shutil.copytree(ROOT / "docs", tmp_path / "docs")
    return tmp_path


def test_a_hand_edited_number_or_new_data_makes_the_page_stale(copy):
    page = copy / "docs" / "performance.md"
    page.write_text(page.read_text().replace("= 1.52×", "= 0.98×"))  # a hand-edited ratio
    assert render_pages(copy)[page] != page.read_text()
    page.write_text(render_pages(copy)[page])  # rendered again: current
    data = copy / "docs" / "data" / "bench" / "amd-epyc-zen3-avx2.json"
    bench = json.loads(data.read_text())
    bench["engines"]["deeplab_v3_resnet50_xnnpack_fp32.pte"]["ratio_to_peer"] = 0.5
    data.write_text(json.dumps(bench))
    assert "434.9 ms = 0.50×" in render_pages(copy)[page]


def test_a_page_without_its_markers_is_named(copy):
    page = copy / BLOCKS[0].page
    page.write_text(page.read_text().replace(BLOCKS[0].end, ""))
    with pytest.raises(ExportError, match=f"{BLOCKS[0].page}: no .* block to render {BLOCKS[0].name}"):
        render_pages(copy)


def _row(snr: float, flips: float) -> dict:
    from export.records import ACCURACY_METRICS

    return {"photo:a": {**dict.fromkeys(ACCURACY_METRICS, 0.5), "snr_vs_noise_db": snr, "flips_vs_noise": flips}}


def test_the_int8_family_table_is_worst_healthy_best_broken_and_its_gap():
    """Hand-made table: per metric the worst shipped row of a judged member, the best broken row
    (a broken recipe or member), their gap; a member the family does not judge is left out."""
    from export.checks.int8_table import summary

    table = {
        "a@0": {"member": "a", "seed": 0, "broken_member": False, "judged": True, "trim": True,
                "rows": {"shipped": _row(-10.0, 2.0), "grey": _row(-30.0, 40.0)}},
        "b@0": {"member": "b", "seed": 0, "broken_member": False, "judged": True, "trim": True,
                "rows": {"shipped": _row(-15.0, 3.0), "grey": _row(-25.0, 20.0)}},
        "chaos@0": {"member": "chaos", "seed": 0, "broken_member": False, "judged": False, "trim": True,
                    "rows": {"shipped": _row(-60.0, 90.0)}},
    }  # fmt: skip
    lines = summary(table).splitlines()
    assert "| snr_vs_noise_db | -15 (b@0/shipped) | -25 (b@0/grey) | +10 |" in lines
    assert "| flips_vs_noise | 3 (b@0/shipped) | 20 (b@0/grey) | +17 |" in lines  # lower is better
    table["chaos@0"]["judged"] = True
    assert "| snr_vs_noise_db | -60 (chaos@0/shipped) | -25 (b@0/grey) | -35 |" in summary(table).splitlines()


def test_new_int8_family_data_changes_its_page(copy):
    page, data = copy / "docs" / "int8.md", copy / "docs" / "data" / "int8_family_trimmed.json"
    table = json.loads(data.read_text())
    for row in table["random@0"]["rows"]["shipped"].values():
        row["snr_vs_noise_db"] = -21.0  # a healthy member below the bound: no gap left
    data.write_text(json.dumps(table))
    assert "| snr_vs_noise_db | -21 (random@0/shipped) | " in render_pages(copy)[page]


def test_new_export_time_data_changes_its_page(copy):
    page, data = copy / "docs" / "performance.md", copy / "docs" / "data" / "export_time.json"
    kept = json.loads(data.read_text())
    int8 = next(e for e in kept["manifest"]["artifacts"].values() if e["variant"] == "xnnpack_int8")
    int8["stage_seconds"]["quantize"] = 99.0
    data.write_text(json.dumps(kept))
    assert "| xnnpack_int8 |" in render_pages(copy)[page] and "| 99.0 |" in render_pages(copy)[page]


def test_new_loop_time_data_changes_its_page(copy):
    page, data = copy / "docs" / "testing.md", copy / "docs" / "data" / "loop_times.json"
    kept = json.loads(data.read_text())
    kept["rows"].insert(0, {"what": "`make test`", "host": "a new host", "command": "`make test`", "result": "11 min"})
    data.write_text(json.dumps(kept))
    assert "| `make test` | a new host | `make test` | 11 min |" in render_pages(copy)[page]


def test_every_test_file_says_what_it_proves():
    """A test module's docstring is what docs/testing.md's tiers rest on: none missing, none a placeholder."""
    import ast

    vague = []
    for path in sorted((ROOT / "tests").rglob("test_*.py")):
        doc = ast.get_docstring(ast.parse(path.read_text())) or ""
        if len(doc.split()) < 8 or "TODO" in doc:
            vague.append(f"{path.relative_to(ROOT)}: {doc!r}")
    assert not vague, vague


def test_a_share_of_a_peak_whose_clock_is_a_floor_reads_as_at_most():
    """A clock raised to what a measured rate needs (export.host.peak) is a floor: the real peak may be
    higher, so the file's share is at most the figure."""
    from export.release.docs_tables import _peak

    engine = {"peak_share": 0.994}
    assert _peak(engine, {"clock_source": "measured floor: x ran 102.9 fp32 GMAC/s"}) == "≤ 99 %"
    assert _peak(engine, {"clock_source": "read: /sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq"}) == "99 %"
    assert _peak(engine, None) == _peak(None, {"clock_source": "read: x"}) == "not recorded"
