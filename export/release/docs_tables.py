"""The measured tables in docs/, rendered from the data files beside them (docs/data/): the seed
model against ONNX Runtime per host (docs/data/bench/*.json, each one `bench` run's bench.json), the
model sources' builds (docs/data/sources.json, scripts/measure_sources.py), the int8 weight family's
healthy/broken gap (docs/data/int8_family_trimmed.json, scripts/int8_family.py), a kept build's stage
times (docs/data/export_time.json) and the test loop's times (docs/data/loop_times.json). A page
holds each table between its markers; `render_pages` gives the pages as the data says they should
read, and scripts/render_docs.py (`make docs`) writes them. No torch import."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from export.bench_records import CLOCK_FLOOR

SEED_FILES = ("xnnpack_fp32", "xnnpack_int8", "xnnpack_fp32_520")


@dataclass(frozen=True)
class Block:
    page: str  # relative to the checkout
    name: str  # the marker's name
    render: Callable[[Path], str]  # the checkout -> the table (markdown)

    @property
    def begin(self) -> str:
        return f"<!-- MEASURED {self.name}: rendered from docs/data by `make docs`; edit the data, not this table -->"

    @property
    def end(self) -> str:
        return f"<!-- /MEASURED {self.name} -->"


def _ratio(engine: dict | None, key: str = "ratio_to_peer") -> str:
    if not engine or engine.get(key) is None:
        return "–"
    return f"{engine['median_ms']:.1f} ms = {engine[key]:.2f}×"


def _peak(engine: dict | None, peak: dict | None) -> str:
    share = engine.get("peak_share") if engine else None
    if share is None or not peak:
        return "not recorded"
    # a clock raised to what a measured rate needs is a floor: the share is at most this
    return ("≤ " if peak["clock_source"].startswith(CLOCK_FLOOR) else "") + f"{share * 100:.0f} %"


def bench_hosts(root: Path) -> str:
    """One row per host's bench.json: each XNNPACK file of the seed model, its median and its ratio
    to its ONNX Runtime peer (fp32 files: ONNX Runtime fp32; int8: its static int8)."""
    rows = [
        "| host (data) | instruction sets | runs | `xnnpack_fp32` | `xnnpack_int8` | `xnnpack_fp32_520` | fp32 file, % of peak |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for path in sorted((root / "docs" / "data" / "bench").glob("*.json")):
        data = json.loads(path.read_text())
        host, engines = data["host"], data["engines"]
        files = {name: engines.get(f"deeplab_v3_resnet50_{name}.pte") for name in SEED_FILES}
        isa = ", ".join(x for x in host.get("isa", []) if x.startswith(("avx2", "avx512f", "avx512_vnni", "avx_vnni")))
        rows.append(
            f"| {host['cpu']}, {host.get('cores', host.get('cpus'))} cores (`docs/data/bench/{path.name}`) | {isa} | "
            f"{data['runs']} | "
            + " | ".join(_ratio(files[n]) for n in SEED_FILES)
            + f" | {_peak(files['xnnpack_fp32'], host.get('peak'))} |"
        )
    return "\n".join(rows)


def sources(root: Path) -> str:
    """One row per test model and variant of docs/data/sources.json."""
    data = json.loads((root / "docs" / "data" / "sources.json").read_text())
    rows = [
        "| model (source) | variant | MB | export s | outside the delegate | rewrites | median ms | × ONNX Runtime peer |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for m in data["models"]:
        for v, r in m["variants"].items():
            outside = ", ".join(f"{op} ×{n}" for op, n in r["non_delegated_ops"].items()) or "none"
            rewrites = "; ".join(x for x in r["graph_rewrites"] if " x " in x) or (
                "trimmed taps" if r["graph_rewrites"] else "-"
            )
            ms = f"{r['median_ms']:.2f}" if r["median_ms"] is not None else "not run here"
            ratio = f"{r['ratio_to_peer']:.2f}× {r['peer']}" if r["ratio_to_peer"] is not None else "-"
            rows.append(
                f"| {m['model']} ({m['source']}) | {v} | {r['bytes'] / 1e6:.1f} | {r['export_seconds']:.1f} | "
                f"{outside} | {rewrites} | {ms} | {ratio} |"
            )
    head = (
        f"Measured {data['measured_at']} on {data['host']} with `{data['command']}` (random weights, "
        f"{data['runs']} timed runs per engine, interleaved; Core ML files are not executed on Linux)."
    )
    return "\n".join([head, "", *rows])


def int8_family(root: Path) -> str:
    """The int8 weight family's summary (export.checks.int8_table) of docs/data/int8_family_trimmed.json."""
    from export.checks.int8_table import summary

    data = json.loads((root / "docs" / "data" / "int8_family_trimmed.json").read_text())
    judged = [t for t in data.values() if t["judged"]]
    recipes = sorted({r for t in judged for r in t["rows"]})
    seeds = ", ".join(str(s) for s in sorted({t["seed"] for t in data.values()}))
    trim = " --trim" if all(t["trim"] for t in data.values()) else ""
    head = (
        f"Measured with `python scripts/int8_family.py{trim} --seed {seeds}` (the table: "
        f"`docs/data/int8_family_trimmed.json`): {len(judged)} judged members x {len(recipes)} recipes "
        f"({', '.join(recipes)}), the eager quantized model, each row's worst photo; a case is member@seed/recipe."
    )
    return "\n".join([head, "", summary(data)])


EXPORT_STAGES = ("lower", "quantize", "verify", "bundle")  # the columns; the total sums every stage


def export_time(root: Path) -> str:
    """One row per variant of a kept build's manifest (docs/data/export_time.json: the command, its
    wall time and the manifest it wrote): the stage seconds the manifest recorded."""
    data = json.loads((root / "docs" / "data" / "export_time.json").read_text())
    rows = [
        "| variant | total s | " + " | ".join(EXPORT_STAGES) + " |",
        "| --- | --- | " + " | ".join("---" for _ in EXPORT_STAGES) + " |",
    ]
    for entry in data["manifest"]["artifacts"].values():
        seconds = entry["stage_seconds"]
        cells = [f"{seconds[s]:.1f}" if s in seconds else "–" for s in EXPORT_STAGES]
        rows.append(f"| {entry['variant']} | {sum(seconds.values()):.1f} | " + " | ".join(cells) + " |")
    head = (
        f"Measured with `{data['command']}` on {data['host']}, one run, {data['wall_seconds']:.1f} s wall for the "
        f"{len(rows) - 2}; each variant's `stage_seconds` from the manifest it wrote (kept: `docs/data/export_time.json`):"
    )
    return "\n".join([head, "", *rows])


def loop_times(root: Path) -> str:
    """The development loop's times, one row per measurement (docs/data/loop_times.json: what was
    timed, the host, the command, the result; newest first)."""
    rows = json.loads((root / "docs" / "data" / "loop_times.json").read_text())["rows"]
    table = ["| what | host | command | result |", "| --- | --- | --- | --- |"]
    table += [f"| {r['what']} | {r['host']} | {r['command']} | {r['result']} |" for r in rows]
    return "\n".join(table)


BLOCKS = (
    Block("docs/performance.md", "bench-hosts", bench_hosts),
    Block("docs/model-sources.md", "sources", sources),
    Block("docs/int8.md", "int8-family", int8_family),
    Block("docs/performance.md", "export-time", export_time),
    Block("docs/testing.md", "loop-times", loop_times),
)


def stale_pages(root: Path) -> dict[Path, str]:
    """The pages whose measured tables differ from their data, with the text they should have."""
    return {path: text for path, text in render_pages(root).items() if path.read_text() != text}


def render_pages(root: Path) -> dict[Path, str]:
    """Every page with a measured block, as its data says it should read (pages whose markers are
    missing are an error naming the page and the marker)."""
    from export.errors import ExportError

    pages: dict[Path, str] = {}
    for block in BLOCKS:
        path = root / block.page
        text = pages.get(path) or path.read_text()
        if block.begin not in text or block.end not in text:
            raise ExportError(f"{block.page}: no `{block.begin}` ... `{block.end}` block to render {block.name} into")
        start, end = text.index(block.begin), text.index(block.end) + len(block.end)
        pages[path] = text[:start] + block.begin + "\n" + block.render(root) + "\n" + block.end + text[end:]
    return pages
