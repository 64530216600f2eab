"""Loss terms as pure single-image functions (features are H×W×C, images H×W×3).

Notation as in the README: F is a layer's features reshaped to N×C with N = H·W positions,
G = FᵀF / norm, "mean" averages over every element.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def gram(features: jax.Array, norm: str = "hw") -> jax.Array:
    """C×C Gram matrix, divided by H·W (``"hw"``, pystiche) or C·H·W (``"chw"``, Gatys/JJ).

    Accumulates in float32 even for bfloat16 features.
    """
    h, w, c = features.shape
    f = features.reshape(h * w, c)
    return _self_product(f) / (h * w * (c if norm == "chw" else 1))


# FᵀF with a hand-written gradient F·(Ḡ + Ḡᵀ): one matmul where autodiff emits two (one per
# operand of FᵀF) and adds them. Measured on XLA:CPU (bench/): part of a ~18 % faster step
# together with vgg.max_pool_2x2. Same value up to rounding.
@jax.custom_vjp
def _self_product(f: jax.Array) -> jax.Array:
    return jnp.matmul(f.T, f, preferred_element_type=_acc_dtype(f))


def _self_product_fwd(f):
    return _self_product(f), f


def _self_product_bwd(f, g):
    sym = (g + g.T).astype(f.dtype)
    return (jnp.matmul(f, sym, preferred_element_type=_acc_dtype(f)).astype(f.dtype),)


_self_product.defvjp(_self_product_fwd, _self_product_bwd)


def _acc_dtype(x: jax.Array):
    # At least float32 (bf16 features accumulate in fp32); float64 stays float64.
    return jnp.promote_types(x.dtype, jnp.float32)


def content_loss(features: jax.Array, target: jax.Array) -> jax.Array:
    """mean((F - F_c)²): the paper's ½·Σ, rescaled to a mean as every modern tool does."""
    return jnp.mean(jnp.square(features.astype(_acc_dtype(features)) - target))


def gram_style_loss(features: jax.Array, target_gram: jax.Array, norm: str = "hw") -> jax.Array:
    """mean((G - G_s)²) over the C² entries.

    Deviation from the paper: Gatys et al. write Σ(G−A)²/(4N²M²) with unnormalised Grams;
    with ``norm="chw"`` that is this value divided by 4 (a constant folded into the weight).
    """
    return jnp.mean(jnp.square(gram(features, norm) - target_gram))


def tv_l1_sum(image: jax.Array, wrap: bool = False) -> jax.Array:
    """Σ|x[y+1]-x[y]| + Σ|x[:, x+1]-x[:, x]|: anisotropic L1, a sum (neural-style-pt).

    Deviation: the paper has no TV term; Mahendran & Vedaldi's regulariser, as JJ/NSPT add it.
    ``wrap``: also count the differences across the wrap-around edges (tileable textures).
    """
    if wrap:
        image = jnp.concatenate([image, image[:1]], axis=0)
        image = jnp.concatenate([image, image[:, :1]], axis=1)
    dy = _abs(image[1:, :, :] - image[:-1, :, :])
    dx = _abs(image[:, 1:, :] - image[:, :-1, :])
    return jnp.sum(dy) + jnp.sum(dx)


def _abs(x: jax.Array) -> jax.Array:
    # |x| with gradient sign(x), i.e. 0 at 0 as in torch; jnp.abs has gradient 1 at 0,
    # which matters here because flat image regions give exact zero differences.
    return x * jnp.sign(x)


def tv_l2_nine_point(image: jax.Array, wrap: bool = False) -> jax.Array:
    """crowsonkb's nine-point-stencil squared TV (``TVLoss`` @ e7e2c71), replicate-padded.

    2·(mean(Δx²)/3 + mean(Δy²)/3 + mean(Δ↘²)/12 + mean(Δ↙²)/12): a more isotropic L2
    smoothness penalty than the two-direction difference. The factor 2 is inside
    crowsonkb's ``TVLoss``, on top of its ``tv_weight`` of 2. ``wrap``: pad by wrapping
    around instead (tileable textures).
    """
    x = jnp.pad(image, ((1, 1), (1, 1), (0, 0)), mode="wrap" if wrap else "edge")
    mid, nxt, head, tail = slice(1, -1), slice(2, None), slice(None, -1), slice(1, None)
    d_x = jnp.mean(jnp.square(x[mid, nxt] - x[mid, mid])) / 3
    d_y = jnp.mean(jnp.square(x[nxt, mid] - x[mid, mid])) / 3
    d_diag = jnp.mean(jnp.square(x[tail, tail] - x[head, head])) / 12
    d_anti = jnp.mean(jnp.square(x[tail, head] - x[head, tail])) / 12
    return 2 * (d_x + d_y + d_diag + d_anti)


TV_LOSSES = {"l1_sum": tv_l1_sum, "l2_nine_point": tv_l2_nine_point}
