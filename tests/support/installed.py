"""A fresh venv for the installed tool whose third-party packages are the project venv's own, linked
rather than copied (pip would unpack ~6.7 GB of torch, CUDA and triton wheels per run): only the
distributions the package's runtime `dependencies` reach, so a module the tool needs but only the
test extras install is missing there, as in a user's venv."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

PROJECT = "rne-export"


def runtime_closure(root: str = PROJECT) -> dict[str, metadata.Distribution]:
    """Every installed distribution `root`'s requirements (no extras of its own) reach, extras they
    ask of each other included; keyed by canonical name."""
    extras_of: dict[str, set[str]] = {canonicalize_name(root): set()}
    dists: dict[str, metadata.Distribution] = {}
    todo = [canonicalize_name(root)]
    while todo:
        key = todo.pop()
        dist = dists.setdefault(key, metadata.distribution(key))
        for req in map(Requirement, dist.requires or []):
            if req.marker is not None and not any(req.marker.evaluate({"extra": e}) for e in extras_of[key] | {""}):
                continue
            dep = canonicalize_name(req.name)
            if dep not in extras_of or not set(req.extras) <= extras_of[dep]:
                extras_of[dep] = extras_of.get(dep, set()) | set(req.extras)
                todo.append(dep)
    return dists


def runtime_dependencies(dest: Path) -> Path:
    """`dest` holding a link to each top-level entry (package, module, .dist-info) of the runtime
    closure but the project itself."""
    site = Path(sysconfig.get_paths()["purelib"])
    dest.mkdir(parents=True)
    for key, dist in runtime_closure().items():
        if key == canonicalize_name(PROJECT):
            continue
        for top in {f.parts[0] for f in dist.files or []}:
            if top not in ("..", "__pycache__") and not top.endswith(".pth") and (site / top).exists():
                if not (dest / top).exists():
                    (dest / top).symlink_to(site / top)
    return dest


def fresh_venv(folder: Path) -> Path:
    """A new venv (no system site packages) that sees `runtime_dependencies` through a .pth file."""
    venv = folder / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    deps = runtime_dependencies(folder / "runtime-deps")
    [site] = (venv / "lib").glob("python3*/site-packages")
    (site / "_runtime_deps.pth").write_text(f"{deps}\n")
    return venv
