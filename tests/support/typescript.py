"""The TypeScript checker the tests compile generated constants and card snippets with: the
tool's own checker folder (react-native-executorch's npm releases, a real tsc)."""

from __future__ import annotations

import json
import subprocess

from export.rne.hooks import families
from export.rne.rne_schema import checker_dir
from export.rne.runtimes import version_key

TS = checker_dir()  # the tool's own checker folder (set up on first use in the user cache)


TSC = TS / "node_modules" / ".bin" / "tsc"


STUBS = TS / "stubs" / "react-native" / "index.d.ts"


RNE_0_5, RNE_0_9 = "0.4.0 – 0.7.3", "0.8.0 – 0.9.3"  # the release families of configs/runtimes/rne_releases.yaml


RNE_0_10 = "0.10.0 – 0.10.2"  # useSemanticSegmenter: serves both contracts through the constant's normalizeOpts


def tsc(folder, *sources, rne: str | None = None):
    """A real tsc; `rne`: the react-native-executorch release (npm, scripts/ts) the sources import."""
    assert TSC.exists(), f"{TSC} missing: the checker's npm ci did not install typescript"
    options = {}
    if rne:
        package = TS / "node_modules" / f"rne-{rne}"
        assert (package / "package.json").exists(), f"{package} missing: scripts/ts/package.json does not pin it"
        options = {"paths": {"react-native-executorch": [str(package)]}, "skipLibCheck": True}
    (folder / "tsconfig.json").write_text(
        json.dumps(
            {
                "extends": str(TS / "tsconfig.base.json"),
                "compilerOptions": options,
                "files": [*sources, str(STUBS)],
            }
        )
    )
    return subprocess.run([str(TSC), "-p", str(folder)], capture_output=True, text=True, timeout=120)


def typecheck_card(folder, card: str) -> list[str]:
    """Compile each usage snippet of a model card, with the modelUrls.ts in `folder`, against the
    react-native-executorch release its section names (the family's `typecheck` release)."""
    checked = []
    for i, section in enumerate(card.split("### react-native-executorch ")[1:]):
        first = section.split(" ", 1)[0]  # "0.5.7 – 0.7.3 (`NAME`...": the first release it is for
        v = version_key(first)
        fam = next(
            f
            for f in families()
            if any(version_key(ln.releases.first) <= v <= version_key(ln.releases.last) for ln in f.lines)
        )
        code = section.split("```tsx\n", 1)[1].split("```", 1)[0]
        (folder / f"snippet{i}.tsx").write_text(code)
        proc = tsc(folder, "modelUrls.ts", f"snippet{i}.tsx", rne=fam.typecheck)
        assert proc.returncode == 0, f"card snippet for {fam.label}: {proc.stdout}"
        checked.append(fam.label)
    return checked
