"""Optimisers as small objects, chosen once from the recipe (:func:`kind`).

Each builds its Optax transform from the recipe, applies one update, and says how its
state crosses to the next scale of a coarse-to-fine run.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import optax

from jaxstyle.config import OPTIMIZERS, Recipe
from jaxstyle.optim.lbfgs import torch_lbfgs

# resize(x, kind) -> x at the next scale; kind is "bicubic" or "bilinear".
Resize = Callable[[jax.Array, str], jax.Array]


class Adam:
    name = "adam"
    batch_limit = None  # vmaps freely

    def make(self, recipe: Recipe) -> optax.GradientTransformation:
        return optax.adam(recipe.learning_rate, b1=recipe.adam_b1, b2=recipe.adam_b2, eps=recipe.adam_eps)

    def update(self, opt, grad, opt_state, image, value, value_fn):
        return opt.update(grad, opt_state, image)

    def carry(self, previous, fresh, resize: Resize):
        """crowsonkb's ``scale_adam``: the moments follow the image to the next scale (m
        bicubic, v bilinear and clipped at 0) and the step count carries on, so Adam does not
        restart."""

        def fix(node):
            if isinstance(node, optax.ScaleByAdamState):
                return node._replace(mu=resize(node.mu, "bicubic"), nu=jax.nn.relu(resize(node.nu, "bilinear")))
            return node

        return jax.tree.map(fix, previous, is_leaf=lambda n: isinstance(n, optax.ScaleByAdamState))


class TorchLBFGS:
    """torch.optim.LBFGS without line search (neural-style-pt, pystiche): :mod:`.lbfgs`."""

    name = "lbfgs"
    batch_limit = None

    def make(self, recipe: Recipe) -> optax.GradientTransformation:
        return torch_lbfgs(recipe.learning_rate, recipe.lbfgs_history, recipe.lbfgs_tolerance_grad,
                           recipe.lbfgs_tolerance_change, recipe.lbfgs_precondition)

    def update(self, opt, grad, opt_state, image, value, value_fn):
        return opt.update(grad, opt_state, image)

    def carry(self, previous, fresh, resize: Resize):
        return fresh  # curvature pairs of another resolution do not apply: start afresh


class ZoomLBFGS(TorchLBFGS):
    """optax's own L-BFGS with its zoom line search: more evaluations per step, but monotone.
    Under vmap its while loops and conds turn into selects (DESIGN.md), so batches hold one."""

    name = "lbfgs-zoom"
    batch_limit = 1

    def make(self, recipe: Recipe) -> optax.GradientTransformation:
        return optax.lbfgs(memory_size=recipe.lbfgs_history)

    def update(self, opt, grad, opt_state, image, value, value_fn):
        return opt.update(grad, opt_state, image, value=value, grad=grad, value_fn=value_fn)


KINDS = {k.name: k for k in (TorchLBFGS(), Adam(), ZoomLBFGS())}
assert tuple(KINDS) == OPTIMIZERS, "config.OPTIMIZERS names the optimisers defined here"


def kind(recipe: Recipe) -> Adam | TorchLBFGS | ZoomLBFGS:
    return KINDS[recipe.optimizer]


__all__ = ["Adam", "KINDS", "TorchLBFGS", "ZoomLBFGS", "kind"]
