"""Render the measured tables in docs/ from docs/data/ (export/release/docs_tables.py): `make docs`.

Usage: python scripts/render_docs.py [--check]   (--check: exit 1 naming each page that is stale)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from export.files import write_bytes_atomic
from export.release.docs_tables import stale_pages

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="change nothing; exit 1 if a page differs from its data")
    args = ap.parse_args()
    stale = stale_pages(ROOT)
    if args.check:
        for path in stale:
            print(f"{path.relative_to(ROOT)}: its measured tables differ from docs/data; run `make docs`")
        return 1 if stale else 0
    for path, text in stale.items():
        write_bytes_atomic(path, text.encode())
    print("rendered " + (", ".join(str(p.relative_to(ROOT)) for p in stale) or "nothing: every page is current"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
