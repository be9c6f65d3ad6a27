"""The app's preprocessing, owned here and nowhere else: what the hook's native runtime does to a
photo before the model sees it. Parity, calibration, accuracy, bundles, `run`, `bench` and the
card's overlays all feed photos through `model_input`.

decode (OpenCV, to BGR uint8) -> cv2.resize INTER_LINEAR (no antialias) to the program's H×W
-> BGR to RGB -> /255 -> (rne-0.9 only) ImageNet mean/std -> NCHW float32 [1,3,H,W].

No torch import at module level: the reference runtime's image helpers stay light.
"""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np

from export.config import bundled_photos
from export.errors import ExportError
from export.records import Contract

# Decompression bombs: images above this many pixels are refused from their header, before decoding.
# 2^26 ≈ 67 MP: far above any phone camera frame the hook would get.
MAX_PIXELS = 2**26


class ImageError(ExportError):
    pass


def _shown(source: str) -> str:
    """A source as named in errors: whole (a path), or cut when it is inline data (base64)."""
    return source if len(source) <= 300 else source[:80] + "…"


def decode(data: bytes, source: str = "image") -> np.ndarray:
    """Encoded bytes -> HxWx3 uint8 BGR, as OpenCV's imread gives the native code (gray is
    expanded to 3 channels, alpha dropped)."""
    if not data:
        raise ImageError(f"{_shown(source)}: empty (0 bytes)")
    w, h = _header_size(data, source)
    if w * h > MAX_PIXELS:
        raise ImageError(f"{_shown(source)}: {w}x{h} pixels, over the {MAX_PIXELS}-pixel limit; downscale it first")
    try:
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    except cv2.error as e:  # OpenCV raises for over-limit images
        raise ImageError(f"{_shown(source)}: cannot decode ({str(e).strip().splitlines()[-1][:200]})") from None
    if img is None or img.size == 0:
        raise ImageError(f"{_shown(source)}: not a decodable image (truncated, or not an image format OpenCV reads)")
    return img


def _header_size(data: bytes, source: str) -> tuple[int, int]:
    """Width and height from the image header alone (Pillow reads headers lazily); (0, 0) when
    Pillow does not know the format, leaving the verdict to OpenCV."""
    import warnings

    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():  # Pillow's own bomb limits (89 MP warns, 179 MP raises): ours decides
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                return im.size
    except Image.DecompressionBombError:  # over twice Pillow's limit, so over ours too
        raise ImageError(f"{_shown(source)}: over the {MAX_PIXELS}-pixel limit; downscale it first") from None
    except (UnidentifiedImageError, OSError):
        return (0, 0)


def read_image(path: str | Path, what: str | None = None) -> np.ndarray:
    """An image file -> HxWx3 uint8 BGR; one clear error naming the file when it is not one."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ImageError(f"{what or 'image'} {path}: no such file") from None
    except IsADirectoryError:
        raise ImageError(f"{what or 'image'} {path}: is a folder, not an image file") from None
    return decode(data, f"{what or 'image'} {path}")


def load_photo(name: str) -> np.ndarray:
    """HxWx3 uint8 BGR of a scikit-image bundled photo, decoded by OpenCV as the app decodes."""
    files = bundled_photos()
    if name not in files:
        raise ExportError(f"unknown photo {name!r}; valid scikit-image photos: {', '.join(files)}")
    return read_image(files[name], f"photo {name!r}")


def load_image(name_or_path: str) -> np.ndarray:
    """An image file by path (e.g. a calibration folder's), else a bundled photo by name (BGR)."""
    path = Path(name_or_path)
    return read_image(path) if path.is_file() else load_photo(name_or_path)


def preprocess(bgr: np.ndarray, height: int, width: int, contract: str | Contract | None = None) -> np.ndarray:
    """BGR uint8 HxWx3 -> [1,3,H,W] float32 exactly as the hook's native runtime feeds the model
    under `contract` (None: RGB pixel/255 only). The one preprocessing every stage and check uses."""
    if bgr.dtype != np.uint8 or bgr.ndim != 3 or bgr.shape[2] != 3:
        raise ImageError(f"expected an HxWx3 uint8 BGR image, got {bgr.dtype} {bgr.shape}")
    resized = cv2.resize(bgr, (width, height), interpolation=cv2.INTER_LINEAR)
    rgb = cv2.cvtColor(resized, cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0
    c = _contract(contract) if contract is not None else None
    if c is not None and c.runtime_mean is not None:
        mean, std = np.array(c.runtime_mean, np.float32), np.array(c.runtime_std, np.float32)
        rgb = np.divide(rgb - mean, std, dtype=np.float32)
    return np.ascontiguousarray(rgb.transpose(2, 0, 1)[None])


def _contract(contract: str | Contract) -> Contract:
    from export.config import CONTRACTS

    return CONTRACTS.get(contract) if isinstance(contract, str) else contract


def model_input(bgr: np.ndarray, height: int, width: int, contract: str | Contract):
    """`preprocess` as a torch tensor (the exporter's and the runtime's feed)."""
    import torch

    return torch.from_numpy(preprocess(bgr, height, width, contract))


def normalize_unit_input(x, contract: str | Contract):
    """A [0,1] RGB tensor (seeded random parity inputs) -> what the runtime feeds under `contract`."""
    import torch

    c = _contract(contract)
    if c.runtime_mean is None:
        return x
    mean = torch.tensor(c.runtime_mean).view(1, 3, 1, 1)
    std = torch.tensor(c.runtime_std).view(1, 3, 1, 1)
    return ((x - mean) / std).contiguous()


def photo_inputs(names, height: int, width: int, contract: str | Contract) -> dict:
    """{"photo:<name>": model input} for photos or image paths, through the app's preprocessing."""
    return {f"photo:{n}": model_input(load_image(n), height, width, contract) for n in names}


# why 0.8: scikit-image's stereo pair motorcycle_left/right scores 0.88 and exact copies 1.0; every
# other pair of its bundled photos scores <= 0.61 (measured over all pairs)
NEAR_DUPLICATE = 0.8


def similarity(a: np.ndarray, b: np.ndarray, side: int = 32) -> float:
    """How alike two BGR images look, in [-1, 1]: correlation of small grey thumbnails, best over
    horizontal shifts up to 1/8 of the width and a mirror (catches copies, re-encodes, resizes,
    flips and stereo pairs; not tight crops)."""

    def thumb(img):
        g = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
        return cv2.resize(g, (side, side), interpolation=cv2.INTER_AREA).astype(np.float64)

    ta = thumb(a)
    best = -1.0
    for tb in (thumb(b), thumb(b)[:, ::-1]):
        for dx in range(-side // 8, side // 8 + 1):
            pa = ta[:, max(dx, 0) : side + min(dx, 0)]
            pb = tb[:, max(-dx, 0) : side + min(-dx, 0)]
            pa, pb = pa - pa.mean(), pb - pb.mean()
            denom = np.sqrt((pa * pa).sum() * (pb * pb).sum())
            best = max(best, float((pa * pb).sum() / denom) if denom > 0 else 0.0)
    return best
