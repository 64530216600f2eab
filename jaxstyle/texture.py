"""Texture synthesis (Gatys, Ecker & Bethge 2015): an image made from noise whose feature
statistics match a style image's, with no content term.

``tileable=True`` makes every convolution (and the TV term, and the resampling between
scales) wrap around, so the texture is periodic: copies laid side by side join without a
seam. No reference program offers this. Its sides are rounded to multiples of the deepest
style layer's pooling factor (16 for relu5_1): otherwise a pooling that drops an odd row
would break the wrap-around at that depth.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxstyle import image as imageio
from jaxstyle import multiscale
from jaxstyle.config import Config, make_config
from jaxstyle.errors import UserError
from jaxstyle.vgg import min_size


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
) -> np.ndarray:
    """A ``width``×``height`` texture (H×W×3 float32 RGB in [0, 1]) for ``cfg`` (see
    :func:`texture_config`); ``style`` is a path/array or a list of them to blend."""
    from jaxstyle import stylize as api

    tileable = cfg.padding == "circular"
    multiple = min_size(cfg.style_layers)
    styles_u8 = [api._as_uint8(s, "style") for s in (style if isinstance(style, (list, tuple)) else [style])]
    init_u8 = None if cfg.init in ("content", "random") else api._as_uint8(cfg.init, "init")
    if cfg.init == "content":
        raise UserError("--init content needs a content image; a texture starts from 'random' noise or an image PATH")
    if network is None:
        from jaxstyle.weights import load_vgg

        network, _ = load_vgg(weights, model=cfg.model, source=cfg.weights_source)
    scales = multiscale.schedule(width, height, cfg, multiple)
    scales[-1] = multiscale.Scale(scales[-1].size, height, width, scales[-1].steps)
    if tileable:
        scales = [multiscale.Scale(s.size, *tile_shape(s.height, s.width, multiple), s.steps) for s in scales]

    def build(scale: multiscale.Scale, init):
        h, w = scale.height, scale.width
        if min(h, w) < multiple:
            raise UserError(f"a {w}×{h} px texture is too small for layer {cfg.style_layers[-1]}: "
                            f"each side must be >= {multiple} px; raise --size")
        if cfg.min_scale:
            ss = [imageio.resize_to(s, *_fit(s, round(scale.size * cfg.style_scale), False), resample="bicubic")
                  for s in styles_u8]
        else:
            ss = [imageio.resize_long_side(s, max(1, round(max(h, w) * cfg.style_scale))) for s in styles_u8]
        ss = [imageio.to_float(s) for s in ss]
        for s in ss:
            api.check_size(s.shape, cfg, "style")
        targets = {"style": api.style_targets(network, ss, cfg)}
        if init is None:
            start = None if init_u8 is None else imageio.to_float(imageio.resize_to(init_u8, h, w, resample="bicubic"))
            init = api.initial_image(np.zeros((h, w, 3), np.float32), cfg, start)[None]
        return api.Problem(cfg, network, jax.tree.map(lambda a: jnp.asarray(a)[None], targets), init)

    return multiscale.solve(build, scales, cfg, callback=callback, boundaries=boundaries, wrap=tileable)[0]


def _fit(img: np.ndarray, long_side: int, scale_up: bool) -> tuple[int, int]:
    h, w = img.shape[:2]
    w2, h2 = multiscale.size_to_fit(w, h, long_side, scale_up)
    return h2, w2


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
    **options,
) -> np.ndarray:
    """Synthesize a texture in the style of ``style``: ``size`` is N (square) or (W, H).

    ``options`` are :class:`jaxstyle.config.Config` fields (``steps=``, ``seed=``, …).
    Returns H×W×3 float32 RGB in [0, 1]; tileable sizes are rounded (see module doc).
    """
    width, height = (size, size) if isinstance(size, int) else size
    cfg = texture_config(preset, tileable=tileable, size=max(width, height), **options)
    return synthesize(style, width, height, cfg, network=network, weights=weights,
                      callback=callback, boundaries=boundaries)
