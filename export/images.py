"""Real photos for parity and calibration: scikit-image's bundled images (offline, nothing committed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torchvision.transforms.v2 import functional as TF

from .errors import ExportError


def bundled_image_names() -> list[str]:
    import skimage

    return sorted(p.stem for p in Path(skimage.data_dir).iterdir() if p.suffix in (".png", ".jpg"))


def load_photo(name: str) -> np.ndarray:
    """HxWx3 uint8 RGB of a scikit-image bundled photo (gray is stacked, alpha dropped)."""
    import skimage
    import skimage.io

    files = {p.stem: p for p in Path(skimage.data_dir).iterdir() if p.suffix in (".png", ".jpg")}
    if name not in files:
        raise ExportError(f"unknown parity image {name!r}; valid scikit-image photos: {', '.join(sorted(files))}")
    img = skimage.io.imread(files[name])
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=-1)
    img = img[..., :3]
    if img.dtype != np.uint8:
        raise ExportError(f"parity image {name!r} is {img.dtype}, not 8-bit RGB; pick another")
    return img


def to_model_input(img: np.ndarray, height: int, width: int) -> torch.Tensor:
    """uint8 HxWx3 -> float32 [1,3,H,W] in [0,1]: bilinear resize, /255 (the rne-0.5 feed)."""
    t = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)
    t = TF.resize(t, [height, width], interpolation=TF.InterpolationMode.BILINEAR, antialias=True)
    return (t.float() / 255.0).unsqueeze(0).contiguous()
