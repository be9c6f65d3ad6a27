"""React Native ExecuTorch's own load-time check of a `.pte`, for release lines whose hook validates the
program's schema (useSemanticSegmenter, 0.10).

`program_spec` describes the file's `forward` method as RNE's native loader does (cpp/core/schema.cpp
methodSpecFromMetadata: ExecuTorch's MethodMeta, replaced by the file's `get_model_schema` JSON for
the methods that names). `validate_spec` hands that description and a label count to the package's
compiled code (validate_spec.mjs runs its createSemanticSegmenter: its validateSpec with the task's
allowed specs, then its labels-vs-classes check) and raises GateError naming the rule that failed.
The checker's folder (the package's export/data/ts files and their npm packages) is set up on first
use in the user cache by `checker_dir`; without node or npm it fails naming the fix, never a silent
skip.

`gate` is the export gate (export/convert/verify.py `verify`, among the static checks): every file
whose contract a schema-checking line serves passes the package's check before it is committed. No
torch at module level.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from export.data import TS_FILES, TS_SOURCES, cache_root
from export.errors import ExportError, GateError
from export.records import RneSchemaRecord

SCRIPT = "validate_spec.mjs"
READY = ".installed"  # written last: a folder without it is an interrupted set-up
NODE_FIX = "install Node.js (>= 18) with npm (https://nodejs.org), then run the command again"
SCHEMA_METHOD = "get_model_schema"  # RNE's companion method: a JSON ModelSpec<ConcreteDim> string
# ExecuTorch ScalarType -> RNE's DType (cpp/core/dtype.cpp dtypeFromScalarType); the loader refuses
# any other dtype.
DTYPES = {0: "uint8", 3: "int32", 4: "int64", 6: "float32", 11: "bool"}


def default_rne() -> str:
    """The release the newest schema-checking line (`serves`) is type-checked against."""
    from export.rne.runtimes import load_runtimes

    checked = [ln.typecheck for ln in load_runtimes() if ln.serves and ln.typecheck]
    if not checked:
        raise ExportError("no release line with `serves` and `typecheck` in the release table")
    return checked[-1]


def schema_release(contract: str, min_rne: str | None = None) -> str | None:
    """The npm release whose check a file of `contract` (claiming releases from `min_rne` on) must
    pass: the newest line that serves the contract through normalizeOpts and pins a `typecheck`.
    None: no schema-checking line runs such files."""
    from export.rne.runtimes import load_runtimes, version_key

    low = version_key(min_rne) if min_rne else (0,)
    checked = [
        ln.typecheck
        for ln in load_runtimes()
        if ln.serves and ln.feed_for(contract) and ln.typecheck and version_key(ln.releases.last) >= low
    ]
    return checked[-1] if checked else None


def checker_dir() -> Path:
    """The package checker's folder, set up on first use: the shipped sources (export/data/ts) and
    their pinned npm packages (npm ci: typescript and each release the table type-checks), in
    cache_root()/ts/<digest of the sources>. Built in a temp folder and renamed: an interrupted or
    concurrent set-up never leaves a half folder in use."""
    digest = hashlib.sha256()
    for name in TS_FILES:
        digest.update(name.encode() + b"\0" + (TS_SOURCES / name).read_bytes())
    target = cache_root() / "ts" / digest.hexdigest()[:16]
    if (target / READY).is_file():
        return target
    missing = [tool for tool in ("node", "npm") if shutil.which(tool) is None]
    if missing:
        raise ExportError(
            f"{' and '.join(missing)} not on PATH: the react-native-executorch checks (schema gate, constants "
            f"type check) run the package's own JavaScript; {NODE_FIX}"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    print(
        f"rne-schema: first use: installing the react-native-executorch checker into {target} (npm ci) ...",
        file=sys.stderr,
        flush=True,
    )
    start = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix=".setup-", dir=target.parent))
    try:
        for name in TS_FILES:
            (work / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(TS_SOURCES / name, work / name)
        proc = subprocess.run(
            [shutil.which("npm") or "npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=work,
            capture_output=True,
            text=True,
            timeout=1800,
        )
        if proc.returncode != 0:
            last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
            raise ExportError(
                f"npm ci could not install the react-native-executorch checker into {target}: {last} "
                "(it needs the npm registry, or npm's cache, once; then it works offline)"
            )
        (work / READY).write_text("")
        try:
            os.rename(work, target)
        except OSError:  # another process finished first: its folder is as good as ours
            if not (target / READY).is_file():
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"rne-schema: checker ready ({time.monotonic() - start:.0f} s)", file=sys.stderr, flush=True)
    return target


def require_toolchain(rne: str) -> Path:
    """The checker's folder with react-native-executorch `rne` in it (set up on first use), or one
    error naming the fix."""
    if shutil.which("node") is None:
        raise ExportError(
            f"node is not on PATH: the react-native-executorch {rne} schema check runs the package's own "
            f"JavaScript; {NODE_FIX}"
        )
    folder = checker_dir()
    if not (folder / "node_modules" / f"rne-{rne}" / "lib" / "module").is_dir():
        raise ExportError(
            f"react-native-executorch {rne} is not among the checker's packages ({TS_SOURCES / 'package.json'}): "
            f'add "rne-{rne}": "npm:react-native-executorch@{rne}" to it, or name a release it pins'
        )
    return folder


def preflight(contracts: list[tuple[str, str | None]]) -> None:
    """Before any export work: the toolchain the gate needs for these (contract, min_rne) files."""
    for rne in dict.fromkeys(schema_release(c, m) for c, m in contracts):
        if rne:
            require_toolchain(rne)


def _tensor(meta, where: str) -> dict:
    dtype = int(meta.dtype())
    if dtype not in DTYPES:
        raise GateError(
            f"rne-schema: {where}: dtype (ExecuTorch ScalarType {dtype}) is not one react-native-executorch's "
            f"loader reads ({', '.join(DTYPES.values())}); it refuses the file at load"
        )
    return {
        "kind": "Tensor",
        "dtype": DTYPES[dtype],
        "shape": [{"kind": "constant", "value": int(s)} for s in meta.sizes()],
    }


def _params(count: int, meta_of, where: str) -> list[dict]:
    out = []
    for i in range(count):
        try:
            meta = meta_of(i)
        except (IndexError, RuntimeError):  # not a tensor; Python's MethodMeta does not say which tag
            out.append({"kind": "None"})  # any non-tensor kind gets the same verdict from the check
            continue
        out.append(_tensor(meta, f"{where} #{i}"))
    return out


def program_spec(pte: str | Path, method: str = "forward", name: str | None = None) -> dict:
    """The file's ModelSpec<ConcreteDim> for `method`, as RNE's native loader builds it. `name`:
    what errors call the file (default: its file name)."""
    from export.threads import runtime

    path = Path(pte)
    name = name or path.name
    try:
        program = runtime().load_program(path)
    except (OSError, RuntimeError, ValueError) as e:
        raise ExportError(f"{path}: cannot load it as an ExecuTorch program ({e})") from None
    if method not in program.method_names:
        raise GateError(f"rne-schema: {name}: no method {method!r} (has {sorted(program.method_names)})")
    meta = program.metadata(method)
    spec = {
        method: {
            "inputs": _params(meta.num_inputs(), meta.input_tensor_meta, f"{name}: {method} input"),
            "outputs": _params(meta.num_outputs(), meta.output_tensor_meta, f"{name}: {method} output"),
            "runtimeConstraints": [],
        }
    }
    if SCHEMA_METHOD in program.method_names:
        result = program.load_method(SCHEMA_METHOD).execute([])
        if len(result) != 1 or not isinstance(result[0], str):
            raise GateError(f"rne-schema: {name}: {SCHEMA_METHOD} must return a single string value")
        try:
            override = json.loads(result[0])
        except ValueError:
            raise GateError(f"rne-schema: {name}: {SCHEMA_METHOD} does not return JSON") from None
        if isinstance(override, dict) and method in override:
            spec[method] = override[method]
    return spec


def _rule(message: str, spec: dict) -> str:
    """The refusal's reason for the variant the file is shaped for (batched: a rank-4 input)."""
    lines = [ln.strip()[2:] for ln in message.splitlines() if ln.strip().startswith("- Variant ")]
    if not lines:
        return message.strip()
    first = (spec.get("forward", {}).get("inputs") or [{}])[0]
    variant = "unbatched" if len(first.get("shape", ())) == 3 else "batched"
    line = next((ln for ln in lines if ln.startswith(f"Variant '{variant}'")), lines[0])
    return line.split(": ", 1)[1].removeprefix("Method 'forward' ")


def validate_spec(spec: dict, labels: int, rne: str | None = None, where: str = "spec") -> list[int]:
    """Run the package's check on `spec` (ModelSpec<ConcreteDim>) with `labels` labels; returns the
    output shape the task allocates. GateError names the rule that failed."""
    rne = rne or default_rne()
    folder = require_toolchain(rne)
    proc = subprocess.run(
        [shutil.which("node") or "node", str(folder / SCRIPT), "--rne", rne],
        input=json.dumps({"spec": spec, "labels": labels}),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=folder,
    )
    if proc.returncode not in (0, 1):
        raise ExportError(
            f"rne-schema: {SCRIPT} could not run react-native-executorch {rne}: {proc.stderr.strip()} "
            f"(delete {folder} to set the checker up again)"
        )
    verdict = json.loads(proc.stdout.strip().splitlines()[-1])
    if verdict["ok"]:
        return verdict["output"]
    message = verdict["message"]
    rule = f"labels: {message}" if verdict["code"] == "INVALID_ARGUMENT" else _rule(message, spec)
    raise GateError(
        f"rne-schema: {where}: react-native-executorch {rne}'s useSemanticSegmenter refuses it: {rule} "
        f"({verdict['code']}: {' '.join(message.split())})"
    )


def check_pte(pte: str | Path, labels: int, rne: str | None = None, name: str | None = None) -> list[int]:
    """`validate_spec` on the file's own description: what the app would find when loading it."""
    name = name or Path(pte).name
    return validate_spec(program_spec(pte, name=name), labels, rne, name)


def package_id(rne: str) -> str:
    return f"react-native-executorch@{rne}"


def gate(pte: str | Path, contract: str, min_rne: str | None, labels: int, name: str) -> RneSchemaRecord | None:
    """The export gate: the file (called `name`) passes the package's load-time check with its
    `labels`, for the release `schema_release` picks; the manifest's record of it. None: no
    schema-checking line serves this contract. GateError names the rule that failed."""
    rne = schema_release(contract, min_rne)
    if rne is None:
        return None
    check_pte(pte, labels, rne, name)
    return RneSchemaRecord(package_id(rne), passed=True)
