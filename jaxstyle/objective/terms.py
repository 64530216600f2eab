"""The objective of one image: typed targets and the weighted loss terms, pure JAX.

``loss_terms`` is what the compiled step differentiates. Each optional target switches a
term on: ``content`` (feature reconstruction), ``style`` (plain or, with ``masks``, guided
statistics), ``fixed`` (inpainting: only the hole is free), ``patches`` (inpainting: neural patch / MRF
matching at some layers, :mod:`jaxstyle.objective.patches`), ``chroma`` (textures: smooth
colour, :mod:`jaxstyle.objective.chroma`), ``temporal`` (video: stay
close to the warped previous frame where the flow is reliable). TV is on when its weight is.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxstyle.config import Recipe
from jaxstyle.model import pixels
from jaxstyle.model.vgg import VGG
from jaxstyle.objective import guided, losses, style, temporal
from jaxstyle.objective import chroma as chroma_term
from jaxstyle.objective import patches as mrf


class Fixed(NamedTuple):
    """Inpainting: every pixel outside ``hole`` keeps ``image``'s value."""

    image: jax.Array  # H×W×3 in the recipe's pixel space
    hole: jax.Array  # H×W×1, 1 where the pixels are free


class Temporal(NamedTuple):
    """Video (Ruder et al. 2016): the previous output warped onto this frame."""

    warped: jax.Array  # H×W×3 in the recipe's pixel space
    weight: jax.Array  # H×W×1 in [0, 1]: 0 where the flow is unreliable


class Targets(NamedTuple):
    """What the step compares an image with; ``None`` switches a term off."""

    content: dict[str, jax.Array] | None = None  # {layer: h×w×c features}
    style: dict[str, Any] | None = None  # {layer: statistics}; stacked over regions with masks
    masks: dict[str, jax.Array] | None = None  # {layer: (R, h, w)} regions of guided statistics
    fixed: Fixed | None = None
    temporal: Temporal | None = None
    patches: dict[str, mrf.Patches] | None = None  # {layer: MRF target}, weight inside
    chroma: chroma_term.Chroma | None = None  # smooth colour (textures), weight inside


def loss_terms(image: jax.Array, targets: Targets, network: VGG, recipe: Recipe) -> dict[str, jax.Array]:
    """Weighted loss terms for one image: ``content``, ``style:<layer>`` each, ``tv``, ``temporal``,
    ``patch:<layer>`` each, ``chroma``."""
    dtype = jnp.bfloat16 if recipe.precision == "bf16" else None
    if targets.fixed is not None:
        # Only the hole is free: the network (and TV) see the input's own pixels around it,
        # so the fill has to join them.
        image = targets.fixed.image + targets.fixed.hole * (image - targets.fixed.image)
    layers = recipe.all_layers
    if targets.patches is not None:
        layers = tuple(dict.fromkeys(layers + tuple(k for k in targets.patches if k != "pixels")))
    feats = network(
        image,
        layers,
        pixel_space=recipe.pixel_space,
        pooling=recipe.pooling,
        padding=recipe.padding,
        avg_pool_scale=recipe.avg_pool_scale,
        dtype=dtype,
        remat=recipe.remat == "blocks",
    )
    terms: dict[str, jax.Array] = {}
    if targets.content is not None and recipe.content_layers:
        terms["content"] = recipe.content_weight * sum(
            losses.content_loss(feats[name], targets.content[name]) for name in recipe.content_layers
        )
    loss_kind = style.kind(recipe)
    for name, w in zip(recipe.style_layers, recipe.layer_weights):
        target = targets.style[name]
        if targets.masks is None:
            value = loss_kind.loss(feats[name], target, recipe)
        else:
            value = guided.guided_layer_loss(feats[name], target, targets.masks[name], recipe)
        terms[f"style:{name}"] = recipe.style_weight * w * value
    if recipe.tv_weight:
        # A tileable texture's smoothness term wraps around like its convolutions.
        terms["tv"] = recipe.tv_weight * losses.TV_LOSSES[recipe.tv_loss](image, wrap=recipe.padding == "circular")
    if targets.temporal is not None and recipe.temporal_weight:
        terms["temporal"] = recipe.temporal_weight * temporal.temporal_loss(
            image, targets.temporal.warped, targets.temporal.weight
        )
    if targets.patches is not None:
        for name, target in targets.patches.items():
            # "pixels": the image itself (the fine detail no VGG layer holds on to)
            terms[f"patch:{name}"] = mrf.layer_loss(image if name == "pixels" else feats[name], target)
    if targets.chroma is not None:
        rgb01 = pixels.to_rgb01(image, recipe.pixel_space)
        terms["chroma"] = targets.chroma.weight * chroma_term.chroma_loss(
            rgb01, targets.chroma.mask, wrap=recipe.padding == "circular")
    return terms


def total(terms: dict[str, jax.Array]) -> jax.Array:
    # Summed in insertion order (content, style layers, tv), as neural-style-pt does.
    out = jnp.zeros((), jnp.float32)
    for value in terms.values():
        out = out + value
    return out


__all__ = ["Fixed", "Targets", "Temporal", "loss_terms", "total"]
