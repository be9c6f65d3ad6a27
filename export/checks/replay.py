"""The hook in Python (what `export run` runs): the `useImageSegmentation` hook's
`forward(imageSource, classesOfInterest, resize)` on a .pte through the ExecuTorch runtime, with the
native side's preprocessing; and react-native-executorch 0.10's `useSemanticSegmenter` `segment(imageBuffer, colormap)`.

forward (0.4 – 0.9): native preprocessing is export.rne.preprocess's (the one owner), at the H×W read
from the program. Output 0 is read as logits [1,C,H,W]; softmax and argmax follow, as on the device.

segment (0.10, `SegmentationModel.segment`): the package's own pipeline (src/extensions/cv/utils/
imagePreprocessor.ts, tasks/semanticSegmentation.ts, cpp/extensions/cv/image_ops.cpp) with the
modelOpts codegen writes for the file's contract (export.rne.hooks.segmenter_opts): an ImageBuffer
(uint8 HWC rgb | rgba | bgr | bgra | gray) -> OpenCV resize 'stretch' with `interpolation`, in the
buffer's own format -> to RGB -> CHW -> float32 pixel·alpha[c] + beta[c] -> logits -> argmax (int32,
first maximum) -> RGBA colormap (label 0 transparent unless given) -> resized to the buffer's size
with `outInterpolation`.
"""

from __future__ import annotations

import base64
import binascii
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from export.config import CONTRACTS
from export.errors import ExportError
from export.host import runs_here
from export.records import Entry
from export.rne.preprocess import ImageError, decode, preprocess  # noqa: F401 (ImageError: the hook's image errors, re-exported)
from export.store.manifest import MANIFEST_NAME, checked_files, read_manifest

MAX_IMAGE_BYTES = 64 * 1024 * 1024  # why: larger encoded files are not photos the hook takes
URL_TIMEOUT_S = 30
ARGMAX = "ARGMAX"


def read_source(source: str) -> bytes:
    """The bytes behind an image source as the hook accepts it: path, file:// URI, http(s) URL,
    data URI or bare base64."""
    if source.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(source, timeout=URL_TIMEOUT_S) as r:
                data = r.read(MAX_IMAGE_BYTES + 1)
        except (urllib.error.URLError, OSError) as e:
            raise ImageError(f"image {source}: cannot download ({getattr(e, 'reason', e)})") from None
        except ValueError as e:  # what urllib raises for a URL it cannot parse, e.g. http://[::1
            raise ImageError(f"image {source[:120]}: not a valid URL ({e})") from None
    elif source.startswith("data:"):
        header, _, payload = source.partition(",")
        if ";base64" not in header:
            raise ImageError("image data URI: only base64 data URIs are supported (data:image/png;base64,...)")
        data = _b64(payload, "data URI")
    else:
        path = Path(source[len("file://") :] if source.startswith("file://") else source)
        if source.startswith("file://") or _exists(path):
            data = _read_file(path)
        else:
            try:  # the hook also takes bare base64
                data = base64.b64decode(source, validate=True)
            except (binascii.Error, ValueError):
                raise ImageError(f"image {source[:120]}: no such file, and not a URL, data URI or base64") from None
    if len(data) > MAX_IMAGE_BYTES:
        raise ImageError(f"image {source[:80]}: over the {MAX_IMAGE_BYTES}-byte limit")
    return data


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except OSError:  # a long base64 string is not a valid file name
        return False


def _read_file(path: Path) -> bytes:
    try:
        size = path.stat().st_size
        if size > MAX_IMAGE_BYTES:
            raise ImageError(f"image {path}: {size} bytes, over the {MAX_IMAGE_BYTES}-byte limit")
        return path.read_bytes()
    except FileNotFoundError:
        raise ImageError(f"image {path}: no such file") from None
    except IsADirectoryError:
        raise ImageError(f"image {path}: is a folder, not an image file") from None


def _b64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ImageError(f"image {what}: not a path, URL or valid base64") from None


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=0, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=0, keepdims=True)


PTE_MAGIC, BPTE_MAGIC = b"ET12", b"BP08"  # flatbuffer file identifiers (bytes 4-8) of .pte and .bpte


class SegmentationModel:
    """A loaded .pte plus its contract and labels (from the manifest beside it unless given)."""

    def __init__(self, pte: str | Path, contract: str | None = None, labels: list[str] | None = None):
        import torch  # the ExecuTorch runtime's tensors; imported here so image helpers stay light

        from export.threads import runtime

        self._torch = torch
        self.path = Path(pte)
        if not self.path.is_file():
            raise ExportError(f"artifact {self.path}: no such file")
        head = self.path.read_bytes()[:8]
        if head[4:8] != PTE_MAGIC:
            hint = " (a bundle: pass the .pte beside it)" if head[4:8] == BPTE_MAGIC else ""
            raise ExportError(f"artifact {self.path}: not an ExecuTorch program (.pte){hint}")
        from export.convert.pte import delegate_ids

        # the file itself first (a cut-short program is that, whatever a manifest or --contract says)
        delegates = delegate_ids(self.path.read_bytes(), f"artifact {self.path}")
        entry = self.entry = self._manifest_entry()
        recorded = entry.contract.name if entry else None
        if contract and recorded and contract != recorded:
            raise ExportError(
                f"contract mismatch: {self.path.name} was exported for {recorded} "
                f"(manifest), not {contract}; feeding it {contract} input gives wrong masks"
            )
        name = contract or recorded
        if name is None:
            raise ExportError(f"{self.path.name}: no manifest.json beside it records its contract; pass --contract")
        # the manifest's record carries the model's own normalization (contract rne-0.10)
        self.contract = entry.contract if entry and entry.contract.name == name else CONTRACTS.get(name)
        self.labels = list(labels or (entry.labels if entry else []))
        missing = sorted({d for d in delegates if not runs_here(d)})
        if missing:
            raise ExportError(
                f"{self.path.name} needs {', '.join(missing)}, which this ExecuTorch runtime does not have "
                f"(it has {', '.join(runtime().backend_registry.registered_backend_names)}); Core ML runs only on Apple platforms"
            )
        program = runtime().load_program(self.path)
        meta = program.metadata("forward")
        _, _, self.height, self.width = meta.input_tensor_meta(0).sizes()
        self.num_classes = meta.output_tensor_meta(0).sizes()[1]
        if self.labels and len(self.labels) != self.num_classes:
            raise ExportError(f"{self.path.name}: {len(self.labels)} labels for {self.num_classes} output classes")
        self.labels = self.labels or [f"CLASS_{i}" for i in range(self.num_classes)]  # no manifest: class ids
        self.method = program.load_method("forward")

    def _manifest_entry(self) -> Entry | None:
        manifest = self.path.parent / MANIFEST_NAME
        if not manifest.is_file():
            return None
        entry = read_manifest(manifest).artifacts.get(self.path.name)
        if entry is not None:
            pte, _ = checked_files(self.path.parent, self.path.name, entry)  # the file the manifest describes
            if pte != self.path:  # it describes the file an interrupted export has not yet put in place
                raise ExportError(
                    f"{self.path}: an interrupted export committed a newer file for this name; "
                    "run the export again to finish it"
                )
        return entry

    def segmenter_opts(self, rne: str = "0.10"):
        """The modelOpts codegen writes for this file's contract for react-native-executorch `rne`."""
        from export.rne.hooks import segmenter_opts

        return segmenter_opts(rne, self.entry.contract if self.entry else self.contract)

    def segment(self, image: ImageBuffer | np.ndarray, colormap: dict | None = None, rne: str = "0.10") -> Segmentation:
        """useSemanticSegmenter's segment(imageBuffer, colormap) (react-native-executorch `rne`, with
        the constant codegen writes for this file). A bare array is a decoded BGR photo."""
        from export.rne.hooks import segmenter_labels

        opts = self.segmenter_opts(rne)
        buf = image if isinstance(image, ImageBuffer) else image_buffer(image, "bgr")
        x = segmenter_input(buf, self.height, self.width, opts)
        argmax = self.logits(x).argmax(axis=0).astype(np.int32)  # first maximum, as the package's argmax
        labels = list(segmenter_labels(self.labels)[0])
        cmap = colormap_for(labels, colormap)
        lut = np.array([cmap[label] for label in labels], np.uint8)
        rgba = lut[argmax]  # applyColormap
        mask = _resize(rgba, buf.height, buf.width, opts.out_interpolation)
        return Segmentation(mask, cmap, argmax, x, opts)

    def logits(self, x: np.ndarray) -> np.ndarray:
        out = self.method.execute([self._torch.from_numpy(x)])[0]
        return out.numpy()[0].copy()  # [C,H,W]; copy: the runtime reuses its output buffer

    def forward(
        self, image_source: str | np.ndarray, classes_of_interest: list[str] | None = None, resize: bool = False
    ) -> dict[str, np.ndarray]:
        classes = list(classes_of_interest or [])
        unknown = [c for c in classes if c not in self.labels]
        if unknown:
            raise ExportError(f"unknown label(s) {', '.join(unknown)}; valid labels: {', '.join(self.labels)}")
        bgr = (
            image_source
            if isinstance(image_source, np.ndarray)
            else decode(read_source(image_source), str(image_source))
        )
        logits = self.logits(preprocess(bgr, self.height, self.width, self.contract))
        probs = softmax(logits)
        result = {ARGMAX: logits.argmax(axis=0).astype(np.int32)}
        for c in classes:
            result[c] = probs[self.labels.index(c)].astype(np.float32)
        return resize_outputs(result, *bgr.shape[:2]) if resize else result


# --- react-native-executorch 0.10: useSemanticSegmenter's segment(imageBuffer, colormap) -----------

IMAGE_FORMATS = ("rgb", "rgba", "bgr", "bgra", "gray")  # the package's ImageFormat
# decoded BGR photo -> an ImageBuffer of each format, as an app would hand it over
_FROM_BGR = {
    "rgb": cv2.COLOR_BGR2RGB,
    "rgba": cv2.COLOR_BGR2RGBA,
    "bgr": None,
    "bgra": cv2.COLOR_BGR2BGRA,
    "gray": cv2.COLOR_BGR2GRAY,
}
# ImageBuffer format -> RGB (image_ops.cpp cvtColor codes FORMAT_CONVERSION[format].rgb names)
_TO_RGB = {
    "rgb": None,
    "rgba": cv2.COLOR_RGBA2RGB,
    "bgr": cv2.COLOR_BGR2RGB,
    "bgra": cv2.COLOR_BGRA2RGB,
    "gray": cv2.COLOR_GRAY2RGB,
}
# InterpolationMethod -> OpenCV flag (image_ops.cpp interpToFlag)
INTERPOLATIONS = {
    "nearest": cv2.INTER_NEAREST,
    "area": cv2.INTER_AREA,
    "linear": cv2.INTER_LINEAR,
    "cubic": cv2.INTER_CUBIC,
    "lanczos": cv2.INTER_LANCZOS4,
}


@dataclass(frozen=True)
class ImageBuffer:
    """The package's ImageBuffer: uint8 HWC pixels in one of IMAGE_FORMATS."""

    data: np.ndarray  # [H,W,C] uint8, C = 3 | 4 | 1
    format: str

    @property
    def height(self) -> int:
        return int(self.data.shape[0])

    @property
    def width(self) -> int:
        return int(self.data.shape[1])


def image_buffer(bgr: np.ndarray, fmt: str = "rgba") -> ImageBuffer:
    """A decoded photo (BGR uint8) as the ImageBuffer an app hands segment(): alpha 255, gray by
    OpenCV's BGR2GRAY."""
    if fmt not in IMAGE_FORMATS:
        raise ExportError(f"image format {fmt!r}: valid formats are {', '.join(IMAGE_FORMATS)}")
    code = _FROM_BGR[fmt]
    data = bgr if code is None else cv2.cvtColor(bgr, code)
    return ImageBuffer(np.ascontiguousarray(data.reshape(*data.shape[:2], -1)), fmt)


def _resize(data: np.ndarray, height: int, width: int, interpolation: str) -> np.ndarray:
    """image_ops.cpp resize, mode 'stretch': cv::resize of the HWC buffer (any channel count)."""
    if interpolation not in INTERPOLATIONS:
        raise ExportError(f"interpolation {interpolation!r}: valid are {', '.join(INTERPOLATIONS)}")
    out = cv2.resize(data, (width, height), interpolation=INTERPOLATIONS[interpolation])
    return out.reshape(height, width, data.shape[2])  # OpenCV drops a single channel's axis


def segmenter_input(image: ImageBuffer, height: int, width: int, opts) -> np.ndarray:
    """imagePreprocessor.ts process(): resize in the buffer's format (uint8) -> RGB -> CHW ->
    float32 pixel·alpha[c] + beta[c] (OpenCV convertTo in float32); [1,3,H,W] for a batched model."""
    if opts.resize_mode != "stretch":
        raise ExportError(f"resizeMode {opts.resize_mode!r}: useSemanticSegmenter takes only 'stretch'")
    resized = _resize(image.data, height, width, opts.interpolation)
    code = _TO_RGB[image.format]
    rgb = resized if code is None else cv2.cvtColor(resized, code)
    chw = rgb.transpose(2, 0, 1).astype(np.float32)
    alpha = np.array(opts.alpha, np.float32).reshape(3, 1, 1)
    beta = np.array(opts.beta, np.float32).reshape(3, 1, 1)
    return np.ascontiguousarray((chw * alpha + beta)[None], dtype=np.float32)


def _js_round(x: float) -> int:
    return int(np.floor(x + 0.5))  # JavaScript's Math.round (halves up), not Python's (halves to even)


def _hsl_to_rgb(h: float, s: float, lightness: float) -> tuple[int, int, int]:
    """semanticSegmentation.ts hslToRgb."""
    s, lightness = s / 100, lightness / 100
    a = s * min(lightness, 1 - lightness)

    def f(n: int) -> float:
        k = (n + h / 30) % 12
        return lightness - a * max(-1, min(k - 3, 9 - k, 1))

    return _js_round(255 * f(0)), _js_round(255 * f(8)), _js_round(255 * f(4))


def default_colormap(labels: list[str] | tuple[str, ...]) -> dict[str, tuple[int, int, int, int]]:
    """The package's default: label 0 transparent, label i hsl(i·137.5 mod 360, 95 %, 50 %) opaque."""
    return {
        label: (0, 0, 0, 0) if i == 0 else (*_hsl_to_rgb((i * 137.5) % 360, 95, 50), 255)
        for i, label in enumerate(labels)
    }


def colormap_for(labels: list[str] | tuple[str, ...], given: dict | None = None) -> dict[str, tuple[int, ...]]:
    """segment()'s colormap: the default, or `given` with every label it omits transparent."""
    if given is None:
        return dict(default_colormap(labels))
    unknown = [k for k in given if k not in labels]
    if unknown:
        raise ExportError(
            f"colormap: unknown label(s) {', '.join(map(str, unknown))}; valid labels: {', '.join(labels)}"
        )
    out: dict[str, tuple[int, ...]] = {}
    for label in labels:
        rgba = given.get(label, (0, 0, 0, 0))
        if not (
            isinstance(rgba, list | tuple)
            and len(rgba) == 4
            and all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255 for v in rgba)
        ):
            raise ExportError(
                f"colormap: {label}: expected an RGBA colour [r, g, b, a] of integers 0-255, got {rgba!r}"
            )
        out[label] = tuple(rgba)
    return out


@dataclass(frozen=True)
class Segmentation:
    """segment()'s result: `mask` (its `buffer`: RGBA uint8 at the image's size) and `colormap`;
    plus what led there, at the model's resolution."""

    mask: np.ndarray  # [h,w,4] uint8 RGBA, the input image's size
    colormap: dict[str, tuple[int, ...]]
    argmax: np.ndarray  # [H,W] int32 at the model's resolution, before the output resize
    model_input: np.ndarray = field(repr=False)  # [1,3,H,W] float32 as fed
    opts: object = None  # export.rne.hooks.SegmenterOpts


def resize_outputs(result: dict[str, np.ndarray], height: int, width: int) -> dict[str, np.ndarray]:
    """Back to the image's size: argmax nearest-neighbour (no invented classes), probabilities bilinear."""
    return {
        k: cv2.resize(v, (width, height), interpolation=cv2.INTER_NEAREST if k == ARGMAX else cv2.INTER_LINEAR)
        for k, v in result.items()
    }


def voc_palette(n: int = 256) -> np.ndarray:
    """The Pascal VOC colour map (bit-interleaved class ids), RGB uint8 [n,3]."""
    pal = np.zeros((n, 3), np.uint8)
    for i in range(n):
        c, r, g, b = i, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        pal[i] = (r, g, b)
    return pal


def overlay(bgr: np.ndarray, argmax: np.ndarray, labels: list[str], alpha: float = 0.5) -> np.ndarray:
    """Photo blended with the argmax mask in VOC colours, plus a legend of the classes present (BGR)."""
    if argmax.shape != bgr.shape[:2]:
        argmax = cv2.resize(argmax.astype(np.int32), (bgr.shape[1], bgr.shape[0]), interpolation=cv2.INTER_NEAREST)
    pal = voc_palette()[:, ::-1]  # to BGR
    blended = cv2.addWeighted(bgr, 1 - alpha, pal[argmax], alpha, 0)
    present = [int(i) for i in np.unique(argmax)]
    row = 22  # legend row height in pixels: readable at 0.5 font scale
    legend = np.full((row * len(present) + 8, blended.shape[1], 3), 255, np.uint8)
    for k, cls in enumerate(present):
        y = 4 + k * row
        cv2.rectangle(legend, (6, y + 3), (22, y + 17), tuple(int(v) for v in pal[cls]), -1)
        name = labels[cls] if cls < len(labels) else str(cls)
        share = float((argmax == cls).mean()) * 100
        cv2.putText(
            legend, f"{name} {share:.1f}%", (30, y + 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA
        )
    return np.vstack([blended, legend])


def mask_overlay(bgr: np.ndarray, mask: np.ndarray, argmax: np.ndarray, labels, colormap, opacity=0.6):
    """The photo with segment()'s RGBA mask drawn over it (its alpha × `opacity`), plus a legend of
    the classes present with their colours (BGR)."""
    a = mask[..., 3:4].astype(np.float32) / 255 * opacity
    blended = (bgr.astype(np.float32) * (1 - a) + mask[..., 2::-1].astype(np.float32) * a).round().astype(np.uint8)
    present = [int(i) for i in np.unique(argmax)]
    row = 22
    legend = np.full((row * len(present) + 8, blended.shape[1], 3), 255, np.uint8)
    for k, cls in enumerate(present):
        y = 4 + k * row
        r, g, b, alpha = colormap[labels[cls]]
        if alpha:
            cv2.rectangle(legend, (6, y + 3), (22, y + 17), (b, g, r), -1)
        else:  # transparent in the mask: an empty box
            cv2.rectangle(legend, (6, y + 3), (22, y + 17), (160, 160, 160), 1)
        share = float((argmax == cls).mean()) * 100
        cv2.putText(
            legend,
            f"{labels[cls]} {share:.1f}%",
            (30, y + 16),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.5,
            (0, 0, 0),
            1,
            cv2.LINE_AA,
        )
    return np.vstack([blended, legend])


def write_rgba_png(path: str | Path, rgba: np.ndarray) -> None:
    write_png(path, cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA))


def write_png(path: str | Path, bgr: np.ndarray) -> None:
    from export.files import write_bytes_atomic

    ok, buf = cv2.imencode(".png", bgr)
    if not ok:
        raise ExportError(f"cannot encode overlay PNG for {path}")
    write_bytes_atomic(path, buf.tobytes())
