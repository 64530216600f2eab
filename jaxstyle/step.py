"""The optimiser and one pure optimisation step, for one image; no jit here.

The image (in the recipe's pixel space) is the only thing optimised, so this is plain Optax
over one array, not ``nnx.Optimizer``. ``stylize.py`` vmaps and jits it.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxstyle import losses, masks, pixels
from jaxstyle.config import Config
from jaxstyle.lbfgs import torch_lbfgs
from jaxstyle.vgg import VGG


class StepState(NamedTuple):
    image: jax.Array  # H×W×3 in cfg.pixel_space
    opt_state: Any
    ema_biased: jax.Array  # un-normalised EMA of the iterates (zeros when unused)
    ema_accum: jax.Array  # decay^k, for the bias correction


def make_optimizer(cfg: Config):
    lr = cfg.learning_rate
    if cfg.optimizer == "adam":
        return optax.adam(lr, b1=cfg.adam_b1, b2=cfg.adam_b2, eps=cfg.adam_eps)
    if cfg.optimizer == "lbfgs-zoom":
        # optax's own L-BFGS with its zoom line search: more evaluations per step, but
        # monotone. Under vmap its cond/while turn into selects, so prefer it for one image.
        return optax.lbfgs(memory_size=cfg.lbfgs_history)
    return torch_lbfgs(lr, cfg.lbfgs_history, cfg.lbfgs_tolerance_grad, cfg.lbfgs_tolerance_change)


def loss_terms(image: jax.Array, targets: dict, network: VGG, cfg: Config) -> dict[str, jax.Array]:
    """Weighted loss terms for one image: ``content``, ``style:<layer>`` each, ``tv``.

    Optional targets: ``"masks"`` ({layer: (R, h, w)}) makes the style terms guided, one
    region per mask with ``targets["style"]`` stacked over R (:mod:`jaxstyle.masks`);
    ``"fixed"`` ({"image": H×W×3, "hole": H×W×1}) keeps every pixel outside the hole at the
    given image's value (inpainting).
    """
    dtype = jnp.bfloat16 if cfg.precision == "bf16" else None
    fixed = targets.get("fixed")
    if fixed is not None:
        # Only the hole is free: the network (and TV) see the input's own pixels around it,
        # so the fill has to join them.
        image = fixed["image"] + fixed["hole"] * (image - fixed["image"])
    feats = network(
        image,
        cfg.all_layers,
        pixel_space=cfg.pixel_space,
        pooling=cfg.pooling,
        padding=cfg.padding,
        avg_pool_scale=cfg.avg_pool_scale,
        dtype=dtype,
        remat=cfg.remat == "blocks",
    )
    terms: dict[str, jax.Array] = {}
    content = targets.get("content")
    if content is not None and cfg.content_layers:
        terms["content"] = cfg.content_weight * sum(
            losses.content_loss(feats[name], content[name]) for name in cfg.content_layers
        )
    guides = targets.get("masks")
    for name, w in zip(cfg.style_layers, cfg.layer_weights):
        if guides is None:
            value = losses.style_layer_loss(feats[name], targets["style"][name], cfg.style_loss, cfg.gram_norm)
        else:
            value = masks.guided_layer_loss(
                feats[name], targets["style"][name], guides[name], cfg.style_loss, cfg.gram_norm
            )
        terms[f"style:{name}"] = cfg.style_weight * w * value
    if cfg.tv_weight:
        # A tileable texture's smoothness term wraps around like its convolutions.
        terms["tv"] = cfg.tv_weight * losses.TV_LOSSES[cfg.tv_loss](image, wrap=cfg.padding == "circular")
    return terms


def total(terms: dict[str, jax.Array]) -> jax.Array:
    # Summed in insertion order (content, style layers, tv), as neural-style-pt does.
    out = jnp.zeros((), jnp.float32)
    for value in terms.values():
        out = out + value
    return out


def init_state(image: jax.Array, cfg: Config) -> StepState:
    zeros = jnp.zeros_like(image)
    ema = image * (1 - cfg.ema_decay) if cfg.ema_decay is not None else zeros
    # In the image's precision: a float32 decay^k alone limits a float64 run to ~1e-6.
    accum = jnp.asarray(cfg.ema_decay if cfg.ema_decay is not None else 1.0, jnp.promote_types(image.dtype, jnp.float32))
    return StepState(image, make_optimizer(cfg).init(image), ema, accum)


def step(state: StepState, targets: dict, network: VGG, cfg: Config) -> tuple[StepState, dict]:
    """One evaluation and one update. The returned terms are those of the image *before*
    the update, as the reference programs print them."""

    def objective(x):
        terms = loss_terms(x, targets, network, cfg)
        return total(terms), terms

    (value, terms), grad = jax.value_and_grad(objective, has_aux=True)(state.image)
    opt = make_optimizer(cfg)
    if cfg.optimizer == "lbfgs-zoom":
        updates, opt_state = opt.update(
            grad, state.opt_state, state.image, value=value, grad=grad, value_fn=lambda x: objective(x)[0]
        )
    else:
        updates, opt_state = opt.update(grad, state.opt_state, state.image)
    image = optax.apply_updates(state.image, updates)
    if cfg.clamp:
        lo, hi = pixels.bounds(cfg.pixel_space)
        image = jnp.clip(image, lo, hi)
    ema, accum = state.ema_biased, state.ema_accum
    if cfg.ema_decay is not None:
        ema = cfg.ema_decay * ema + (1 - cfg.ema_decay) * image
        accum = accum * cfg.ema_decay
    terms = dict(terms, total=value)
    return StepState(image, opt_state, ema, accum), terms


def result_image(state: StepState, cfg: Config) -> jax.Array:
    """The image to write: the bias-corrected EMA when the recipe averages iterates."""
    if cfg.ema_decay is None:
        return state.image
    return state.ema_biased / (1 - state.ema_accum)
