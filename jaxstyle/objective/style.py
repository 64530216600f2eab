"""Style losses as small objects, chosen once from the recipe (:func:`kind`).

Each kind knows its statistics of one layer's features (plain, or weighted by a region
mask), what it derives from a style's statistics once outside the step (``finish``), and
its loss. ``gram``: Gram matrices compared by mean squared difference (Gatys et al.);
``w2``: crowsonkb's Wasserstein-2 distance between Gaussians (:mod:`.wasserstein`).
Statistics are linear in the per-position outer products, so blends of styles are
weighted sums of them (:func:`blend`).
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp

from jaxstyle.config import STYLE_LOSSES, Recipe
from jaxstyle.objective import losses, wasserstein


def _acc(f: jax.Array) -> jax.Array:
    return f.astype(jnp.promote_types(f.dtype, jnp.float32))


class Gram:
    name = "gram"

    def statistics(self, features: jax.Array, recipe: Recipe) -> dict[str, jax.Array]:
        return {"gram": losses.gram(features, recipe.gram_norm)}

    def weighted_statistics(self, f: jax.Array, weights: jax.Array, recipe: Recipe) -> dict[str, jax.Array]:
        """Statistics of N×C features ``f`` with position weights summing to 1."""
        second = (f * weights[:, None]).T @ f
        return {"gram": second / (f.shape[1] if recipe.gram_norm == "chw" else 1)}

    def finish(self, stats: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
        return dict(stats)

    def loss(self, features: jax.Array, target: Mapping[str, jax.Array], recipe: Recipe) -> jax.Array:
        return losses.gram_style_loss(features, target["gram"], recipe.gram_norm)

    def statistics_loss(self, stats: Mapping[str, jax.Array], target: Mapping[str, jax.Array]) -> jax.Array:
        return jnp.mean(jnp.square(stats["gram"] - target["gram"]))


class W2:
    name = "w2"

    def statistics(self, features: jax.Array, recipe: Recipe) -> dict[str, jax.Array]:
        return wasserstein.moments(features)

    def weighted_statistics(self, f: jax.Array, weights: jax.Array, recipe: Recipe) -> dict[str, jax.Array]:
        return {"mean": weights @ f, "raw2": (f * weights[:, None]).T @ f}

    def finish(self, stats: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
        # The style's covariance and its square root, once, outside the step.
        return wasserstein.prepare_target(stats)

    def loss(self, features: jax.Array, target: Mapping[str, jax.Array], recipe: Recipe) -> jax.Array:
        return wasserstein.w2_loss(features, target)

    def statistics_loss(self, stats: Mapping[str, jax.Array], target: Mapping[str, jax.Array]) -> jax.Array:
        return wasserstein.w2_from_moments(stats["mean"], stats["raw2"], target)


KINDS = {k.name: k for k in (Gram(), W2())}
assert tuple(KINDS) == STYLE_LOSSES, "config.STYLE_LOSSES names the kinds defined here"


def kind(recipe: Recipe) -> Gram | W2:
    return KINDS[recipe.style_loss]


def statistics(features: jax.Array, recipe: Recipe) -> dict[str, jax.Array]:
    """Target statistics of one style image at one layer (H×W×C features)."""
    return kind(recipe).statistics(features, recipe)


def guided_statistics(features: jax.Array, mask: jax.Array, recipe: Recipe) -> dict[str, jax.Array]:
    """A region's statistics of H×W×C ``features`` under an H×W ``mask`` (:mod:`.guided`)."""
    h, w, c = features.shape
    f = _acc(features.reshape(h * w, c))
    m = mask.reshape(h * w).astype(f.dtype)
    # An empty region gives zeros, not NaN; its share a_r = 0 then removes it from the loss.
    weights = m / jnp.maximum(jnp.sum(m), jnp.finfo(f.dtype).tiny)
    return kind(recipe).weighted_statistics(f, weights, recipe)


__all__ = ["Gram", "KINDS", "W2", "guided_statistics", "kind", "statistics"]
