"""The jit boundaries: one compiled function per kind of work, each keyed by the recipe.

- ``features`` / ``style_statistics`` / ``finish_style``: targets (network forward, the
  style statistics, blending and what a loss derives from them, e.g. W2's square root);
- ``init_states``: fresh optimiser states for a batch of starting images;
- ``chunk``: n optimisation steps for a batch of B ≥ 1 images, vmapped, optionally split
  over a mesh (shard_map), the state donated;
- ``carry_image`` / ``carry_state``: one scale's result and state moved to the next;
- ``finals``: the images to write, RGB in [0, 1].

The :class:`~jaxstyle.config.Recipe` is the only static argument besides shapes of the
program itself (the network's graph, the step count of a chunk, which targets are shared,
the sharding); run settings never reach here, so another ``--steps`` or ``--seed`` reuses
every compiled program. Each is kept on disk whole where JAX's persistent cache is on
(:mod:`jaxstyle.engine.executables`), so a second run neither traces nor compiles it.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from flax import nnx

from jaxstyle.config import Recipe
from jaxstyle.engine.executables import Kept, kept
from jaxstyle.engine.resample import resize
from jaxstyle.model import pixels, vgg
from jaxstyle.objective import style
from jaxstyle.objective.terms import Targets
from jaxstyle.optim import optimizers
from jaxstyle.optim.step import StepState, init_state, result_image, step

BATCH_AXIS = "batch"


def _network_features(graphdef, params, image, layers, recipe: Recipe):
    network = nnx.merge(graphdef, params)
    return network(image, layers, pixel_space=recipe.pixel_space, pooling=recipe.pooling,
                   padding=recipe.padding, avg_pool_scale=recipe.avg_pool_scale)


@kept(static_argnums=(0, 1, 2))
def features(graphdef, recipe: Recipe, layers: tuple[str, ...], params, image):
    """{layer: h×w×c} of one image in the recipe's pixel space."""
    return _network_features(graphdef, params, image, layers, recipe)


@kept(static_argnums=(0, 1))
def style_statistics(graphdef, recipe: Recipe, params, image):
    """{layer: statistics} of one style image (pixel space), before blending."""
    feats = _network_features(graphdef, params, image, recipe.style_layers, recipe)
    return {name: style.statistics(feats[name], recipe) for name in recipe.style_layers}


@kept()
def blend_style(per_style, weights):
    """Statistics of each style (a list), blended by ``weights`` (normalised to sum 1). Its own
    program, so that what the loss derives from the blend (:func:`finish_style`) sees the
    same numbers for a style alone and for that style blended with weight 0 (fused into one
    program, XLA would contract the blend's products into the next operations)."""
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *per_style)
    w = weights / jnp.sum(weights)
    return jax.tree.map(lambda a: jnp.tensordot(w.astype(a.dtype), a, axes=1), stacked)


@kept(static_argnums=(0,))
def finish_style(recipe: Recipe, stats):
    """What the recipe's style loss derives from target statistics, once (W2: Σ_s and Σ_s^½)."""
    finish = style.kind(recipe).finish
    return {name: finish(v) for name, v in stats.items()}


@kept(static_argnums=(0, 1))
def init_states(recipe: Recipe, sharding, images):
    state = jax.vmap(lambda x: init_state(x, recipe))(images)
    # Without the constraint the optimiser's zero-initialised history would be replicated.
    return state if sharding is None else jax.lax.with_sharding_constraint(state, sharding)


@kept()
def grad_kernels(kernels):
    """{conv name: the kernel of its input gradient} (``vgg.grad_kernel``), made once per
    network and passed to :data:`chunk`, so no chunk call rebuilds them."""
    return {name: vgg.grad_kernel(k) for name, k in kernels.items()}


def _steps(graphdef, recipe: Recipe, n: int, unroll: bool, shared: tuple[str, ...], params, targets: Targets, state,
           kernels_t=None):
    with vgg.grad_kernels(kernels_t):
        return _traced_steps(graphdef, recipe, n, unroll, shared, params, targets, state)


def _traced_steps(graphdef, recipe: Recipe, n: int, unroll: bool, shared: tuple[str, ...], params, targets: Targets,
                  state):
    b = state.image.shape[0]
    # Targets every image shares are held once and broadcast here, inside the program: XLA
    # fuses the broadcast into the loss, so they are never materialised B times.
    targets = targets._replace(**{
        k: jax.tree.map(lambda a: jnp.broadcast_to(a, (b, *a.shape)), getattr(targets, k)) for k in shared
    })
    network = nnx.merge(graphdef, params)
    batched = jax.vmap(lambda st, tg: step(st, tg, network, recipe))
    if unroll:
        # Straight-line steps: XLA:CPU runs a rolled loop body several times slower.
        history = []
        for _ in range(n):
            state, terms = batched(state, targets)
            history.append(terms)
        return state, jax.tree.map(lambda *xs: jnp.stack(xs), *history)
    return jax.lax.scan(lambda st, _: batched(st, targets), state, None, length=n)


def _chunk(graphdef, recipe: Recipe, n: int, unroll: bool, shared, sharding, params, targets: Targets, state,
           kernels_t=None):
    """``kernels_t``: :func:`grad_kernels` of the network's current kernels (None: the
    program makes them itself, in every call)."""
    local = functools.partial(_steps, graphdef, recipe, n, unroll, shared)
    if sharding is None:
        return local(params, targets, state, kernels_t)
    # shard_map, not the automatic partitioner: each device runs exactly the program one
    # device runs for its images, with no partitioning choice in between (tested: the same
    # numbers as one device of the same runtime, bit for bit).
    spec = jax.sharding.PartitionSpec
    batch, whole = spec(BATCH_AXIS), spec()
    target_specs = Targets(*(whole if k in shared else batch for k in Targets._fields))
    return jax.shard_map(local, mesh=sharding.mesh, in_specs=(whole, target_specs, batch, whole),
                         out_specs=(batch, spec(None, BATCH_AXIS)), check_vma=False)(params, targets, state, kernels_t)


# The state is donated: the optimiser's history is the largest buffer, and the caller never
# reads the old state again.
chunk = Kept(_chunk, (0, 1, 2, 3, 4, 5), donate_argnums=(8,))


@kept(static_argnums=(0, 1, 2, 3))
def carry_image(recipe: Recipe, height: int, width: int, wrap: bool, state: StepState):
    """The result (the EMA when the recipe averages) at the next scale's size: resized
    bicubically and clamped to the pixel box."""
    images = jax.vmap(lambda s: result_image(s, recipe))(state)
    lo, hi = pixels.bounds(recipe.pixel_space)
    return jnp.clip(resize(images, height, width, "bicubic", wrap), lo, hi)


@kept(static_argnums=(0, 1))
def carry_state(recipe: Recipe, wrap: bool, state: StepState, init):
    """A fresh state at ``init`` (the next scale's start) that keeps what the optimiser
    carries across scales (Adam's moments, resized)."""
    height, width = init.shape[1:3]
    fresh = jax.vmap(lambda x: init_state(x, recipe))(init)
    carried = optimizers.kind(recipe).carry(state.opt_state, fresh.opt_state,
                                         lambda x, kind: resize(x, height, width, kind, wrap))
    return fresh._replace(opt_state=carried)


@kept(static_argnums=(0,))
def finals(recipe: Recipe, state: StepState):
    """(B, H, W, 3) RGB in [0, 1] of the state's result images."""
    images = jax.vmap(lambda s: result_image(s, recipe))(state)
    return jnp.clip(pixels.to_rgb01(images, recipe.pixel_space), 0.0, 1.0)


__all__ = ["BATCH_AXIS", "carry_image", "carry_state", "chunk", "blend_style", "features", "finals", "finish_style",
           "grad_kernels", "init_states", "style_statistics"]
