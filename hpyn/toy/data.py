"""Fashion-MNIST (idx files from the Debian package ``dataset-fashion-mnist``) and its captions.

Images become 32x32 RGB uint8: the 28x28 grayscale digit-style image is zero-padded by 2 pixels on
every side and replicated to three channels.
"""
from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

DEFAULT_ROOT = Path(os.environ.get("HPYN_FASHION_MNIST", "/usr/share/datasets/fashion-mnist"))

CLASS_NAMES = (
    "t-shirt", "trouser", "pullover", "dress", "coat",
    "sandal", "shirt", "sneaker", "bag", "ankle boot",
)
TEMPLATES = (
    "a photo of a {}",
    "a black and white picture of a {}",
    "a {}",
    "a small image of a {}",
    "a grayscale photo of the {}",
)
RESOLUTION = 32


def caption(label: int, template: int = 0) -> str:
    """Caption of class ``label`` with template number ``template``."""
    return TEMPLATES[template].format(CLASS_NAMES[label])


def all_captions() -> list[str]:
    """Every (template, class) caption, template-major: index = template * 10 + label."""
    return [t.format(c) for t in TEMPLATES for c in CLASS_NAMES]


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def load_split(split: str, root: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 [N, 3, 32, 32], labels int64 [N]) for split "train" (60k) or "test" (10k)."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    root = Path(root) if root is not None else DEFAULT_ROOT
    prefix = "train" if split == "train" else "t10k"
    img_path = root / f"{prefix}-images-idx3-ubyte.gz"
    if not img_path.exists():
        raise FileNotFoundError(
            f"{img_path} not found: install the Debian package dataset-fashion-mnist "
            "or set HPYN_FASHION_MNIST to a folder with the four idx .gz files")
    images = _read_idx(img_path)
    labels = _read_idx(root / f"{prefix}-labels-idx1-ubyte.gz").astype(np.int64)
    pad = (RESOLUTION - images.shape[-1]) // 2
    images = np.pad(images, ((0, 0), (pad, pad), (pad, pad)))
    return np.repeat(images[:, None], 3, axis=1), labels
