"""Neural patch (MRF) loss for inpainting (Li & Wand 2016, "Combining Markov random fields
and convolutional neural networks for image synthesis", eq. 2; used for inpainting by Yang
et al., CVPR 2017, "High-resolution image inpainting using multi-scale neural patch
synthesis").

At one layer, every p×p×C feature patch Ψ_m(x) centred on a hole position m is matched to
the target patch (taken from known pixels around the hole) with the highest normalised
cross-correlation, and pulled towards it:

    E = Σ_m w_m ‖Ψ_m(x) − Ψ_NN(m)‖² / (Σ_m w_m · p²C),
    NN(m) = argmax_k ⟨Ψ_m(x), Ψ_k⟩ / (‖Ψ_m(x)‖ ‖Ψ_k‖).

The match is recomputed at every evaluation (inside the compiled step) and, as in Li &
Wand, treated as a constant when differentiating. Deviations: the loss is a weighted mean
(so its size does not depend on the hole's area or the layer's width) and positions carry
weights w_m (a hole pixel's share of the position), where Li & Wand sum over all positions;
optionally (``distance``, used for the pixel layer) the match is the nearest patch in squared
distance: correlation ignores a patch's brightness, and on raw pixels that let a roof take
a bright patch of sky.

In the compiled step (``Targets.patches``, :class:`Patches`, :func:`layer_loss`) the target
patches are read from the image's own current features at known positions, and each free
patch is matched only within its group (its hole). Host-side preparation (which positions)
is :func:`patch_centres` and :func:`source_centres` (:func:`target_patches` for fixed
target arrays); :func:`patch_loss` is the plain term.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

EPS = 1e-8


class Patches(NamedTuple):
    """One layer's MRF target, as the compiled step takes it (see :func:`patch_loss`). The
    target patches are read from the image's own current features at ``sources`` (known
    positions), so they are what the network sees there once the hole is filled, not
    features of a start whose hole leaks into them through the receptive field."""

    sources: jax.Array  # (K,) int, flat positions of the target patches
    target_groups: jax.Array  # (K,) int
    centres: jax.Array  # (M,) int, flat positions in the layer's h×w grid
    centre_groups: jax.Array  # (M,) int
    weights: jax.Array  # (M,) ≥ 0
    scale: jax.Array  # () the term's weight
    distance: jax.Array | bool = False  # () match by squared distance, not correlation


def offsets(width: int, size: int) -> np.ndarray:
    """Flat offsets of a size×size patch's cells from its centre, in a row-major grid of
    ``width`` columns (row by row, so patches flatten as (p, p, C))."""
    r = size // 2
    return np.array([dy * width + dx for dy in range(-r, r + 1) for dx in range(-r, r + 1)], np.int32)


def gather(features: jax.Array, centres: jax.Array, size: int) -> jax.Array:
    """(M, size²·C) patches of H×W×C ``features`` at flat ``centres`` (each at least
    size//2 from every edge: the caller's job, see :func:`patch_centres`)."""
    h, w, c = features.shape
    flat = features.reshape(h * w, c)
    idx = centres[:, None] + jnp.asarray(offsets(w, size))[None]
    return flat[idx].reshape(centres.shape[0], size * size * c)


def _unit(x: jax.Array) -> jax.Array:
    return x / jnp.sqrt(jnp.sum(jnp.square(x), axis=-1, keepdims=True) + EPS)


def patch_errors(
    features: jax.Array, targets: jax.Array, centres: jax.Array, size: int = 3,
    centre_groups: jax.Array | None = None, target_groups: jax.Array | None = None,
    distance: jax.Array | bool = False,
) -> jax.Array:
    """(M,) ‖Ψ_m(x) − Ψ_NN(m)‖² / (size²·C) of each free patch (see module doc and
    :func:`patch_loss`). With ``distance`` the match is the nearest target in squared
    distance instead of the most correlated one."""
    f = features.astype(jnp.promote_types(features.dtype, jnp.float32))
    t = targets.astype(f.dtype)
    q = gather(f, centres, size)
    qs = jax.lax.stop_gradient(q)
    # −‖q − t‖² up to the row's own ‖q‖², which does not change its argmax
    nearest = 2.0 * (qs @ t.T) - jnp.sum(jnp.square(t), axis=1)[None, :]
    score = jnp.where(distance, nearest, _unit(qs) @ _unit(t).T)
    if centre_groups is not None:
        score = jnp.where(centre_groups[:, None] == target_groups[None, :], score, -jnp.inf)
    nn = jnp.argmax(score, axis=1)
    return jnp.mean(jnp.square(q - t[nn]), axis=1)


def patch_loss(
    features: jax.Array, targets: jax.Array, centres: jax.Array, weights: jax.Array, size: int = 3,
    centre_groups: jax.Array | None = None, target_groups: jax.Array | None = None,
    distance: jax.Array | bool = False,
) -> jax.Array:
    """The MRF term of one image at one layer (see module doc).

    features: (H, W, C); targets: (K, size²·C) raw target patches; centres: (M,) int flat
    positions of the free patches; weights: (M,) ≥ 0. With ``centre_groups`` (M,) and
    ``target_groups`` (K,) (ints), a patch is matched only within its own group (each hole
    only to patches around itself). ``distance``: see :func:`patch_errors`.
    """
    err = patch_errors(features, targets, centres, size, centre_groups, target_groups, distance)
    w = weights.astype(err.dtype)
    return jnp.sum(w * err) / jnp.maximum(jnp.sum(w), EPS)


MAX_GROUPS = 8


def layer_loss(features: jax.Array, p: Patches) -> jax.Array:
    """``p.scale`` · the weighted mean of each free patch's error (:func:`patch_errors`,
    3×3 patches) ÷ its group's detail energy (the variance within a target patch, per
    channel, averaged over the group's targets), the targets gathered from ``features``
    themselves (constants for the gradient, like the match). Groups are < ``MAX_GROUPS``.

    Deviation: the division makes the term an error relative to the detail around each
    hole, so one weight serves every layer (their feature sizes differ by orders of
    magnitude) and every hole: the smoother a hole's surroundings, the harder the pull
    (a hole in the sky keeps no noise).
    """
    f = features.astype(jnp.promote_types(features.dtype, jnp.float32))
    targets = jax.lax.stop_gradient(gather(f, p.sources, 3))
    detail = jnp.mean(jnp.var(targets.reshape(targets.shape[0], 9, f.shape[-1]), axis=1), axis=1)
    total = jax.ops.segment_sum(detail, p.target_groups, MAX_GROUPS)
    count = jax.ops.segment_sum(jnp.ones_like(detail), p.target_groups, MAX_GROUPS)
    # floored at 1 % of the whole image's, so a flat neighbourhood (a clipped sky) cannot
    # make the term unbounded
    energy = jnp.maximum(total / jnp.maximum(count, 1.0), 0.01 * jnp.mean(detail))
    err = patch_errors(f, targets, p.centres, 3, p.centre_groups, p.target_groups, p.distance)
    err = err / (energy[p.centre_groups] + EPS)
    w = p.weights.astype(err.dtype)
    return p.scale * jnp.sum(w * err) / jnp.maximum(jnp.sum(w), EPS)


# ----------------------------------------------------------------------- host side


def valid_centres(h: int, w: int, size: int) -> np.ndarray:
    """(h, w) bool: positions where a whole size×size patch fits."""
    r = size // 2
    ok = np.zeros((h, w), bool)
    ok[r:h - r, r:w - r] = True
    return ok


def patch_centres(hole_share: np.ndarray, size: int = 3, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(centres, weights): the flat positions whose patch touches the hole at a layer, and
    each one's weight (the largest hole share under its patch). ``hole_share`` is the hole
    mask pooled to the layer (h, w) in [0, 1]. ``limit`` keeps that many, evenly spaced."""
    h, w = hole_share.shape
    r = size // 2
    pad = np.pad(hole_share, r)
    touched = np.max([pad[i:i + h, j:j + w] for i in range(size) for j in range(size)], axis=0)
    sel = (touched > 0) & valid_centres(h, w, size)
    centres = np.flatnonzero(sel).astype(np.int32)
    weights = touched.reshape(-1)[centres].astype(np.float32)
    if limit is not None and len(centres) > limit:
        keep = np.linspace(0, len(centres) - 1, limit).round().astype(int)
        centres, weights = centres[keep], weights[keep]
    return centres, weights


def source_centres(known_share: np.ndarray, ring: np.ndarray, size: int = 3, limit: int = 1024) -> np.ndarray:
    """Flat positions in the ``ring`` (h, w bool) whose whole size×size patch is known
    (``known_share`` = 1), at most ``limit``, evenly spaced."""
    h, w = known_share.shape
    r = size // 2
    full = known_share >= 1 - 1e-6
    pad = np.pad(full, r)
    all_known = np.min([pad[i:i + h, j:j + w] for i in range(size) for j in range(size)], axis=0)
    sel = np.flatnonzero(ring & all_known & valid_centres(h, w, size)).astype(np.int32)
    if len(sel) > limit:
        sel = sel[np.linspace(0, len(sel) - 1, limit).round().astype(int)]
    return sel


def target_patches(features: np.ndarray, known_share: np.ndarray, ring: np.ndarray, size: int = 3,
                   limit: int = 1024) -> np.ndarray:
    """(K, size²·C) patches of ``features`` (h, w, C) centred in the ``ring`` (h, w bool)
    whose every cell is wholly known (``known_share`` = 1), at most ``limit`` of them, evenly
    spaced. Empty (0, size²·C) when there are none."""
    h, w, c = features.shape
    r = size // 2
    full = known_share >= 1 - 1e-6
    pad = np.pad(full, r)
    all_known = np.min([pad[i:i + h, j:j + w] for i in range(size) for j in range(size)], axis=0)
    sel = np.flatnonzero(ring & all_known & valid_centres(h, w, size))
    if len(sel) > limit:
        sel = sel[np.linspace(0, len(sel) - 1, limit).round().astype(int)]
    flat = np.asarray(features, np.float32).reshape(h * w, c)
    idx = sel[:, None] + offsets(w, size)[None]
    return flat[idx].reshape(len(sel), size * size * c)
