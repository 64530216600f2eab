"""Resampling as torch's ``F.interpolate(align_corners=False)`` does it, in JAX, separably.

Used between the scales of a coarse-to-fine run (crowsonkb's ``F.interpolate`` of the image
and of Adam's moments). ``wrap`` reads indices modulo the size (tileable textures).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def _cubic(x: np.ndarray, a: float = -0.75) -> np.ndarray:
    # Keys' cubic convolution kernel with torch's a = -0.75.
    x = np.abs(x)
    near = ((a + 2) * x - (a + 3)) * x * x + 1
    far = ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
    return np.where(x <= 1, near, np.where(x < 2, far, 0.0))


def resample_taps(n_in: int, n_out: int, kind: str, wrap: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(indices, weights), each (n_out, taps), of torch's ``F.interpolate(mode=kind,
    align_corners=False)`` along one axis; ``wrap`` reads indices modulo ``n_in``."""
    real = (n_in / n_out) * (np.arange(n_out) + 0.5) - 0.5
    if kind == "bicubic":
        base = np.floor(real)
        t = real - base
        idx = base[:, None] + np.arange(-1, 3)[None]
        w = _cubic(t[:, None] - np.arange(-1, 3)[None])
    elif kind == "bilinear":
        if not wrap:
            real = np.maximum(real, 0.0)  # torch clamps the source coordinate at 0
        base = np.floor(real)
        t = real - base
        idx = base[:, None] + np.arange(2)[None]
        w = np.stack([1 - t, t], axis=1)
    else:
        raise ValueError(f"unknown resampling {kind!r}")
    idx = idx.astype(np.int64)
    idx = np.mod(idx, n_in) if wrap else np.clip(idx, 0, n_in - 1)
    return idx, w


def resize(x: jax.Array, height: int, width: int, kind: str, wrap: bool = False) -> jax.Array:
    """Resize (…, H, W, C) to (…, height, width, C), separably, as torch's interpolate."""

    def along(y, axis, n_out):
        idx, w = resample_taps(y.shape[axis], n_out, kind, wrap)
        out = 0.0
        for k in range(idx.shape[1]):
            tap = jnp.take(y, jnp.asarray(idx[:, k]), axis=axis)
            shape = [1] * y.ndim
            shape[axis] = n_out
            out = out + tap * jnp.asarray(w[:, k], y.dtype).reshape(shape)
        return out

    return along(along(x, x.ndim - 3, height), x.ndim - 2, width)
