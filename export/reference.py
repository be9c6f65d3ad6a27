"""Reference runtime: the `useImageSegmentation` hook's `forward(imageSource, classesOfInterest, resize)`
in Python, on a .pte through the ExecuTorch runtime, with the native side's preprocessing.

Native preprocessing is export.preprocess's (the one owner), at the H×W read from the program.
Output 0 is read as logits [1,C,H,W]; softmax and argmax follow, as on the device.
"""

from __future__ import annotations

import base64
import binascii
import urllib.error
import urllib.request
from pathlib import Path

import cv2
import numpy as np

from .config import CONTRACTS, Contract
from .errors import ExportError
from .manifest import MANIFEST_NAME, Entry, checked_files, read_manifest
from .preprocess import ImageError, decode  # noqa: F401 (ImageError: the hook's image errors, re-exported)
from .preprocess import preprocess as _preprocess

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


def preprocess(bgr: np.ndarray, height: int, width: int, contract: Contract) -> np.ndarray:
    """BGR uint8 -> [1,3,H,W] float32 as the hook's native runtime feeds the model."""
    return _preprocess(bgr, height, width, contract.runtime_mean, contract.runtime_std)


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=0, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=0, keepdims=True)


PTE_MAGIC, BPTE_MAGIC = b"ET12", b"BP08"  # flatbuffer file identifiers (bytes 4-8) of .pte and .bpte


class SegmentationModel:
    """A loaded .pte plus its contract and labels (from the manifest beside it unless given)."""

    def __init__(self, pte: str | Path, contract: str | None = None, labels: list[str] | None = None):
        import torch  # the ExecuTorch runtime's tensors; imported here so image helpers stay light
        from executorch.runtime import Runtime

        self._torch = torch
        self.path = Path(pte)
        if not self.path.is_file():
            raise ExportError(f"artifact {self.path}: no such file")
        head = self.path.read_bytes()[:8]
        if head[4:8] != PTE_MAGIC:
            hint = " (a bundle: pass the .pte beside it)" if head[4:8] == BPTE_MAGIC else ""
            raise ExportError(f"artifact {self.path}: not an ExecuTorch program (.pte){hint}")
        from .verify import delegate_ids

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
        self.contract = CONTRACTS.get(name)
        self.labels = list(labels or (entry.labels if entry else []))
        runtime = Runtime.get()
        missing = sorted({d for d in delegates if not runtime.backend_registry.is_available(d)})
        if missing:
            raise ExportError(
                f"{self.path.name} needs {', '.join(missing)}, which this ExecuTorch runtime does not have "
                f"(it has {', '.join(runtime.backend_registry.registered_backend_names)}); Core ML runs only on Apple platforms"
            )
        program = runtime.load_program(self.path)
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


def write_png(path: str | Path, bgr: np.ndarray) -> None:
    from .files import write_bytes_atomic

    ok, buf = cv2.imencode(".png", bgr)
    if not ok:
        raise ExportError(f"cannot encode overlay PNG for {path}")
    write_bytes_atomic(path, buf.tobytes())
