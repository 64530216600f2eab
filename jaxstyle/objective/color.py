"""Colour control (Gatys, Ecker, Bethge, Hertzmann & Shechtman 2017, "Controlling
perceptual factors in neural style transfer", §5). Host-side numpy, float64 inside.

``luminance`` — transfer on luminance only. Content and style become grey images of their
luma Y (full-range BT.601 YCbCr, as JPEG); the style's Y is first matched to the content's
mean and standard deviation, Y_s' = σ_c/σ_s · (Y_s − μ_s) + μ_c. The result's Y is then
recombined with the content's Cb and Cr, so the output keeps the content's colours.

``histogram`` — the style image's colours are matched to the content's before transfer:
x → A·x + b with A = Σ_c^½ Σ_s^−½ and b = μ_c − A·μ_s (the paper's "image analogies"
variant), which gives the style the content's colour mean and covariance exactly.

Both transforms are affine in RGB, so they commute with resizing: they are computed once
from the full-size images and applied to the images of every scale.

Deviations: the paper uses YIQ; BT.601 YCbCr has the same luma and puts the chroma in the
terms image software uses. Transformed images are not clipped to [0, 1] (the network does
not need it, and clipping would spoil the matched statistics). When a recombined pixel
falls outside the RGB cube, its luma is moved to the nearest value inside, so the chroma
stays the content's exactly instead of being clipped away.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# Full-range BT.601 (JFIF): rows give Y, Cb − ½, Cr − ½ from RGB.
RGB_TO_YCBCR = np.array(
    [
        [0.299, 0.587, 0.114],
        [-0.168736, -0.331264, 0.5],
        [0.5, -0.418688, -0.081312],
    ]
)
YCBCR_TO_RGB = np.linalg.inv(RGB_TO_YCBCR)


def rgb_to_ycbcr(rgb: np.ndarray) -> np.ndarray:
    """(…, 3) RGB in [0, 1] → Y, Cb, Cr in [0, 1] (chroma centred on ½)."""
    out = np.asarray(rgb, np.float64) @ RGB_TO_YCBCR.T
    out[..., 1:] += 0.5
    return out


def ycbcr_to_rgb(ycc: np.ndarray) -> np.ndarray:
    y = np.array(ycc, np.float64)
    y[..., 1:] -= 0.5
    return y @ YCBCR_TO_RGB.T


def luma(rgb: np.ndarray) -> np.ndarray:
    return np.asarray(rgb, np.float64) @ RGB_TO_YCBCR[0]


def recombine(result_rgb: np.ndarray, content_rgb: np.ndarray) -> np.ndarray:
    """The result's luma with the content's chroma, float32 RGB in [0, 1]."""
    chroma = rgb_to_ycbcr(content_rgb)[..., 1:] - 0.5
    per_y = YCBCR_TO_RGB[:, 0]  # (1, 1, 1) up to the constants' rounding
    offsets = chroma @ YCBCR_TO_RGB[:, 1:].T  # RGB = Y·per_y + offsets
    y = luma(result_rgb)
    # The luma range in which every channel stays in [0, 1]; not empty, since the
    # content's own luma lies in it.
    lo = np.max(-offsets / per_y, axis=-1)
    hi = np.min((1 - offsets) / per_y, axis=-1)
    y = np.clip(y, lo, np.maximum(lo, hi))
    return np.clip(y[..., None] * per_y + offsets, 0.0, 1.0).astype(np.float32)


@dataclass(frozen=True)
class Affine:
    """x → x·Aᵀ + b on RGB pixels."""

    a: np.ndarray
    b: np.ndarray

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        if self.identity:
            return np.asarray(rgb, np.float32)
        return (np.asarray(rgb, np.float64) @ self.a.T + self.b).astype(np.float32)

    @property
    def identity(self) -> bool:
        return bool(np.array_equal(self.a, np.eye(3)) and not np.any(self.b))


IDENTITY = Affine(np.eye(3), np.zeros(3))


def _mean_cov(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(rgb, np.float64).reshape(-1, 3)
    mean = x.mean(axis=0)
    d = x - mean
    return mean, d.T @ d / len(x)


def _sym_power(cov: np.ndarray, p: float, floor: float = 1e-8) -> np.ndarray:
    vals, vecs = np.linalg.eigh(cov)
    # A flat (one-colour) style has a singular covariance; the floor keeps Σ^-½ finite.
    return (vecs * np.maximum(vals, floor) ** p) @ vecs.T


def histogram_transform(style_rgb: np.ndarray, content_rgb: np.ndarray) -> Affine:
    """The affine map giving the style the content's colour mean and covariance."""
    mu_s, cov_s = _mean_cov(style_rgb)
    mu_c, cov_c = _mean_cov(content_rgb)
    a = _sym_power(cov_c, 0.5) @ _sym_power(cov_s, -0.5)
    return Affine(a, mu_c - a @ mu_s)


def luminance_transform(style_rgb: np.ndarray | None, content_rgb: np.ndarray) -> Affine:
    """RGB → grey (Y, Y, Y); for a style, with Y matched to the content's mean and std."""
    grey = np.outer(np.ones(3), RGB_TO_YCBCR[0])
    if style_rgb is None:
        return Affine(grey, np.zeros(3))
    y_s, y_c = luma(style_rgb), luma(content_rgb)
    k = y_c.std() / max(y_s.std(), 1e-8)
    return Affine(k * grey, np.full(3, y_c.mean() - k * y_s.mean()))


@dataclass(frozen=True)
class ColorPlan:
    """What ``--preserve-color`` does to each input, and to the result."""

    mode: str | None
    content: Affine
    styles: tuple[Affine, ...]

    def finish(self, result_rgb: np.ndarray, content_rgb: np.ndarray) -> np.ndarray:
        if self.mode == "luminance":
            return recombine(result_rgb, content_rgb)
        return result_rgb


def plan(mode: str | None, content_rgb: np.ndarray, styles_rgb: Sequence[np.ndarray]) -> ColorPlan:
    """The colour transforms for ``mode`` (None, "luminance", "histogram"), from the
    full-size content and style images."""
    if mode == "luminance":
        return ColorPlan(mode, luminance_transform(None, content_rgb),
                         tuple(luminance_transform(s, content_rgb) for s in styles_rgb))
    if mode == "histogram":
        return ColorPlan(mode, IDENTITY, tuple(histogram_transform(s, content_rgb) for s in styles_rgb))
    return ColorPlan(None, IDENTITY, tuple(IDENTITY for _ in styles_rgb))
