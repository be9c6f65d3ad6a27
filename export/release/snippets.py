"""How an app uses a generated constant: one TypeScript snippet per constant (useImageSegmentation /
useSemanticSegmentation, 0.4-0.9) and per file group (useSemanticSegmenter, 0.10), shown in the
model card and type-checked in the tests against each release's npm package."""

from __future__ import annotations

import re

from export.release.codegen import Constant, Group, ts_str

CLASS_OF_INTEREST = "PERSON"  # the snippets' example class (every model here has the VOC labels)


def snippet(c: Constant, labels: tuple[str, ...] | list[str]) -> str:
    """How an app of the constant's releases uses it (type-checked against those releases' npm
    package in the tests): the hook, the constant from the generated module, the result's keys."""
    cls = CLASS_OF_INTEREST if CLASS_OF_INTEREST in labels else labels[1]
    if c.family.hook == "useImageSegmentation":
        imports = "import { useImageSegmentation, DeeplabLabel } from 'react-native-executorch';"
        call, pick = f"[DeeplabLabel.{cls}]", ("result[DeeplabLabel.ARGMAX]", f"result[DeeplabLabel.{cls}]")
    else:
        imports = "import { useSemanticSegmentation } from 'react-native-executorch';"
        call, pick = f"['{cls}']", ("result.ARGMAX", f"result.{cls}")
    return "\n".join(
        [
            f"// react-native-executorch {c.releases}",
            imports,
            f"import {{ {c.name} }} from './modelUrls';",
            "",
            "export function useSegmentation() {",
            f"  const model = {c.family.hook}({{ model: {c.name} }});",
            "  const segment = async (imageUri: string) => {",
            f"    const result = await model.forward(imageUri, {call}, true);",
            f"    // per-pixel class ids, and per-pixel probabilities of {cls}",
            f"    return {{ argmax: {pick[0]}, {cls.lower()}: {pick[1]} }};",
            "  };",
            "  return { ready: model.isReady, segment };",
            "}",
            "",
        ]
    )


def group_snippet(g: Group) -> str:
    """How an app of the group's releases uses it (type-checked against the family's npm release in
    the tests): the hook with the DEFAULT file, a colour for one label, the RGBA mask back."""
    label = next((x for x in g.labels if x.upper() == CLASS_OF_INTEREST), g.labels[min(1, len(g.labels) - 1)])
    return "\n".join(
        [
            f"// react-native-executorch {g.releases}",
            f"import {{ {g.family.hook}, type cv }} from 'react-native-executorch';",
            f"import {{ {g.name} }} from './modelUrls';",
            "",
            "export function useSegmentation() {",
            f"  // DEFAULT: {g.ios} on iOS, {g.android} on Android; or pick one, e.g. {g.name}.{g.members[0][0]}",
            f"  const model = {g.family.hook}({g.name}.DEFAULT);",
            "  const segment = async (image: cv.ImageBuffer) => {",
            "    if (!model.segment) throw new Error('the model is not loaded yet');",
            f"    // an RGBA mask at the image's size: {label} in red, every other label transparent",
            f"    const result = await model.segment(image, {{ {_ts_key(label)}: [255, 0, 0, 255] }});",
            "    return result.buffer;",
            "  };",
            "  return { ready: model.isReady, segment };",
            "}",
            "",
        ]
    )


def _ts_key(label: str) -> str:
    return label if re.fullmatch(r"[A-Za-z_$][A-Za-z0-9_$]*", label) else ts_str(label)
