"""Targets and problems: what one compiled run needs on device, with a leading batch axis.

A :class:`Problem` is B ≥ 1 images solved together (a single image is a batch of one): the
recipe, the network, the :class:`~jaxstyle.objective.terms.Targets` and the starting
pixels. A target that every image shares (one content with many styles, one style for many
contents, any target of a single image) is held once, without the batch axis, and named in
``Problem.shared``; the compiled chunk broadcasts it.

Content features and style statistics are computed once per unique image (a blend: once
per set of styles) and can be kept across problems in any mapping (``cache``).
"""

from __future__ import annotations

from collections.abc import MutableMapping, Sequence
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxstyle.config import Recipe
from jaxstyle.engine import compiled
from jaxstyle.model import pixels
from jaxstyle.model.vgg import VGG
from jaxstyle.objective.terms import Fixed, Targets, Temporal

__all__ = ["Fixed", "Problem", "Targets", "Temporal", "batch_problem", "content_targets", "features",
           "style_targets"]


@dataclass
class Problem:
    recipe: Recipe
    network: VGG
    targets: Targets
    init: jax.Array  # (B, H, W, 3) in the recipe's pixel space
    shared: tuple[str, ...] = ()  # Targets fields held once for the whole batch

    @property
    def batch(self) -> int:
        return int(self.init.shape[0])


def features(network: VGG, image_rgb01, layers: Sequence[str], recipe: Recipe) -> dict:
    """The network's features of one RGB [0,1] image at ``layers``, as the step sees them."""
    graphdef, params = nnx.split(network)
    x = _on_device(pixels.from_rgb01(_host(image_rgb01), recipe.pixel_space))
    return compiled.features(graphdef, recipe, tuple(layers), params, x)


def content_targets(network: VGG, content_rgb01, recipe: Recipe) -> dict:
    return features(network, content_rgb01, recipe.content_layers, recipe)


def style_targets(network: VGG, styles_rgb01: Sequence, recipe: Recipe,
                  blend_weights: Sequence[float] | None = None, *, blend: bool = True) -> dict:
    """Per-layer statistics of the style images (each at its own size), blended by
    ``blend_weights`` (default equal; normalised). ``blend=False``: one set per style,
    stacked on a leading axis (guided regions)."""
    graphdef, params = nnx.split(network)
    # Host arrays go in by device_put, and the stacking happens inside blend_style: an eager
    # jnp.asarray or jnp.stack is a small program of its own to trace and look up at start-up.
    per_style = [compiled.style_statistics(graphdef, recipe, params,
                                           _on_device(pixels.from_rgb01(_host(s), recipe.pixel_space)))
                 for s in styles_rgb01]
    if not blend:
        return compiled.finish_style(recipe, _stack(per_style))
    weights = np.asarray(blend_weights if blend_weights is not None else (1.0,) * len(per_style), np.float32)
    return compiled.finish_style(recipe, compiled.blend_style(per_style, weights))


def _host(a):
    return a if isinstance(a, jax.Array) else pixels.host(a)


def _on_device(a):
    return a if isinstance(a, jax.Array) else jax.device_put(a)


def _stack(trees: Sequence) -> dict:
    return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def _target_key(kind: str, key, shape, recipe: Recipe, extra=()) -> tuple:
    # Everything besides the image that changes its features or statistics.
    common = (kind, key, shape, recipe.model, recipe.pixel_space, recipe.pooling, recipe.padding, recipe.avg_pool_scale)
    if kind == "content":
        return common + (recipe.content_layers,)
    return common + (recipe.style_layers, recipe.style_loss, recipe.gram_norm) + tuple(extra)


def batch_problem(
    network: VGG,
    recipe: Recipe,
    contents: Sequence[np.ndarray],
    styles_per_image: Sequence[Sequence[np.ndarray]],
    inits,
    *,
    blend_weights: Sequence[float] | None = None,
    keys: tuple[Sequence, Sequence[Sequence]] | None = None,
    cache: MutableMapping | None = None,
    **extra_targets,
) -> Problem:
    """B images as one problem: ``contents[i]`` (float32 RGB [0, 1], all one shape, or
    ``None`` for no content term) with ``styles_per_image[i]`` (several are blended by
    ``blend_weights``), starting from ``inits`` ((B, H, W, 3) in the recipe's pixel space).

    Images are the same when their ``keys`` are equal (``(content_keys, style_keys_per_image)``;
    default: the same array object). ``extra_targets`` (``masks``, ``fixed``, ``temporal``)
    are given already batched, or held once when passed as ``shared_<name>``.
    """
    contents = list(contents)
    if keys is None:
        keys = ([id(c) for c in contents], [[id(s) for s in ss] for ss in styles_per_image])
    content_keys = list(keys[0])
    style_keys = [tuple(k) for k in keys[1]]
    cache = {} if cache is None else cache
    guided = "masks" in extra_targets or "shared_masks" in extra_targets

    def cached(kind, key, shape, compute, extra=()):
        ck = _target_key(kind, key, shape, recipe, extra)
        value = cache.get(ck)
        if value is None:
            value = compute()
            cache[ck] = value
        return value

    fields, shared = {}, []
    blended = {}
    bw = None if blend_weights is None else tuple(float(w) for w in blend_weights)
    for styles, ks in zip(styles_per_image, style_keys):
        if ks not in blended:
            shape = tuple(tuple(s.shape) for s in styles)
            blended[ks] = cached("style", ks, shape, lambda styles=styles: style_targets(
                network, styles, recipe, bw, blend=not guided), extra=(bw, guided))
    if len(blended) == 1:
        fields["style"], shared = next(iter(blended.values())), ["style"]
    else:
        fields["style"] = _stack([blended[k] for k in style_keys])
    if recipe.uses_content and contents and contents[0] is not None:
        feats = {}
        for c, k in zip(contents, content_keys):
            if k not in feats:
                feats[k] = cached("content", k, c.shape, lambda c=c: content_targets(network, c, recipe))
        if len(feats) == 1:
            fields["content"] = next(iter(feats.values()))
            shared.append("content")
        else:
            fields["content"] = _stack([feats[k] for k in content_keys])
    for name, value in extra_targets.items():
        if name.startswith("shared_"):
            name = name[len("shared_"):]
            shared.append(name)
        fields[name] = jax.tree.map(jnp.asarray, value)
    return Problem(recipe, network, Targets(**fields), jnp.asarray(inits), tuple(shared))
