"""`rne-export run`: a .pte run as the app would run it (reference runtime), on one image:
useImageSegmentation / useSemanticSegmentation's forward(), or with --rne 0.10 useSemanticSegmenter's
segment(imageBuffer, colormap). The hook's steps are export/checks/replay.py; this prints what
they return as JSON and writes the overlay or mask PNGs asked for."""

from __future__ import annotations

import sys

from export.errors import ExportError


def colormap_arg(text: str) -> dict:
    import json

    try:
        value = json.loads(text)
    except ValueError:
        raise ExportError(f"--colormap: not JSON: {text[:80]!r}; e.g. '{{\"person\": [255, 0, 0, 255]}}'") from None
    if not isinstance(value, dict):
        raise ExportError("--colormap: expected a JSON object {label: [r, g, b, a]}")
    return value


def segment(args, model, bgr, colormap: dict | None) -> int:
    """run --rne: useSemanticSegmenter's segment(imageBuffer, colormap), as the app gets it."""
    import json

    import numpy as np

    from export.checks.replay import image_buffer, mask_overlay, write_png, write_rgba_png
    from export.rne.hooks import segmenter_labels

    result = model.segment(image_buffer(bgr, args.format), colormap, args.rne)
    opts = result.opts
    labels = list(segmenter_labels(model.labels)[0])
    ids, counts = np.unique(result.argmax, return_counts=True)
    summary = {
        "artifact": str(args.artifact),
        "rne": opts.line.label,
        "hook": opts.line.hook,
        "contract": opts.contract,
        "modelOpts": {
            "resizeMode": opts.resize_mode,
            "interpolation": opts.interpolation,
            "normalizeOpts": {"feed": opts.feed, "alpha": list(opts.alpha), "beta": list(opts.beta)},
            "outInterpolation": opts.out_interpolation,
        },
        "image": {"format": args.format, "width": bgr.shape[1], "height": bgr.shape[0]},
        "input": [model.height, model.width],
        "mask": {"shape": list(result.mask.shape), "dtype": str(result.mask.dtype), "format": "rgba"},
        "classes_present": {
            labels[int(i)]: round(int(n) / result.argmax.size, 4) for i, n in zip(ids, counts, strict=True)
        },
        "colormap_present": {labels[int(i)]: list(result.colormap[labels[int(i)]]) for i in ids},
    }
    if args.mask:
        write_rgba_png(args.mask, result.mask)
        summary["mask"]["png"] = str(args.mask)
    if args.overlay:
        write_png(args.overlay, mask_overlay(bgr, result.mask, result.argmax, labels, result.colormap))
        summary["overlay"] = str(args.overlay)
    print(json.dumps(summary, indent=2))
    return 0


def command(args) -> int:
    """`rne-export run`: the file run as the app's hook runs it, on one image; a JSON summary on stdout."""
    import json

    import numpy as np

    from export.checks.replay import ARGMAX, SegmentationModel, decode, overlay, read_source, write_png

    segmenter_only = [f for f, v in (("--mask", args.mask), ("--colormap", args.colormap)) if v]
    if args.format != "rgba":
        segmenter_only.append("--format")
    if not args.rne and segmenter_only:
        raise ExportError(f"{', '.join(segmenter_only)}: only with --rne (e.g. --rne 0.10: segment(imageBuffer))")
    if args.rne and (args.classes or args.resize):
        raise ExportError(
            "--classes / --resize are forward()'s (react-native-executorch 0.4 – 0.9); segment() (--rne) returns "
            "an RGBA mask at the image's size: use --mask / --colormap"
        )
    colormap = colormap_arg(args.colormap) if args.colormap else None
    from export.files import existing_file, new_file

    # every argument that needs no model first: a bad one fails before the program is loaded
    existing_file(args.artifact, "artifact", "pass the .pte file")
    for flag, target in (("--overlay", args.overlay), ("--mask", args.mask)):
        if target:  # a PNG name in a folder that takes files
            new_file(target, flag, (".png",))
    bgr = decode(read_source(args.image), args.image)
    model = SegmentationModel(args.artifact, contract=args.contract)
    if model.entry is None:
        print(
            f"note: no manifest.json beside {args.artifact}: its sha256 cannot be checked and labels are class ids",
            file=sys.stderr,
        )
    if args.rne:
        return segment(args, model, bgr, colormap)
    classes = [c.strip() for c in args.classes.split(",") if c.strip()]  # "CAT, PERSON": the space is not a label
    result = model.forward(bgr, classes, resize=args.resize)
    argmax = result[ARGMAX]
    ids, counts = np.unique(argmax, return_counts=True)
    summary = {
        "artifact": str(args.artifact),
        "contract": model.contract.name,
        "input": [model.height, model.width],
        "keys": {k: {"shape": list(v.shape), "dtype": str(v.dtype)} for k, v in result.items()},
        "classes_present": {
            model.labels[int(i)]: round(int(n) / argmax.size, 4) for i, n in zip(ids, counts, strict=True)
        },
        "mean_probability": {c: round(float(result[c].mean()), 4) for c in classes},
    }
    if args.overlay:
        write_png(args.overlay, overlay(bgr, argmax, model.labels))
        summary["overlay"] = str(args.overlay)
    print(json.dumps(summary, indent=2))
    return 0
