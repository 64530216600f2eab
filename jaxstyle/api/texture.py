"""Texture synthesis (Gatys, Ecker & Bethge 2015): an image made from noise whose feature
statistics match a style image's, with no content term.

``tileable=True`` makes every convolution (and the TV term, and the resampling between
scales) wrap around, so the texture is periodic: copies laid side by side join without a
seam. No reference program offers this. Its sides are rounded to multiples of the deepest
style layer's pooling factor (16 for relu5_1): otherwise a pooling that drops an odd row
would break the wrap-around at that depth.

A colour-smoothness term (:data:`CHROMA_WEIGHT`, :mod:`jaxstyle.objective.chroma`) keeps the
statistics from leaving fine colour speckle in flat areas; an addition to the paper.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from jaxstyle.api.network import resolve
from jaxstyle.config import Config, make_config
from jaxstyle.engine import loop, scales
from jaxstyle.engine.scales import Scale
from jaxstyle.engine.targets import batch_problem
from jaxstyle.errors import UserError
from jaxstyle.model.vgg import min_size
from jaxstyle.objective.chroma import Chroma
from jaxstyle.plan import inputs
from jaxstyle.plan.scales import schedule


# The colour-smoothness term's weight per pixel space (:mod:`jaxstyle.objective.chroma`, an
# addition to Gatys et al.), as the style terms' scale differs between them. Caffe (nspt,
# fast): without it the great wave texture had 3.3-3.8x its style's fine colour detail
# (speckle in flat areas), at 1e3 0.97x with its Gram errors unchanged (128 px, 160 steps).
# Other spaces: off, not tuned (1e3 flattened gatys' textures: 11x further from the style).
CHROMA_WEIGHT = {"caffe": 1e3}


def parse_size(text: str) -> tuple[int, int]:
    """``"N"`` → (N, N); ``"WxH"`` → (W, H)."""
    parts = text.lower().replace("×", "x").split("x")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        values = []
    if len(values) not in (1, 2) or min(values) < 1:
        raise UserError(f"--size {text!r} is not valid; give N (a square) or WxH in pixels, e.g. 512 or 768x512")
    return (values[0], values[0]) if len(values) == 1 else (values[0], values[1])


def tile_shape(height: int, width: int, multiple: int) -> tuple[int, int]:
    """(height, width), each rounded to the nearest multiple of ``multiple`` (at least one)."""
    return tuple(max(multiple, round(v / multiple) * multiple) for v in (height, width))


def texture_config(preset: str = "gatys", *, tileable: bool = False, **options) -> Config:
    """The preset's config for texture synthesis: no content layers, noise start, and
    circular padding when tileable. ``size`` is the long side."""
    if options.get("preserve_color") is not None:
        raise UserError("--preserve-color keeps a content image's colours; a texture has no content image")
    if options.get("init") is None:
        options["init"] = "random"
    if tileable:
        options["padding"] = "circular"
    return make_config(preset, content_layers=(), **options)


def synthesize(
    style,
    width: int,
    height: int,
    cfg: Config,
    *,
    network=None,
    weights=None,
    callback: Callable | None = None,
    boundaries: Sequence[int] = (),
    chroma_weight: float | None = None,
) -> np.ndarray:
    """A ``width``×``height`` texture (H×W×3 float32 RGB in [0, 1]) for ``cfg`` (see
    :func:`texture_config`); ``style`` is a path/array or a list of them to blend."""
    recipe = cfg.recipe
    tileable = recipe.padding == "circular"
    multiple = min_size(recipe.style_layers)
    styles = list(style) if isinstance(style, (list, tuple)) else [style]
    if cfg.run.init == "content":
        raise UserError("--init content needs a content image; a texture starts from 'random' noise or an image PATH")
    originals = inputs.read(None, styles, cfg)
    plan = schedule(height, width, cfg, multiple)
    plan[-1] = Scale(plan[-1].size, height, width, plan[-1].steps)
    if tileable:
        plan = [Scale(s.size, *tile_shape(s.height, s.width, multiple), s.steps) for s in plan]
    for s in plan:
        if min(s.height, s.width) < multiple:
            raise UserError(f"a {s.width}×{s.height} px texture is too small for layer {recipe.style_layers[-1]}: "
                            f"each side must be >= {multiple} px; raise --size")
    inputs.check_memory(cfg, (plan[-1].height, plan[-1].width), originals.styles)
    network, _, cfg = resolve(network, weights, cfg)
    recipe = cfg.recipe
    if chroma_weight is None:
        chroma_weight = CHROMA_WEIGHT.get(recipe.pixel_space, 0.0)

    def build(scale: Scale, init):
        at = inputs.at_scale(originals, scale, cfg)
        if init is None:
            init = inputs.initial_image((scale.height, scale.width), cfg, None, at.init)[None]
        extra = {}
        if chroma_weight:
            ones = np.ones((scale.height, scale.width, 1), np.float32)
            extra["shared_chroma"] = Chroma(np.float32(chroma_weight), ones)
        return batch_problem(network, recipe, [None], [at.styles], init, blend_weights=cfg.run.style_blend_weights,
                             **extra)

    problem, state = scales.solve(build, plan, recipe, callback=callback, boundaries=boundaries,
                                  chunk=cfg.run.chunk, wrap=tileable)
    return loop.final_images(problem, state)[0]


def texture(
    style,
    *,
    size: int | tuple[int, int] = 512,
    tileable: bool = False,
    weights=None,
    preset: str = "gatys",
    network=None,
    callback: Callable | None = None,
    boundaries: Sequence[int] = (),
    chroma_weight: float | None = None,
    **options,
) -> np.ndarray:
    """Synthesize a texture in the style of ``style``: ``size`` is N (square) or (W, H).

    ``options`` are :class:`jaxstyle.config.Config` fields (``steps=``, ``seed=``, …);
    ``chroma_weight``: the colour-smoothness term's weight (0: off; None:
    :data:`CHROMA_WEIGHT` for the recipe's pixel space).
    Returns H×W×3 float32 RGB in [0, 1]; tileable sizes are rounded (see module doc).
    """
    width, height = (size, size) if isinstance(size, int) else size
    cfg = texture_config(preset, tileable=tileable, size=max(width, height), **options)
    return synthesize(style, width, height, cfg, network=network, weights=weights,
                      callback=callback, boundaries=boundaries, chroma_weight=chroma_weight)
