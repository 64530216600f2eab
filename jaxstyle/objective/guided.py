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

from collections.abc import Iterable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from jaxstyle.config import Recipe
from jaxstyle.model.vgg import min_size
from jaxstyle.objective import style


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


def guided_layer_loss(features: jax.Array, targets: Mapping[str, jax.Array], masks: jax.Array, recipe: Recipe) -> jax.Array:
    """Σ_r a_r · loss_r for one layer; ``targets`` stacked over R regions, ``masks`` (R, h, w)."""
    loss_kind = style.kind(recipe)

    def one(target, mask):
        stats = style.guided_statistics(features, mask, recipe)
        return jnp.mean(mask) * loss_kind.statistics_loss(stats, target)

    return jnp.sum(jax.vmap(one)(targets, masks))
