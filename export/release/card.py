"""The Hugging Face model card (artifacts/README.md), generated from the manifest, bench.json and
overlays rendered by the reference runtime. Every number in it comes from those files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TypeVar

import pydantic
import yaml

from export.bench_records import (
    BENCH_NAME,
    BENCH_SCHEMA_VERSION,
    PROFILE_CHART,
    PROFILE_NAME,
    PROFILE_SCHEMA_VERSION,
    Bench,
    Profile,
)
from export.errors import ExportError
from export.files import write_bytes_atomic
from export.host import runs_here
from export.records import Entry, Manifest, first_error, from_json_data
from export.release.codegen import constants_for, groups_for
from export.release.snippets import group_snippet, snippet
from export.rne.runtimes import RneLine, claimed_lines, load_runtimes, releases_label, runtimes_to_prove, served_lines
from export.store.manifest import checked_files, read_manifest

CARD_NAME = "README.md"
OVERLAY_DIR = "overlays"
OVERLAY_PHOTOS = ("chelsea", "astronaut", "coffee")  # a cat, a person, a table scene: VOC classes
LICENSE = "bsd-3-clause"  # torchvision's license, under which its model definitions and weights ship


def render_overlays(folder: Path, manifest: Manifest) -> list[Path]:
    """Overlays of the first artifact this runtime can execute, on bundled photos."""

    from export.checks.replay import ARGMAX, SegmentationModel, overlay, write_png
    from export.rne.preprocess import load_photo

    runnable = [(n, e) for n, e in manifest.artifacts.items() if runs_here(e.delegate)]
    if not runnable:
        return []
    name, entry = runnable[0]
    pte, _ = checked_files(folder, name, entry)
    model = SegmentationModel(pte)
    (folder / OVERLAY_DIR).mkdir(exist_ok=True)
    out = []
    for photo in OVERLAY_PHOTOS:
        bgr = load_photo(photo)
        path = folder / OVERLAY_DIR / f"{Path(entry.path).stem}_{photo}.png"
        write_png(path, overlay(bgr, model.forward(bgr, resize=True)[ARGMAX], model.labels))
        out.append(path)
    return out


def _fmt_ms(bench: Bench | None, name: str, key: str, fmt: str) -> str:
    r = bench.engines.get(name) if bench else None
    value = getattr(r, key) if r else None
    return "not measured" if value is None else format(value, fmt)


def _claimed(e: Entry, lines: tuple[RneLine, ...]) -> str:
    """The RNE releases a file claims: its contract's release lines, from its min_rne on."""
    return releases_label(claimed_lines(e, lines), e.min_rne)


def _served(e: Entry, lines: tuple[RneLine, ...]) -> str:
    """The RNE releases that run a file through its constant's normalizeOpts, and which ones."""
    served = served_lines(e, lines)
    if not served:
        return "-"
    feeds = sorted({ln.feed_for(e.contract.name) or "" for ln in served})
    return f"{releases_label(served, e.min_rne)} (normalizeOpts {', '.join(feeds)})"


def _compat_table(manifest: Manifest, lines: tuple[RneLine, ...]) -> list[str]:
    """Each file x each RNE release line that runs it (its contract's, and those serving it through
    normalizeOpts): what `export compat` found in that line's runtime."""
    rows = []
    for name, e in manifest.artifacts.items():
        claimed = [ln for group in runtimes_to_prove(e, lines).values() for ln in group]
        for line in (ln for ln in lines if ln.feed_for(e.contract.name)):  # its contract's lines and the serving ones
            r = (e.compat or {}).get(line.executorch)
            if line not in claimed:
                result = f"not supported: the variant's `min_rne` is {e.min_rne}"
            elif r is None:
                result = "not checked (`make compat`)"
            elif r.loads is None:
                result = f"not run: {r.error}"
            elif not r.loads:
                result = f"**fails to load**: {r.error}"
            elif r.vs_eager:
                w = r.vs_eager
                result = (
                    "passes" if r.passed else f"**fails**: {r.error}"
                ) + f"; vs eager: decisive argmax agreement {w.decisive_agreement * 100:.2f}%, SNR {w.snr_db:.1f} dB"
            else:
                result = f"**fails**: {r.error}"
            rows.append(f"| `{e.backend}/{name}` | {line.label} | {line.executorch} | {result} |")
    return [
        "",
        "## Runtime compatibility",
        "",
        "Each file loaded and run in the ExecuTorch runtime that each React Native ExecuTorch release "
        "it claims embeds (`export compat`, on the photos bundled in its `.bpte`, vs eager PyTorch).",
        "",
        "| file | react-native-executorch | ExecuTorch | result |",
        "| --- | --- | --- | --- |",
        *rows,
    ]


def render_card(
    manifest: Manifest,
    bench: Bench | None,
    overlays: list[str],
    extra_benches: dict[str, Bench] | None = None,
    profile: Profile | None = None,
) -> str:
    """The model card: one section renderer after another, each from the manifest (and bench)."""
    arts = manifest.artifacts
    if not arts:
        raise ExportError("the manifest lists no artifacts; run the export first")
    table = load_runtimes()  # the RNE release lines, read once for the whole card
    lines = [
        *_front(arts, bench),
        *_usage(arts, table),
        *_contracts_and_labels(arts),
        *_artifact_table(arts, bench, table),
        *_compat_table(manifest, table),
        *_accuracy_notes(arts),
        *PARITY_NOTE,
        *bench_sections(bench, extra_benches or {}, profile),
        *_examples(overlays),
        *_how_made(arts),
    ]
    return "\n".join(lines)


def _front(arts: dict[str, Entry], bench: Bench | None) -> list[str]:
    """Front matter, title, the random-weights warning and what the card is made from."""
    first = next(iter(arts.values()))
    backends = sorted({e.backend for e in arts.values()})
    front = {
        "license": LICENSE,
        "library_name": "executorch",
        "pipeline_tag": "image-segmentation",
        "tags": [
            "executorch",
            "react-native-executorch",
            "semantic-segmentation",
            "pascal-voc",
            first.model,
            *backends,
        ],
    }
    random_weights = sorted({e.weights.identity for e in arts.values() if e.weights.kind == "random"})
    lines = [
        "---",
        yaml.safe_dump(front, sort_keys=False).strip(),
        "---",
        "",
        f"# {first.model} for React Native ExecuTorch",
        "",
    ]
    if random_weights:  # a smoke-test build must never pass for a model
        lines += [
            f"> **Not a usable model: these files carry seeded random weights ({', '.join(random_weights)}).** "
            "They exist to test the toolchain; their masks and overlays are noise.",
            "",
        ]
    return lines + [
        f"Semantic segmentation ({len(first.labels)} Pascal VOC classes) as ExecuTorch `.pte` files for React "
        "Native ExecuTorch's segmentation hook. Generated by rne-export from `manifest.json`"
        + (" and `bench.json`." if bench else "; no benchmark was run for this card."),
        "",
    ]


def _usage(arts: dict[str, Entry], table: tuple[RneLine, ...]) -> list[str]:
    """One snippet per constant (0.4-0.9 lines) and per file group (0.10's normalizeOpts)."""
    first = next(iter(arts.values()))
    paths = [(n, f"{e.backend}/{n}") for n, e in arts.items()]
    lines = [
        "## Usage",
        "",
        "Each react-native-executorch release line feeds the model differently, so each has its own file "
        "and constant. From 0.10 (useSemanticSegmenter) the constant carries the normalization "
        "(`normalizeOpts`), so files of either contract serve it, each with its own. The constants are in "
        "`modelUrls.ts`, generated when these files were published (their URLs point at this repo's tag).",
        "",
    ]
    for c in constants_for(paths, arts, table):
        lines += [
            f"### react-native-executorch {c.releases} (`{c.name}`, contract {c.contract})",
            "",
            "```tsx",
            snippet(c, first.labels).rstrip("\n"),
            "```",
            "",
        ]
    for g in groups_for(paths, arts, table):
        lines += [
            f"### react-native-executorch {g.releases} (`{g.name}`, contract {g.contract}, normalizeOpts {g.feed})",
            "",
            "```tsx",
            group_snippet(g).rstrip("\n"),
            "```",
            "",
        ]
    return lines


def _contracts_and_labels(arts: dict[str, Entry]) -> list[str]:
    first = next(iter(arts.values()))
    return [
        "## Contracts",
        "",
        *[
            f"- **{name}**: {desc}"
            for name, desc in sorted({(e.contract.name, e.contract.description) for e in arts.values()})
        ],
        "- output 0 of every file: float32 logits [1, classes, H, W]; softmax + argmax happen in the app. "
        "The input is static: the hook reads H×W from it.",
        "",
        "## Labels",
        "",
        "| id | label |",
        "| --- | --- |",
        *[f"| {n} | {label} |" for n, label in enumerate(first.labels)],
        "",
    ]


def _artifact_table(arts: dict[str, Entry], bench: Bench | None, table: tuple[RneLine, ...]) -> list[str]:
    """One row per file: who loads it, what it is, its parity and its latency on the bench host."""
    lines = [
        "## Artifacts",
        "",
        "| file | react-native-executorch | contract | react-native-executorch, normalizeOpts in the constant | "
        "input | normalization | backend | precision | MB | sha256 | "
        "parity | argmax agreement (decisive pixels) | max error / logit range | SNR dB | "
        "host median ms | × eager | × ONNX Runtime | peak MB |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, e in arts.items():
        norm = "ImageNet mean/std in the graph" if e.contract.normalize_in_graph else "ImageNet mean/std by the runtime"
        head = (
            f"| `{e.backend}/{name}` | {_claimed(e, table) or 'none (no release line takes this contract)'} | "
            f"{e.contract.name} | {_served(e, table)} | {e.input.layout} {e.input.dtype} {list(e.input.shape)} | {norm} "
        )
        w = e.parity.worst
        nums = (
            f"{w.decisive_agreement * 100:.3f}% | {w.rel_max_abs:.2e} | {w.snr_db:.1f}"
            if w
            else "not executed here | - | -"
        )
        lines.append(
            head + f"| {e.backend} | {e.precision} | {e.bytes / 1e6:.1f} | "
            f"`{e.sha256[:16]}…` | {e.parity.mode} | {nums} | {_fmt_ms(bench, name, 'median_ms', '.1f')} | {_fmt_ms(bench, name, 'ratio_to_eager', '.2f')} | "
            f"{_fmt_ms(bench, name, 'ratio_to_onnxruntime', '.2f')} | {_fmt_ms(bench, name, 'peak_rss_increment_mb', '.0f')} |"
        )
    return lines


def _accuracy_notes(arts: dict[str, Entry]) -> list[str]:
    """Each int8 file against eager fp32 on the held-apart photos, and against labels when given."""
    lines = []
    for name, e in arts.items():
        acc = e.accuracy
        if not acc:
            continue
        wa = acc.worst
        lat = acc.latency_ratio_to_fp32
        # every photo is fed at the program's H×W, so the mean of the photos is over all their pixels
        pooled = sum(v.argmax_agreement for v in acc.per_image.values()) / len(acc.per_image)
        photos = [i.split(":")[-1] for i in acc.images]
        lines.append(
            f"\n`{name}` vs eager fp32 on {len(photos)} held-apart photos ({', '.join(photos)}; few: a "
            f"spot check, not a dataset): argmax agreement {pooled * 100:.1f}% of all their pixels; each "
            f"metric's worst photo: logit SNR {wa.snr_vs_noise_db:+.1f} dB relative to what 1 % sensor noise "
            f"does to fp32 (gated), {wa.stable_agreement * 100:.2f}% agreement on the pixels fp32 keeps under "
            f"that noise, argmax agreement "
            f"{wa.argmax_agreement * 100:.1f}%, mIoU {wa.miou:.3f}, SNR {wa.snr_db:.1f} dB "
            f"({acc.bounds} bounds); calibrated on {', '.join(Path(c).name for c in acc.calibration)}"
            + (f"; {lat.ratio:.2f}× the fp32 file's latency on the export host." if lat.ratio else ".")
        )
        if acc.labels:
            lab = acc.labels
            lines += [
                f"\nAgainst ground-truth labels ({lab.images} images of `{Path(lab.folder).name}`, "
                f"{lab.seconds_per_image:.2f} s per image for all models, so ~{lab.seconds_per_image * 1449 / 60:.0f} "
                f"min for VOC val's 1,449):\n",
                "| model | mIoU | pixel accuracy |",
                "| --- | --- | --- |",
                *(f"| {k} | {v.miou:.3f} | {v.pixel_accuracy * 100:.1f}% |" for k, v in lab.scores.items()),
                f"\nmIoU drop {lab.miou_drop:+.3f} (bound ≤ {lab.max_miou_drop:g}).",
            ]
    return lines


PARITY_NOTE = [
    "",
    "Parity: the file read back from disk vs eager PyTorch on scikit-image photos (the app's OpenCV "
    "preprocessing) and seeded random inputs (worst input shown). Argmax agreement counts pixels whose "
    "top-2 margin is not a near-tie; errors are relative to the logit range, so the numbers mean the same "
    "for any weights. `executed` = run by the ExecuTorch runtime; `emulated` = the backend cannot run on "
    "the export host (Core ML off Apple platforms): fp16 rounding of weights and every op output in the "
    "exported graph vs fp32 — an estimate, not a run of the file; `not executed` = only static checks "
    "(delegate ids, input/output shapes) ran.",
    "",
]


def _examples(overlays: list[str]) -> list[str]:
    if not overlays:
        return []
    return [
        "## Example output",
        "",
        "Argmax masks from the reference runtime (the hook's preprocessing, on the "
        "ExecuTorch runtime), Pascal VOC palette.",
        "",
        *[f"![{Path(p).stem}]({p})" for p in overlays],
        "",
    ]


def _how_made(arts: dict[str, Entry]) -> list[str]:
    first = next(iter(arts.values()))
    v = first.versions
    return [
        "## How it was made",
        "",
        f"- weights: {first.weights.identity}",
        f"- config: `{first.config.file}` (sha256 `{first.config.sha256[:16]}…`)",
        f"- tools: python {v['python']}, torch {v['torch']}, torchvision {v['torchvision']}, "
        f"executorch {v['executorch']}, coremltools {v['coremltools']}",
        f"- rne-export commit: {first.git_commit or 'unknown'}",
        *[
            f"- `{n}`: exported in {e.export_seconds:.1f} s; delegation "
            f"{e.delegation.delegated_nodes} ops in {e.delegation.delegated_subgraphs} {e.delegate} "
            f"subgraph(s), {e.delegation.non_delegated_compute_nodes} outside"
            for n, e in arts.items()
        ],
        "",
    ]


def bench_sections(bench: Bench | None, extra: dict[str, Bench], profile: Profile | None) -> list[str]:
    """One "Host benchmark" section per bench file (this host's bench.json, then e.g. the macOS
    job's bench-macos-arm64.json), each titled by its CPU; then the op-by-op profile, if any."""
    lines: list[str] = []
    for title, b in ([("", bench)] if bench else []) + sorted(extra.items()):
        lines += _host_bench(title, b)
    return lines + (_profile_section(profile) if profile else [])


def _host_bench(title: str, b: Bench) -> list[str]:
    from export.host import label

    h = b.host
    threads = ", ".join(f"{k} {v}" for k, v in h.threads.items())
    version = h.versions.get
    lines = [
        f"## Host benchmark: {h.cpu}" + (f" ({title})" if title else ""),
        "",
        f"{b.runs} runs after {b.warmup} warm-up, interleaved, medians; input {b.input}; "
        f"{label(h)}; threads: {threads or '?'}; torch {version('torch')}, "
        f"ExecuTorch {version('executorch')}, ONNX Runtime {version('onnxruntime')}. Ratios are latency ratios (< 1 is "
        "faster); ONNX Runtime runs the same wrapped model, int8 as its own static QDQ model calibrated on "
        "the same photos.",
        "",
        "| engine | median ms | × eager | × ONNX Runtime fp32 | × ONNX Runtime int8 | load ms | GMAC | GMAC/s | % of peak |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, r in b.engines.items():
        load = "-" if r.load_ms is None else f"{r.load_ms:.0f}"
        peer = f"{r.ratio_to_peer:.2f}" if "int8" in b.peers.get(name, "") else "-"
        units = f" (Core ML compute units {r.coreml_compute_units})" if r.coreml_compute_units else ""
        work = [
            "-" if v is None else format(v, f) for v, f in ((r.gmac, ".3g"), (r.gmacs, ".1f"), (r.peak_share, ".1%"))
        ]
        lines.append(
            f"| {name}{units} | {r.median_ms:.1f} | {r.ratio_to_eager:.2f} | {r.ratio_to_onnxruntime:.2f} | "
            f"{peer} | {load} | {' | '.join(work)} |"
        )
    if (pk := h.peak) is not None:
        lines.append(
            f"\nGMAC: the multiply-accumulates of each engine's program, taps that read padding left out (the same work "
            f"for every engine of a model). "
            f"Peak: {pk.cores} cores × {pk.clock_ghz:.2f} GHz ({pk.clock_source}) × {pk.fp32_macs_per_cycle} fp32 / "
            f"{pk.int8_macs_per_cycle} int8 MAC per cycle per core, assumed from the instruction sets ({pk.isa_basis}): "
            f"{pk.fp32_gmacs:.0f} fp32 and {pk.int8_gmacs:.0f} int8 GMAC/s; int8 engines are set against int8's."
            + (" The clock is a floor, so each share of peak is at most what is shown." if pk.clock_is_floor else "")
        )
    if h.kernels:
        lines += [
            "\nWhat this host's kernels reach, one convolution per kind (seeded weights, medians): XNNPACK picks "
            "its micro-kernels by instruction set, so the same file's balance differs from host to host.\n",
            "| engine | kind | shape | median ms | GMAC/s |",
            "| --- | --- | --- | --- | --- |",
            *(f"| {k.engine} | {k.kind} | {k.shape} | {k.median_ms:.2f} | {k.gmacs:.1f} |" for k in h.kernels),
        ]
    for name, a in b.int8_accuracy.items():
        lines.append(
            f"\n`{name}` vs eager fp32, worst held-apart photo: {a.snr_vs_noise_db:+.1f} dB vs sensor "
            f"noise, centered SNR {a.centered_snr_db:.1f} dB, decisive agreement "
            f"{100 * a.decisive_agreement:.2f} %."
        )
    for name, why in b.not_run.items():
        lines.append(f"\n`{name}` was not benchmarked: {why}.")
    if b.resize:
        rz = b.resize
        lines.append(f"\n`resize: true` adds {rz.resize_cost_ms:.3f} ms ({rz.classes} maps to {rz.image}).")
    return lines + [""]


def _profile_section(profile: Profile) -> list[str]:
    from export.checks.op_profile import table

    return [
        "## Where the time goes",
        "",
        f"Op by op on {profile.host}, {profile.runs} traced runs: each XNNPACK file through "
        "ExecuTorch's event tracer (ETDump, read by its Inspector), ONNX Runtime through its profiler, "
        "grouped into the same kinds of work. Tracing adds a little per op: read the shares; the "
        "latency is the table above.",
        "",
        "![time per kind of work](profile.png)",
        "",
        "```",
        table(profile.engines),
        "```",
        "",
    ]


R = TypeVar("R")


def _read(path: Path, cls: type[R], what: str, schema: int, made_by: str) -> R:
    """A JSON file this tool wrote (bench.json, profile.json), as its record; one error otherwise."""
    try:
        return from_json_data(cls, json.loads(path.read_text()))
    except (OSError, ValueError) as e:  # ValueError: not JSON; pydantic's ValidationError is one too
        why = f" ({first_error(e)})" if isinstance(e, pydantic.ValidationError) else ""
    raise ExportError(f"{path}: not a {what} from `{made_by}` (schema {schema}){why}; re-run `{made_by}` or delete it")


def write_card(manifest_path: Path, with_overlays: bool = True) -> Path:
    folder = manifest_path.parent
    manifest = read_manifest(manifest_path)
    for name, entry in manifest.artifacts.items():  # the card describes these very files
        checked_files(folder, name, entry)
    bench_path = folder / BENCH_NAME
    bench = _read(bench_path, Bench, BENCH_NAME, BENCH_SCHEMA_VERSION, "make bench") if bench_path.is_file() else None
    # other hosts' runs of `bench --out bench-<host>.json` (the release's macOS job: Apple silicon)
    extra = {
        p.stem.removeprefix("bench-"): _read(p, Bench, BENCH_NAME, BENCH_SCHEMA_VERSION, "make bench")
        for p in sorted(folder.glob("bench-*.json"))
    }
    profile_path = folder / PROFILE_NAME
    with_chart = profile_path.is_file() and (folder / PROFILE_CHART).is_file()
    profile = _read(profile_path, Profile, PROFILE_NAME, PROFILE_SCHEMA_VERSION, "make profile") if with_chart else None
    overlays = [str(p.relative_to(folder)) for p in render_overlays(folder, manifest)] if with_overlays else []
    target = folder / CARD_NAME
    write_bytes_atomic(target, render_card(manifest, bench, overlays, extra, profile).encode())
    return target


def command(args) -> int:
    """`rne-export card`."""
    print(f"wrote {write_card(args.manifest, with_overlays=not args.no_overlays)}")
    return 0
