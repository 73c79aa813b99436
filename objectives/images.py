"""Image batches as every metric takes them (uint8 [N, 3, H, W]) and the default device for the networks.

Kept apart from ``objectives.features`` so the CLIP and feature modules can both use it without importing each
other (the CLIP-image extractor in ``features`` builds on ``clip_score``).
"""
from __future__ import annotations

import numpy as np
import torch

__all__ = ["as_uint8_nchw", "default_device"]


def as_uint8_nchw(images) -> torch.Tensor:
    """Validate and normalise an image batch to a CPU/GPU ``torch.uint8`` tensor [N, 3, H, W].

    Accepts torch or numpy arrays, uint8 [N, 3|1, H, W]; grayscale is replicated to RGB.
    """
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(images)
    if not torch.is_tensor(images) or images.dtype != torch.uint8 or images.dim() != 4:
        desc = f"{type(images).__name__} {getattr(images, 'dtype', '')} {tuple(getattr(images, 'shape', ()))}"
        raise ValueError(f"images must be uint8 [N, 3, H, W], got {desc}")
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    if images.shape[1] != 3:
        raise ValueError(f"images must have 1 or 3 channels in dim 1, got shape {tuple(images.shape)}")
    return images


def default_device(device=None) -> torch.device:
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
