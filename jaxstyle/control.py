"""Stylize with the artistic controls: coarse-to-fine scales, colour preservation, regions.

:func:`jaxstyle.stylize.stylize` hands over to :func:`stylize` here when a run uses any of
them. This module builds one ``Problem`` per scale from the original images; the
optimisation itself is :mod:`jaxstyle.multiscale` over the jitted step of ``stylize.py``.

Sizes: with one scale, images are resized exactly as ``stylize.load_inputs`` does
(bilinear, short side truncated). With several (``min_scale``), crowsonkb's way: at each
scale the content is resized from the original with PIL bicubic to long side = the scale
(short side rounded), the style to long side round(scale × style_scale) but never enlarged.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from jaxstyle import color, multiscale
from jaxstyle import image as imageio
from jaxstyle.config import Config
from jaxstyle.errors import UserError
from jaxstyle.vgg import min_size


def load_mask(mask, shape: tuple[int, int]) -> np.ndarray:
    """A mask given as a path or an H×W(×C) array → float32 H×W in [0, 1] at ``shape``."""
    from jaxstyle.masks import read_mask

    if isinstance(mask, np.ndarray):
        m = mask.astype(np.float32)
        if m.ndim == 3:
            m = m.mean(axis=-1)
        if mask.dtype == np.uint8:
            m = m / 255
        if m.ndim != 2:
            raise UserError(f"a mask array has shape {mask.shape}; expected H×W")
        m = imageio.resize_to(m, *shape) if m.shape != tuple(shape) else m
        return np.clip(m, 0.0, 1.0)
    return read_mask(mask, shape)


def style_size(style_u8: np.ndarray, scale: int, style_scale: float) -> tuple[int, int]:
    """(height, width) of a style image at a scale, as crowsonkb (never enlarged)."""
    h, w = style_u8.shape[:2]
    w2, h2 = multiscale.size_to_fit(w, h, round(scale * style_scale))
    return h2, w2


def stylize(
    content,
    styles: Sequence,
    cfg: Config,
    *,
    weights=None,
    network=None,
    callback: Callable | None = None,
    boundaries: Sequence[int] = (),
    masks: Sequence | None = None,
) -> np.ndarray:
    """The ``jaxstyle.stylize`` API with colour control, masks and/or several scales."""
    from jaxstyle import stylize as api

    content_u8 = api._as_uint8(content, "content")
    styles_u8 = [api._as_uint8(s, "style") for s in styles]
    init_u8 = None if cfg.init in ("content", "random") else api._as_uint8(cfg.init, "init")
    if masks is not None and cfg.style_blend_weights is not None:
        raise UserError("--style-blend-weights mixes styles everywhere, --mask gives each its own region; use one")
    if masks is not None and len(masks) != len(styles_u8):
        raise UserError(f"{len(masks)} mask(s) for {len(styles_u8)} style image(s); give one --mask per style, in order")
    if network is None:
        from jaxstyle.weights import load_vgg

        network, _ = load_vgg(weights, model=cfg.model, source=cfg.weights_source)
    colours = color.plan(cfg.preserve_color, imageio.to_float(content_u8), [imageio.to_float(s) for s in styles_u8])
    h0, w0 = content_u8.shape[:2]
    masks_full = None if masks is None else [load_mask(m, (h0, w0)) for m in masks]
    scales = multiscale.schedule(w0, h0, cfg, min_size(cfg.all_layers))
    if not cfg.min_scale:
        # One scale: the core's own resizing, so results match a run without controls.
        content_f, styles_f, init_f = api.load_inputs(content_u8, styles_u8, cfg, init_u8)
        scales = [multiscale.Scale(cfg.size, *content_f.shape[:2], cfg.steps)]
    final_content = {}

    def build(scale: multiscale.Scale, init):
        if not cfg.min_scale:
            c, ss, start = content_f, styles_f, init_f
        else:
            hw = (scale.height, scale.width)
            c = imageio.to_float(imageio.resize_to(content_u8, *hw, resample="bicubic"))
            ss = [
                imageio.to_float(imageio.resize_to(s, *style_size(s, scale.size, cfg.style_scale), resample="bicubic"))
                for s in styles_u8
            ]
            start = None if init_u8 is None else imageio.to_float(imageio.resize_to(init_u8, *hw, resample="bicubic"))
        final_content["rgb"] = c
        region = None if masks_full is None else [imageio.resize_to(m, *c.shape[:2]) for m in masks_full]
        problem = api.prepare(
            network,
            colours.content(c),
            [t(s) for t, s in zip(colours.styles, ss)],
            cfg,
            None if start is None else colours.content(start),
            masks=region,
        )
        if init is not None:
            problem.init = init
        return problem

    result = multiscale.solve(build, scales, cfg, callback=callback, boundaries=boundaries)[0]
    return colours.finish(result, final_content["rgb"])
