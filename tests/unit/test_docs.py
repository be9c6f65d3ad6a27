"""The measured tables in docs/ are rendered from their data (docs/data/): a page that says other
than its data fails, naming the page; changing the data changes the page."""

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
