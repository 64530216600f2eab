"""The one input-preparation path: originals → the arrays each scale of a run needs.

Used by stylize, batch, texture and inpaint alike. Sizes (see :mod:`jaxstyle.plan.scales`):
with one scale, the content is resized bilinearly to the run's shape and each style to long
side ``round(size × style_scale)``, as the single-image programs do; with several
(``min_scale``), crowsonkb's way: at each scale everything is resized from the original
with PIL bicubic, the style to long side ``round(scale × style_scale)`` but never enlarged.
Colour control (:mod:`jaxstyle.objective.color`) is computed once from the full-size
originals and applied at every scale.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from jaxstyle.config import Config, Recipe
from jaxstyle.engine.scales import Scale
from jaxstyle.errors import UserError
from jaxstyle.io import image as imageio
from jaxstyle.io.masks import load_mask
from jaxstyle.model import pixels
from jaxstyle.model.vgg import min_size
from jaxstyle.objective import color
from jaxstyle.plan import memory

# resized(img_u8, height, width, resample) -> float32 RGB [0, 1]; the batch runner passes a
# caching one.
Resized = Callable[[np.ndarray, int, int, str], np.ndarray]


def _resized(img: np.ndarray, height: int, width: int, resample: str) -> np.ndarray:
    return imageio.to_float(imageio.resize_to(img, height, width, resample=resample))


def as_uint8(x, what: str) -> np.ndarray:
    """A path or an H×W×3 array (uint8, or float in [0, 1]) → uint8 RGB."""
    if isinstance(x, np.ndarray):
        if x.ndim != 3 or x.shape[-1] != 3:
            raise UserError(f"the {what} array has shape {x.shape}; expected H×W×3")
        return x if x.dtype == np.uint8 else imageio.to_uint8(x)
    return imageio.load_image(x)


def check_size(shape: tuple[int, ...], recipe: Recipe, what: str, layers: Sequence[str] | None = None) -> None:
    """Refuse an image too small for the deepest layer the recipe reads from it."""
    layers = tuple(layers) if layers is not None else (recipe.all_layers if what == "content" else recipe.style_layers)
    need = min_size(layers)
    if min(shape[:2]) < need:
        deepest = max(layers, key=lambda n: min_size([n]))
        raise UserError(
            f"the {what} image is {shape[1]}×{shape[0]} px after resizing, too small for layer "
            f"{deepest}: each side must be >= {need} px; raise --size"
        )


@dataclass
class Originals:
    """A run's decoded inputs, full size, and its colour plan."""

    content: np.ndarray | None  # uint8 H×W×3 (None: texture)
    styles: list[np.ndarray]
    init: np.ndarray | None  # uint8, when --init is an image
    masks: list[np.ndarray] | None  # float32 H×W at the content's shape, one per style
    colours: color.ColorPlan

    @property
    def shape(self) -> tuple[int, int]:
        return self.content.shape[:2]


def read(content, styles: Sequence, cfg: Config, *, masks: Sequence | None = None) -> Originals:
    """Decode and check every input before anything large is allocated."""
    content_u8 = None if content is None else as_uint8(content, "content")
    styles_u8 = [as_uint8(s, "style") for s in styles]
    init = cfg.run.init
    init_u8 = None if init in ("content", "random") else as_uint8(init, "init")
    blend = cfg.run.style_blend_weights
    if masks is not None:
        if blend is not None:
            raise UserError("--style-blend-weights mixes styles everywhere, --mask gives each its own region; use one")
        if len(masks) != len(styles_u8):
            raise UserError(f"{len(masks)} mask(s) for {len(styles_u8)} style image(s); give one --mask per style, in order")
    elif blend is not None and len(blend) != len(styles_u8):
        raise UserError(f"--style-blend-weights has {len(blend)} values for {len(styles_u8)} style images; give one per style")
    masks_full = None
    if masks is not None:
        masks_full = [load_mask(m, content_u8.shape[:2]) for m in masks]
        if not any(np.any(m > 0) for m in masks_full):
            raise UserError("every --mask is black, so no style would apply anywhere; paint the regions white")
    if cfg.run.preserve_color is not None and content_u8 is not None:
        colours = color.plan(cfg.run.preserve_color, imageio.to_float(content_u8),
                             [imageio.to_float(s) for s in styles_u8])
    else:
        colours = color.plan(None, None, styles_u8)
    return Originals(content_u8, styles_u8, init_u8, masks_full, colours)


def style_shape(style_u8: np.ndarray, scale: Scale, cfg: Config) -> tuple[int, int]:
    """(height, width) of a style image at a scale."""
    h, w = style_u8.shape[:2]
    if cfg.run.min_scale:  # crowsonkb: never enlarged
        return imageio.fit_long_side(h, w, round(scale.size * cfg.run.style_scale), rounding="round", enlarge=False)
    return imageio.fit_long_side(h, w, max(1, round(cfg.run.size * cfg.run.style_scale)))


@dataclass
class AtScale:
    """A run's inputs at one scale, float32 RGB [0, 1], after the colour transforms."""

    content: np.ndarray | None
    styles: list[np.ndarray]
    init: np.ndarray | None
    masks: list[np.ndarray] | None
    content_rgb: np.ndarray | None  # the content before any colour transform (for finishing)


def at_scale(originals: Originals, scale: Scale, cfg: Config, *, resized: Resized = _resized,
             check: bool = True) -> AtScale:
    """Everything the scale's problem is built from, checked against the network."""
    how = "bicubic" if cfg.run.min_scale else "bilinear"
    hw = (scale.height, scale.width)
    rgb = None if originals.content is None else resized(originals.content, *hw, how)
    styles = [resized(s, *style_shape(s, scale, cfg), how) for s in originals.styles]
    start = None if originals.init is None else resized(originals.init, *hw, how)
    if check:
        if rgb is not None:
            check_size(rgb.shape, cfg.recipe, "content")
        for s in styles:
            check_size(s.shape, cfg.recipe, "style")
    masks = None if originals.masks is None else [imageio.resize_to(m, *hw) for m in originals.masks]
    c = originals.colours
    return AtScale(
        None if rgb is None else c.content(rgb),
        [t(s) for t, s in zip(c.styles, styles)],
        None if start is None else c.content(start),
        masks,
        rgb,
    )


def check_memory(cfg: Config, content_shape: tuple[int, int], styles: Sequence[np.ndarray] = (), batch: int = 1) -> None:
    """Refuse, before allocating, a run whose content or style images would not fit."""
    memory.check_fits(cfg.recipe, content_shape, batch)
    for s in styles:
        shape = style_shape(s, Scale(cfg.run.size, *content_shape, 0), cfg)
        memory.check_fits(cfg.recipe, shape, 1, what="style image")


def initial_image(shape: tuple[int, int], cfg: Config, content_rgb01: np.ndarray | None,
                  init_rgb01: np.ndarray | None = None) -> jax.Array:
    """The starting pixels (H×W×3, in the recipe's pixel space) for one image."""
    space = cfg.recipe.pixel_space
    init = cfg.run.init
    if init == "content":
        if content_rgb01 is None:
            raise UserError("--init content needs a content image; start from 'random' noise or an image PATH")
        r = jax.device_put(pixels.host(content_rgb01))  # not jnp.asarray: no program to compile
    elif init == "random":
        key = jax.random.key(cfg.run.seed)
        if space == "caffe":
            # neural-style-pt: randn·0.001 in Caffe units, i.e. the mean-pixel grey.
            return jax.random.normal(key, (*shape, 3), jnp.float32) * 0.001
        r = jax.random.uniform(key, (*shape, 3), jnp.float32)  # pystiche: torch.rand_like
    else:
        r = jnp.asarray(init_rgb01)
    return pixels.from_rgb01(r, space)


__all__ = ["AtScale", "Originals", "as_uint8", "at_scale", "check_memory", "check_size", "initial_image",
           "read", "style_shape"]
