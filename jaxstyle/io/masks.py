"""Mask images: read from files or arrays as float32 H×W in [0, 1] (white = 1)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from jaxstyle.errors import UserError
from jaxstyle.io import image as imageio


def read_mask(path, shape: tuple[int, int] | None = None) -> np.ndarray:
    """A mask file as float32 H×W in [0, 1] (white = 1; colours are averaged; alpha counts
    as white, as :func:`jaxstyle.image.load_image` composites onto white), resized to
    ``shape`` (bilinear) when given."""
    rgb = imageio.load_image(path)
    m = rgb.astype(np.float32).mean(axis=-1) / 255
    if shape is not None and m.shape != tuple(shape):
        (h, w), (mh, mw) = shape, m.shape
        if abs(mw / mh - w / h) > 0.02 * (w / h):
            raise UserError(f"{path}: the mask is {mw}×{mh} px but the image is {w}×{h}; draw the mask on the image's shape")
        m = imageio.resize_to(m, *shape)
    return np.clip(m, 0.0, 1.0)


def check_masks(masks: Sequence[np.ndarray], n_styles: int) -> None:
    if len(masks) != n_styles:
        raise UserError(f"{len(masks)} mask(s) for {n_styles} style image(s); give one --mask per style, in order")
    if not any(np.any(m > 0) for m in masks):
        raise UserError("every --mask is black, so no style would apply anywhere; paint the regions white")


def load_mask(mask, shape: tuple[int, int]) -> np.ndarray:
    """A mask given as a path or an H×W(×C) array → float32 H×W in [0, 1] at ``shape``."""
    if isinstance(mask, np.ndarray):
        m = mask.astype(np.float32)
        if m.ndim == 3:
            m = m.mean(axis=-1)
        if mask.dtype == np.uint8:
            m = m / 255
        if m.ndim != 2:
            raise UserError(f"a mask array has shape {mask.shape}; expected H×W")
        m = imageio.resize_to(m, *shape) if m.shape != tuple(shape) else m
        return np.clip(m, 0.0, 1.0)
    return read_mask(mask, shape)
