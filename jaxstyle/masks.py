"""Spatial control: guided style statistics (Gatys et al. 2017, "Controlling perceptual
factors in neural style transfer", §4).

A mask m (H×W, values in [0, 1], white = 1) gives a region to a style. Every layer sees the
mask average-pooled the way the network pools its features (2×2 windows, odd edges
dropped), so mask and features stay aligned at every depth. A region's statistics at a
layer weight each position p by w_p = m_p / Σ_q m_q:

    Gram:  G_r = Σ_p w_p f_p f_pᵀ            (÷ C as well for ``gram_norm="chw"``)
    W2:    μ_r = Σ_p w_p f_p,  S_r = Σ_p w_p f_p f_pᵀ

so a mask of ones gives the plain statistics of :mod:`jaxstyle.losses`. A layer's loss is
Σ_r a_r · loss(stats_r(x), target_r) with a_r = mean_p m_p, the region's share of the
layer: a pixel's gradient then does not depend on the size of its region, and one full mask
gives the unguided loss.

Deviation from the paper: Gatys et al. take the Gram of F∘m, i.e. weights m_p² instead of
m_p (the same for black-and-white masks) and leave regions unnormalised.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxstyle import image as imageio
from jaxstyle.errors import UserError
from jaxstyle.vgg import min_size


def _poolings(layer: str) -> int:
    # How many 2×2 poolings lie before the layer's output: min_size is 2 to that power.
    return int(np.log2(min_size([layer])))


def pool_mask(mask: np.ndarray, times: int) -> np.ndarray:
    """Average-pool the last two axes 2×2, stride 2, floor mode, ``times`` times."""
    m = np.asarray(mask, np.float32)
    for _ in range(times):
        h, w = m.shape[-2] // 2 * 2, m.shape[-1] // 2 * 2
        m = m[..., :h, :w]
        m = 0.25 * (m[..., 0::2, 0::2] + m[..., 1::2, 0::2] + m[..., 0::2, 1::2] + m[..., 1::2, 1::2])
    return m


def layer_masks(masks: np.ndarray, layers: Iterable[str]) -> dict[str, np.ndarray]:
    """``{layer: (R, h_l, w_l)}`` from image-sized masks (R, H, W), aligned with the features."""
    return {name: pool_mask(masks, _poolings(name)) for name in layers}


def guided_statistics(features: jax.Array, mask: jax.Array, kind: str, norm: str = "hw") -> dict[str, jax.Array]:
    """A region's statistics of H×W×C ``features`` under an H×W ``mask`` (see module doc)."""
    h, w, c = features.shape
    f = features.reshape(h * w, c)
    f = f.astype(jnp.promote_types(f.dtype, jnp.float32))
    m = mask.reshape(h * w).astype(f.dtype)
    # An empty region gives zeros, not NaN; its share a_r = 0 then removes it from the loss.
    weights = m / jnp.maximum(jnp.sum(m), jnp.finfo(f.dtype).tiny)
    second = (f * weights[:, None]).T @ f
    if kind == "gram":
        return {"gram": second / (c if norm == "chw" else 1)}
    return {"mean": weights @ f, "raw2": second}


def guided_layer_loss(
    features: jax.Array, targets: Mapping[str, jax.Array], masks: jax.Array, kind: str, norm: str = "hw"
) -> jax.Array:
    """Σ_r a_r · loss_r for one layer; ``targets`` stacked over R regions, ``masks`` (R, h, w)."""
    from jaxstyle import wasserstein

    def one(target, mask):
        stats = guided_statistics(features, mask, kind, norm)
        if kind == "gram":
            value = jnp.mean(jnp.square(stats["gram"] - target["gram"]))
        else:
            value = wasserstein.w2_from_moments(stats["mean"], stats["raw2"], target)
        return jnp.mean(mask) * value

    return jnp.sum(jax.vmap(one)(targets, masks))


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
