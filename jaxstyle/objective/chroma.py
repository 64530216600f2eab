"""Chroma smoothness inside an inpainting hole: a term against colour speckle.

Feature statistics leave high-frequency colour noise almost free (issue 11), and the eye
resolves colour far more coarsely than brightness (why JPEG subsamples chroma). So the
hole's chroma, BT.601 Cb and Cr, is asked to be smooth while its luminance stays free to
carry texture:

    E = Σ_p h_p (|ΔCb_p|² + |ΔCr_p|²) / Σ_p h_p

with Δ the 4-neighbour Laplacian (edges replicated, or wrapped for a tileable image) on
0–255 units and h a mask (the hole; for a texture the whole image). Not in the papers the
methods follow (Gatys et al. 2015; Li & Wand 2016; Yang et al. 2017); an addition.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

# BT.601 (JPEG) chroma rows for RGB in 0–255: Cb and Cr without their 128 offset.
CHROMA = ((-0.168736, -0.331264, 0.5), (0.5, -0.418688, -0.081312))


def chroma(rgb01: jax.Array) -> jax.Array:
    """H×W×3 RGB in [0, 1] → H×W×2 (Cb, Cr) − 128, in 0–255 units."""
    return 255.0 * rgb01 @ jnp.asarray(CHROMA, rgb01.dtype).T


class Chroma(NamedTuple):
    """The term's target in the compiled step: ``weight`` · E over ``mask`` (H×W×1)."""

    weight: jax.Array  # ()
    mask: jax.Array  # H×W×1 in [0, 1]


def chroma_loss(rgb01: jax.Array, hole: jax.Array, wrap: bool = False) -> jax.Array:
    """The term above; ``rgb01`` H×W×3, ``hole`` H×W×1 (or H×W) in [0, 1]. ``wrap``: the
    image is periodic (a tileable texture), so the Laplacian reads across its edges."""
    c = chroma(rgb01.astype(jnp.promote_types(rgb01.dtype, jnp.float32)))
    p = jnp.pad(c, ((1, 1), (1, 1), (0, 0)), mode="wrap" if wrap else "edge")
    lap = p[:-2, 1:-1] + p[2:, 1:-1] + p[1:-1, :-2] + p[1:-1, 2:] - 4 * c
    m = hole.reshape(c.shape[:2]).astype(c.dtype)
    return jnp.sum(m[..., None] * jnp.square(lap)) / jnp.maximum(jnp.sum(m), 1e-8)
