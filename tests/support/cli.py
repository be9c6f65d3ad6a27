"""The tool as a user runs it: `python -m export ...` in a fresh process, every output kept for the
suite's token search, and which stderr lines are not the tool's own."""

from __future__ import annotations

import functools
import os
import re
import subprocess
import sys
from pathlib import Path

from export import cli
from support.paths import ROOT

# The token the local Hub server accepts. Every output of the suite is searched for it at the end:
# what each test printed or raised, what its `export` child processes printed, every file under
# the run's temp folder (artifacts, manifests, published.json, generated modules).
OUTPUTS: list[tuple[str, str]] = []  # (where, text)


def run_cli(*args: str, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run `python -m export ...` in a fresh process, as a user or release pipeline would."""
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run(
        [sys.executable, "-m", "export", *args], cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=timeout
    )
    OUTPUTS.append((f"`export {' '.join(args[:1])}` output", proc.stdout + proc.stderr))
    return proc


# The lines this tool itself writes to stderr: stage progress "[label] lower (xnnpack) ...", "[label] up to
# date", notes, errors, its own warnings, the labels progress, compat's and bench's headers, retries.
OWN_STDERR = re.compile(
    r"^(\[[\w.-]+\] |rne-schema: |note: |error: |WARNING: |  labels: |compat: |bench: |  .*retrying in |\s*$)"
)


def foreign_stderr_lines(stderr: str) -> list[str]:
    """stderr lines that are not this tool's own (other libraries' warnings, the runtime's log)."""
    return [ln for ln in stderr.replace("\r", "\n").splitlines() if not OWN_STDERR.match(ln)]


@functools.cache
def core_ml_runs() -> bool:
    """Does this host's ExecuTorch runtime execute Core ML (macOS arm64 wheel), or only estimate it?"""
    from executorch.runtime import Runtime

    return Runtime.get().backend_registry.is_available("CoreMLBackend")


def token_leaks(token: str, texts: list[tuple[str, str]], folder: Path) -> list[str]:
    """Where `token` appears: in which of the texts, in which files under `folder`."""
    found = [where for where, text in texts if token in text]
    for p in sorted(folder.rglob("*")):
        if p.is_file() and not p.is_symlink() and token.encode() in p.read_bytes():
            found.append(str(p))
    return found


def new(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(["new", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(proc):
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]
