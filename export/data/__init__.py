"""What ships inside the package beside the code, found the same way installed or in a checkout:
the built-in model configs and release-line table (``CONFIGS``: the checkout's configs/) and the
sources of the react-native-executorch package checker (``TS_SOURCES``: scripts/ts, whose
node_modules are set up on first use in ``cache_root()``, export/rne/rne_schema.py). In the checkout these
are links to those folders; a wheel holds copies."""

from __future__ import annotations

import os
from pathlib import Path

HERE = Path(__file__).parent
CONFIGS = HERE / "configs"
RUNTIMES = CONFIGS / "runtimes" / "rne_releases.yaml"
TS_SOURCES = HERE / "ts"
# what the checker's folder is made of (package data): node_modules is not, it is installed
TS_FILES = (
    ".npmrc",
    "package.json",
    "package-lock.json",
    "tsconfig.base.json",
    "validate_spec.mjs",
    "shims/loader.mjs",
    "shims/react-native-worklets.mjs",
    "stubs/react-native/index.d.ts",
)


def cache_root() -> Path:
    """$RNE_EXPORT_CACHE, else $XDG_CACHE_HOME/rne-export, else ~/.cache/rne-export."""
    given = os.environ.get("RNE_EXPORT_CACHE")
    if given:
        return Path(given)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "rne-export"
