"""Temporal consistency for video (Ruder, Dosovitskiy & Brox, "Artistic style transfer for
videos", GCPR 2016 / IJCV 2018): backward warping and the short-/long-term temporal loss.

Pure JAX, for one frame (the engine vmaps it like every other term):

- :func:`warp` moves an image along a dense flow field, bilinearly;
- :func:`temporal_loss` is Ruder's eq. (5): ``(1/D) Σ_k c_k (x_k − ω_k)²`` with
  ``D = H·W·3``, ``ω`` the previous stylized frame warped into the current one and ``c`` the
  per-pixel reliability (0 at disocclusions and motion boundaries, 1 elsewhere);
- :func:`long_term_weights` turns the reliability maps of several earlier frames into
  Ruder's long-term weights (eq. 7): each pixel is held to the *closest* earlier frame in
  which it is reliable, so the sum over frames of eq. (6) never counts a pixel twice.

Flow convention (OpenCV's): ``flow[y, x] = (dx, dy)`` and ``warp(img, flow)[y, x] =
img[y + dy, x + dx]``. To pull the previous frame into the current one, pass the *backward*
flow (current → previous), as Ruder does.
"""

from __future__ import annotations

import jax.numpy as jnp


def warp(image: jnp.ndarray, flow: jnp.ndarray) -> jnp.ndarray:
    """Backward-warp ``image`` (H×W×C) by ``flow`` (H×W×2, (dx, dy) in pixels), bilinearly.

    Samples outside the frame take the nearest border pixel (OpenCV's BORDER_REPLICATE);
    those pixels are marked unreliable by :func:`jaxstyle.io.flow.reliability` anyway, so
    the border rule only has to be finite. Differentiable in ``image`` (and in ``flow``).
    """
    h, w = image.shape[:2]
    ys, xs = jnp.meshgrid(jnp.arange(h, dtype=flow.dtype), jnp.arange(w, dtype=flow.dtype), indexing="ij")
    x = jnp.clip(xs + flow[..., 0], 0, w - 1)
    y = jnp.clip(ys + flow[..., 1], 0, h - 1)
    x0 = jnp.clip(jnp.floor(x), 0, w - 2 if w > 1 else 0)
    y0 = jnp.clip(jnp.floor(y), 0, h - 2 if h > 1 else 0)
    fx = (x - x0)[..., None].astype(image.dtype)
    fy = (y - y0)[..., None].astype(image.dtype)
    x0i, y0i = x0.astype(jnp.int32), y0.astype(jnp.int32)
    x1i, y1i = jnp.minimum(x0i + 1, w - 1), jnp.minimum(y0i + 1, h - 1)
    top = image[y0i, x0i] * (1 - fx) + image[y0i, x1i] * fx
    bottom = image[y1i, x0i] * (1 - fx) + image[y1i, x1i] * fx
    return top * (1 - fy) + bottom * fy


def temporal_loss(image: jnp.ndarray, warped: jnp.ndarray, weight: jnp.ndarray) -> jnp.ndarray:
    """Ruder's short-term temporal loss, ``(1/D) Σ c (x − ω)²`` with ``D = H·W·C``.

    ``image``, ``warped``: H×W×C in the same pixel space (the recipe's: the weight that
    multiplies this term depends on its units); ``weight``: H×W×1 (or H×W×C) in [0, 1].
    Long-term consistency is the same form with ``ω`` and ``c`` stacked over the earlier
    frames (J×H×W×C and J×H×W×1, weights from :func:`long_term_weights`): the sum over J.
    """
    d = image.shape[-3] * image.shape[-2] * image.shape[-1]
    diff = image - warped
    return jnp.sum(weight * diff * diff) / d


def long_term_weights(reliable: jnp.ndarray) -> jnp.ndarray:
    """Ruder's eq. (7): ``c_long(i−j) = max(c(i−j) − Σ_{k<j} c(i−k), 0)``.

    ``reliable``: J×H×W×1 reliability of the earlier frames, nearest first (j = 1, 2, …).
    A pixel keeps its weight only for the closest frame in which it is reliable; with binary
    masks exactly one of the J weights is 1 where any is.
    """
    before = jnp.cumsum(reliable, axis=0) - reliable  # Σ over the closer frames
    return jnp.maximum(reliable - before, 0.0)


__all__ = ["long_term_weights", "temporal_loss", "warp"]
