"""React Native ExecuTorch's own load-time check of a `.pte`, for release lines whose hook validates the
program's schema (useSemanticSegmenter, 0.10).

`program_spec` describes the file's `forward` method as RNE's native loader does (cpp/core/schema.cpp
methodSpecFromMetadata: ExecuTorch's MethodMeta, replaced by the file's `get_model_schema` JSON for
the methods that names). `validate_spec` hands that description and a label count to the package's
compiled code (scripts/ts/validate_spec.mjs runs its createSemanticSegmenter: its validateSpec with
the task's allowed specs, then its labels-vs-classes check) and raises GateError naming the rule that
failed. Needs node and the release installed in scripts/ts (`make venv` does both; without them
`require_toolchain` fails naming the fix, never a silent skip).

`gate` is the export gate (export/verify.py `rne_schema_gate`): every file whose contract a
schema-checking line serves passes the package's check before it is committed. No torch at module
level.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from .errors import ExportError, GateError
from .records import RneSchemaRecord

TS_DIR = Path(__file__).resolve().parent.parent / "scripts" / "ts"
SCRIPT = TS_DIR / "validate_spec.mjs"
SCHEMA_METHOD = "get_model_schema"  # RNE's companion method: a JSON ModelSpec<ConcreteDim> string
# ExecuTorch ScalarType -> RNE's DType (cpp/core/dtype.cpp dtypeFromScalarType); the loader refuses
# any other dtype.
DTYPES = {0: "uint8", 3: "int32", 4: "int64", 6: "float32", 11: "bool"}


def default_rne() -> str:
    """The release the newest schema-checking line (`serves`) is type-checked against."""
    from .runtimes import load_runtimes

    checked = [ln.typecheck for ln in load_runtimes() if ln.serves and ln.typecheck]
    if not checked:
        raise ExportError("no release line with `serves` and `typecheck` in the release table")
    return checked[-1]


def schema_release(contract: str, min_rne: str | None = None) -> str | None:
    """The npm release whose check a file of `contract` (claiming releases from `min_rne` on) must
    pass: the newest line that serves the contract through normalizeOpts and pins a `typecheck`.
    None: no schema-checking line runs such files."""
    from .runtimes import load_runtimes, version_key

    low = version_key(min_rne) if min_rne else (0,)
    checked = [
        ln.typecheck
        for ln in load_runtimes()
        if ln.serves and ln.feed_for(contract) and ln.typecheck and version_key(ln.releases.last) >= low
    ]
    return checked[-1] if checked else None


def require_toolchain(rne: str) -> None:
    """node on PATH and react-native-executorch `rne` installed in scripts/ts, or one error naming
    the fix."""
    if shutil.which("node") is None:
        raise ExportError(
            f"node is not on PATH: the react-native-executorch {rne} schema check runs the package's own "
            "JavaScript; install Node.js (>= 18), then `make venv` (it runs npm ci --prefix scripts/ts)"
        )
    package = TS_DIR / "node_modules" / f"rne-{rne}" / "lib" / "module"
    if not package.is_dir():
        raise ExportError(
            f"react-native-executorch {rne} is not installed in {TS_DIR} (no node_modules/rne-{rne}): "
            "the schema check runs its compiled code; run `npm ci --prefix scripts/ts` (or `make venv`)"
        )


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
    from executorch.runtime import Runtime

    path = Path(pte)
    name = name or path.name
    try:
        program = Runtime.get().load_program(path)
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
    require_toolchain(rne)
    proc = subprocess.run(
        [shutil.which("node") or "node", str(SCRIPT), "--rne", rne],
        input=json.dumps({"spec": spec, "labels": labels}),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=TS_DIR,
    )
    if proc.returncode not in (0, 1):
        raise ExportError(
            f"rne-schema: {SCRIPT.name} could not run react-native-executorch {rne}: {proc.stderr.strip()} "
            "(`npm ci --prefix scripts/ts` installs it)"
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
