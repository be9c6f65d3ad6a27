"""Real photos for parity and calibration: scikit-image's bundled images (offline, nothing committed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torchvision.transforms.v2 import functional as TF

from .errors import ExportError


def _read_rgb8(path: Path, what: str) -> np.ndarray:
    """HxWx3 uint8 RGB of an image file (gray is stacked, alpha dropped)."""
    import skimage.io

    img = skimage.io.imread(path)
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=-1)
    img = img[..., :3]
    if img.dtype != np.uint8:
        raise ExportError(f"{what} is {img.dtype}, not 8-bit RGB; pick another")
    return img


def load_photo(name: str) -> np.ndarray:
    """HxWx3 uint8 RGB of a scikit-image bundled photo."""
    import skimage

    files = {p.stem: p for p in Path(skimage.data_dir).iterdir() if p.suffix in (".png", ".jpg")}
    if name not in files:
        raise ExportError(f"unknown parity image {name!r}; valid scikit-image photos: {', '.join(sorted(files))}")
    return _read_rgb8(files[name], f"parity image {name!r}")


def load_image(name_or_path: str) -> np.ndarray:
    """An image file by path (e.g. a calibration folder's), else a bundled photo by name."""
    path = Path(name_or_path)
    return _read_rgb8(path, f"image {path}") if path.is_file() else load_photo(name_or_path)


def to_model_input(img: np.ndarray, height: int, width: int) -> torch.Tensor:
    """uint8 HxWx3 -> float32 [1,3,H,W] in [0,1]: bilinear resize, /255 (the rne-0.5 feed)."""
    t = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)
    t = TF.resize(t, [height, width], interpolation=TF.InterpolationMode.BILINEAR, antialias=True)
    return (t.float() / 255.0).unsqueeze(0).contiguous()
