"""One pure optimisation step for one image; no jit here (:mod:`jaxstyle.engine` jits it).

The image (in the recipe's pixel space) is the only thing optimised, so this is plain Optax
over one array, not ``nnx.Optimizer``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxstyle.config import Recipe
from jaxstyle.model import pixels
from jaxstyle.model.vgg import VGG
from jaxstyle.objective.terms import Targets, loss_terms, total
from jaxstyle.optim import optimizers


class StepState(NamedTuple):
    image: jax.Array  # H×W×3 in the recipe's pixel space
    opt_state: Any
    ema_biased: jax.Array  # un-normalised EMA of the iterates (zeros when unused)
    ema_accum: jax.Array  # decay^k, for the bias correction


def init_state(image: jax.Array, recipe: Recipe) -> StepState:
    zeros = jnp.zeros_like(image)
    ema = image * (1 - recipe.ema_decay) if recipe.ema_decay is not None else zeros
    # In the image's precision: a float32 decay^k alone limits a float64 run to ~1e-6.
    accum = jnp.asarray(recipe.ema_decay if recipe.ema_decay is not None else 1.0,
                        jnp.promote_types(image.dtype, jnp.float32))
    return StepState(image, optimizers.kind(recipe).make(recipe).init(image), ema, accum)


def step(state: StepState, targets: Targets, network: VGG, recipe: Recipe) -> tuple[StepState, dict]:
    """One evaluation and one update. The returned terms are those of the image *before*
    the update, as the reference programs print them."""

    def objective(x):
        terms = loss_terms(x, targets, network, recipe)
        return total(terms), terms

    (value, terms), grad = jax.value_and_grad(objective, has_aux=True)(state.image)
    method = optimizers.kind(recipe)
    updates, opt_state = method.update(method.make(recipe), grad, state.opt_state, state.image, value,
                                       lambda x: objective(x)[0])
    image = optax.apply_updates(state.image, updates)
    if recipe.clamp:
        lo, hi = pixels.bounds(recipe.pixel_space)
        image = jnp.clip(image, lo, hi)
    ema, accum = state.ema_biased, state.ema_accum
    if recipe.ema_decay is not None:
        ema = recipe.ema_decay * ema + (1 - recipe.ema_decay) * image
        accum = accum * recipe.ema_decay
    terms = dict(terms, total=value)
    return StepState(image, opt_state, ema, accum), terms


def result_image(state: StepState, recipe: Recipe) -> jax.Array:
    """The image to write: the bias-corrected EMA when the recipe averages iterates."""
    if recipe.ema_decay is None:
        return state.image
    return state.ema_biased / (1 - state.ema_accum)


__all__ = ["StepState", "init_state", "result_image", "step"]
