"""`export compat`: each .pte of a manifest in the ExecuTorch runtimes embedded by the React Native
ExecuTorch releases it claims (configs/runtimes/rne_releases.yaml: its contract's lines and the
lines that serve it through normalizeOpts, from its `min_rne` on; once per runtime). Each runtime lives in a cached side venv (its wheel imports only beside the torch it
was built against) and runs the file in a subprocess, on the inputs bundled in the file's .bpte
(real photos through the app's preprocessing, with eager PyTorch's outputs), compared as the
parity gate compares. Results go into the manifest entry; a file that does not load or does not
match in a runtime it claims fails the check (exit 3).

1. per artifact: the runtimes it claims
2. per runtime: the side venv (created once, reused)
3. per artifact x runtime: run in a subprocess, compare with eager and with the exporting runtime
4. record in the manifest; fail on any claimed runtime that failed
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from export.data import cache_root
from export.errors import ExportError, GateError
from export.host import runs_here
from export.progress import step
from export.records import CompatResult, Entry, check
from export.rne.runtimes import lines_label, load_runtimes, runtimes_to_prove, version_key
from export.store.manifest import checked_files, read_manifest, write_entry

if TYPE_CHECKING:
    import torch

# Side venvs are big (PyPI's torch is the CUDA build: 4-7 GB each) and slow to make: kept outside
# the repo and reused by every clone on the machine. RNE_EXPORT_RUNTIMES moves them.
CACHE_DIR = Path(os.environ.get("RNE_EXPORT_RUNTIMES") or cache_root() / "runtimes")
PROBE = Path(__file__).with_name("compat_probe.py")
# the pure-Python packages the runtime's import needs (measured: 0.6.0 ruamel.yaml, tabulate; 1.3.1 flatbuffers)
RUNTIME_EXTRAS = ("numpy", "ruamel.yaml", "tabulate", "pyyaml", "packaging", "typing-extensions", "flatbuffers")
PROBE_TIMEOUT_S = 600  # why: loading + two forwards of a 160 MB fp32 file take ~20 s on 2 cores


def side_python(executorch: str, torch: str) -> Path:
    """2. The side venv's python for this runtime, made on first use."""
    venv = CACHE_DIR / f"executorch-{executorch}"
    python, ready = venv / "bin" / "python", venv / ".ready"
    if ready.is_file():
        return python
    print(f"compat: making {venv} (torch {torch} + executorch {executorch} from PyPI, 4-7 GB, once)", flush=True)
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    steps = [
        [sys.executable, "-m", "venv", "--clear", str(venv)],
        [*pip, f"torch=={torch}", *RUNTIME_EXTRAS],
        # --no-deps: the wheel's own pins would pull a second torch; the runtime needs only torch
        [*pip, "--no-deps", f"executorch=={executorch}"],
        [str(python), "-c", "from executorch.extension.pybindings import portable_lib"],
    ]
    for what, cmd in zip(("venv", f"torch {torch}", f"executorch {executorch}", "import check"), steps, strict=True):
        with step(f"executorch-{executorch}", what):
            proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            raise ExportError(f"compat: cannot make the ExecuTorch {executorch} runtime in {venv}: {tail[0][:300]}")
    ready.write_text(f"executorch=={executorch} torch=={torch}\n")
    return python


def bundled_cases(bpte: Path) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The (input, eager expected output) tensors bundled in a .bpte."""
    import numpy as np
    import torch
    from executorch.devtools.bundled_program.serialize import deserialize_from_flatbuffer_to_bundled_program

    dtypes = {"FLOAT": np.float32}

    def tensor(value) -> torch.Tensor:
        t = value.val
        dtype = dtypes[t.scalar_type.name]
        return torch.from_numpy(np.frombuffer(t.data, dtype=dtype).reshape(t.sizes).copy())

    program = deserialize_from_flatbuffer_to_bundled_program(bpte.read_bytes())
    suite = next(s for s in program.method_test_suites if s.method_name == "forward")
    return [(tensor(c.inputs[0]), tensor(c.expected_outputs[0])) for c in suite.test_cases]


def run_in(python: Path, pte: Path, inputs: list) -> tuple[dict, list]:
    """3. The file in that runtime, in a subprocess: (what it said, outputs)."""
    import numpy as np
    import torch

    with tempfile.TemporaryDirectory(prefix="rne-compat-") as d:
        np.savez(Path(d) / "in.npz", **{f"case{i}": x.numpy() for i, x in enumerate(inputs)})
        # -P: the probe's folder (export/) stays off sys.path, so no module of ours can shadow the
        # standard library's inside the side venv (export/profile.py once hid `profile` from cProfile)
        cmd = [str(python), "-P", str(PROBE), str(pte), str(Path(d) / "in.npz"), str(Path(d) / "out.npz")]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=PROBE_TIMEOUT_S)
        said = next((json.loads(ln) for ln in reversed(proc.stdout.splitlines()) if ln.startswith("{")), None)
        if said is None:  # the runtime died (a crash is a failure to load, in its own words)
            log = [ln for ln in proc.stderr.splitlines() if ln.strip()][-3:]
            return {"loads": False, "error": f"exit {proc.returncode}: {' | '.join(log)[:500]}"}, []
        if not said["loads"] or said["error"]:
            errors = [ln.strip() for ln in proc.stderr.splitlines() if "ailed" in ln][:3]
            said["error"] = " | ".join([*errors, said["error"] or ""])[:800]  # the runtime's log says why
            return said, []
        out = np.load(Path(d) / "out.npz")
        return said, [torch.from_numpy(out[f"case{i}"]) for i in range(len(inputs))]


@dataclasses.dataclass
class ExporterRun:
    """One artifact's bundled cases and the exporting runtime's outputs on them: read once per
    artifact, whatever the number of runtimes (reading a .bpte converts it through flatc's JSON,
    100 s for a 168 MB file on 2 cores, measured)."""

    pte: Path
    cases: list[tuple[torch.Tensor, torch.Tensor]]
    here: list[torch.Tensor]

    @classmethod
    def of(cls, name: str, entry: Entry, folder: Path) -> ExporterRun:
        from export.checks.replay import SegmentationModel

        pte, bpte = checked_files(folder, name, entry)
        cases = bundled_cases(bpte)
        method = SegmentationModel(pte, entry.contract.name, list(entry.labels)).method
        return cls(pte, cases, [method.execute([x])[0].clone() for x, _ in cases])


def check_one(entry: Entry, ref: ExporterRun, et: str, label: str, python: Path) -> CompatResult:
    from export.metrics import compare, worst_of

    said, outputs = run_in(python, ref.pte, [x for x, _ in ref.cases])
    if not outputs:
        return CompatResult(et, label, bool(said.get("loads")), said.get("error"), None, None, False)
    worst = worst_of([compare(y, got) for (_, y), got in zip(ref.cases, outputs, strict=True)])
    bounds: dict[str, tuple[str, float]] = {
        k: (v[0], v[1]) for k, v in entry.parity.bounds.items() if isinstance(v, tuple)
    }
    failed = check(worst.as_dict(), bounds)
    vs_exporter = max(float((h - got).abs().max()) for h, got in zip(ref.here, outputs, strict=True))
    return CompatResult(et, label, True, "; ".join(failed) or None, worst, vs_exporter, not failed)


def run_compat(manifest_path: Path, runtimes: list[str] | None = None, backend: str | None = None) -> int:
    """Checks every runnable artifact in every runtime it claims (or only `runtimes`); records each
    result in the manifest; raises GateError naming file, runtime and releases on any failure."""

    folder = manifest_path.parent
    manifest = read_manifest(manifest_path)
    lines = load_runtimes()
    known = sorted({ln.executorch for ln in lines}, key=version_key)
    unknown = [r for r in runtimes or [] if r not in known]
    if unknown:
        raise ExportError(f"--runtime {', '.join(unknown)}: not in the release table; valid: {', '.join(known)}")
    if backend is not None:
        from export.config import BACKENDS

        BACKENDS.get(backend, where="--backend")
    todo = [  # 1. (artifact, runtime, its lines) triples, grouped by runtime below: one side venv at a time
        (name, entry, et, group)
        for name, entry in manifest.artifacts.items()
        for et, group in runtimes_to_prove(entry, lines).items()
        if (not runtimes or et in runtimes) and (backend is None or entry.backend == backend)
    ]
    results = {name: dict(entry.compat or {}) for name, entry in manifest.artifacts.items()}
    refs: dict[str, ExporterRun] = {}
    failures, rows = [], []
    for et in sorted({et for _, _, et, _ in todo}, key=version_key):
        for name, entry, _, group in [t for t in todo if t[2] == et]:
            label = lines_label(group, lines, entry.min_rne)
            if not runs_here(entry.delegate):  # Core ML on Linux: said, never passed
                why = f"not runnable on this host: {entry.delegate} is not in its ExecuTorch runtime"
                results[name][et] = CompatResult(et, label, None, why, None, None, False)
            else:
                python = side_python(et, group[0].torch)  # 2.
                if name not in refs:
                    with step(name, "read its .bpte and run it here"):
                        refs[name] = ExporterRun.of(name, entry, folder)
                with step(name, f"run in ExecuTorch {et}"):
                    results[name][et] = check_one(entry, refs[name], et, label, python)  # 3.
            r = results[name][et]
            rows.append((name, et, label, r))
            if r.loads is not None and not r.passed:
                failures.append(f"{name} in ExecuTorch {et} (RNE {label}): {r.error}")
        if os.environ.get("RNE_EXPORT_PRUNE_RUNTIMES") == "1":  # small disks (CI runners): one at a time
            shutil.rmtree(CACHE_DIR / f"executorch-{et}", ignore_errors=True)
    for name, entry in manifest.artifacts.items():  # 4.
        if results[name] != (entry.compat or {}):
            write_entry(folder, name, dataclasses.replace(entry, compat=results[name]))
    for name, et, label, r in rows:
        state = "not run" if r.loads is None else "loads" if r.loads else "FAILS TO LOAD"
        agree = (
            f"vs eager: decisive agreement {r.vs_eager.decisive_agreement * 100:.2f}%, SNR {r.vs_eager.snr_db:.1f} dB"
            if r.vs_eager
            else (r.error or "")
        )
        print(f"{name:48} ExecuTorch {et:6} RNE {label:16} {state:14} {agree}", flush=True)
    if failures:
        raise GateError("compat: " + "; ".join(failures))
    return 0


def command(args) -> int:
    """`rne-export compat`."""
    return run_compat(args.manifest, args.runtime, args.backend)
