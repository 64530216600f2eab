"""Inpainting by feature statistics: fill the white region of a mask so that its features
have the statistics of the rest of the same image, and join their surroundings.

At a working size (long side ``min(size, the image's)``) the hole is the free variable; the
network sees the image's own pixels everywhere else (``targets["fixed"]``), so features
that straddle the border, and the TV term, pull the fill into continuity with them. The
style target is the guided statistics (:mod:`jaxstyle.masks`) of the known part, taken at
positions whose whole pooling block is known, from the image with its hole smoothly filled
(so what the mask hides does not leak into the target). The hole's own guided statistics
are matched to it; there is no content term. The result is upsampled to the input's size
and only the pixels inside the mask (mask ≥ ½) are written: every other pixel is the
input's, bit for bit.

Start: the hole filled smoothly from its border (pull–push: masked averages over a
pyramid), plus uniform noise of ±``NOISE`` so texture can grow.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxstyle import image as imageio
from jaxstyle import masks as guides
from jaxstyle import losses, multiscale, pixels
from jaxstyle.config import Config, make_config
from jaxstyle.errors import UserError
from jaxstyle.vgg import min_size

NOISE = 0.25


def pull_push(image: np.ndarray, known: np.ndarray) -> np.ndarray:
    """``image`` (H×W×3) with the pixels where ``known`` is 0 filled by masked averages
    from coarser levels (a smooth membrane over the hole)."""
    if known.shape[0] < 2 or known.shape[1] < 2 or known.all():
        return np.where(known[..., None] > 0, image, image[known > 0].mean(axis=0) if known.any() else 0.5)
    k = known.astype(np.float64)
    h, w = k.shape
    # 2×2 sums with the odd edge kept (ceil), so every pixel has a coarse parent.
    pad = ((0, h % 2), (0, w % 2))
    kp = np.pad(k, pad)
    xp = np.pad(image * k[..., None], pad + ((0, 0),))
    k2 = kp[0::2, 0::2] + kp[1::2, 0::2] + kp[0::2, 1::2] + kp[1::2, 1::2]
    x2 = xp[0::2, 0::2] + xp[1::2, 0::2] + xp[0::2, 1::2] + xp[1::2, 1::2]
    coarse_known = k2 > 0
    coarse = pull_push(np.where(coarse_known[..., None], x2 / np.maximum(k2, 1e-12)[..., None], 0.0), coarse_known)
    up = np.repeat(np.repeat(coarse, 2, axis=0), 2, axis=1)[:h, :w]
    return np.where(k[..., None] > 0, image, up)


def load_pixels(path) -> tuple[np.ndarray, bytes | None]:
    """An image file's own pixel values (upright) and its ICC profile, to write back unchanged.

    Unlike :func:`jaxstyle.image.load_image`, an 8-bit RGB file with an embedded profile
    keeps its values (the profile is then embedded in the output instead of converting to
    sRGB), so the pixels outside the mask are the file's own, bit for bit.
    """
    from PIL import Image, ImageOps

    rgb = imageio.load_image(path)  # every check, and the pixels for all other files
    with Image.open(path) as im:
        icc = im.info.get("icc_profile")
        if not icc or im.mode != "RGB":
            return rgb, None
        return np.asarray(ImageOps.exif_transpose(im).convert("RGB")), icc


def inpaint_config(preset: str = "gatys", **options) -> Config:
    if options.get("preserve_color") is not None:
        raise UserError("--preserve-color does not apply to inpainting: the fill takes the image's own colours")
    return make_config(preset, content_layers=(), **options)


def read_hole(mask, shape: tuple[int, int]) -> np.ndarray:
    """The hole (bool H×W, mask ≥ ½) from a path or array, at the image's ``shape``."""
    from jaxstyle.control import load_mask

    hole = load_mask(mask, shape) >= 0.5
    if not hole.any():
        raise UserError("the inpainting mask has no white pixels, so there is nothing to fill; paint the hole white")
    if hole.all():
        raise UserError("the inpainting mask is white everywhere; leave part of the image black to take the style from")
    return hole


def fill(
    image_u8: np.ndarray,
    hole_full: np.ndarray,
    cfg: Config,
    *,
    network,
    callback: Callable | None = None,
    boundaries: Sequence[int] = (),
) -> np.ndarray:
    """The inpainted image, uint8 at ``image_u8``'s size; unchanged outside ``hole_full``."""
    from jaxstyle import stylize as api

    h0, w0 = image_u8.shape[:2]
    cfg_size = min(cfg.size, max(h0, w0))
    run_cfg = cfg if cfg_size == cfg.size else _replace_size(cfg, cfg_size)
    scales = multiscale.schedule(w0, h0, run_cfg, min_size(run_cfg.style_layers))
    if not run_cfg.min_scale:
        small = imageio.resize_long_side(image_u8, run_cfg.size)
        scales = [multiscale.Scale(run_cfg.size, *small.shape[:2], run_cfg.steps)]
    rng = np.random.default_rng(cfg.seed)

    def build(scale: multiscale.Scale, init):
        h, w = scale.height, scale.width
        api.check_size((h, w), run_cfg, "inpainting")
        resample = "bicubic" if run_cfg.min_scale else "bilinear"
        img = imageio.to_float(imageio.resize_to(image_u8, h, w, resample=resample))
        # Any working pixel that a hole pixel touches is free.
        hole = imageio.resize_to(hole_full.astype(np.float32), h, w) > 0
        known = ~hole
        smooth = pull_push(img, known).astype(np.float32)
        feats = api.features(network, smooth, run_cfg.style_layers, run_cfg)
        known_masks = guides.layer_masks(known[None].astype(np.float32), run_cfg.style_layers)
        hole_masks = guides.layer_masks(hole[None].astype(np.float32), run_cfg.style_layers)
        style = {}
        for name in run_cfg.style_layers:
            m = known_masks[name][0]
            whole = (m >= 1 - 1e-6).astype(np.float32)
            # Deep layers of a small image may have no fully known block; fall back to shares.
            m = whole if whole.any() else m
            stats = guides.guided_statistics(feats[name], jnp.asarray(m), run_cfg.style_loss, run_cfg.gram_norm)
            stats = jax.tree.map(lambda a: a[None], stats)
            style[name] = losses.finish_targets(stats, run_cfg.style_loss)
        fixed = {
            "image": pixels.from_rgb01(jnp.asarray(img), run_cfg.pixel_space),
            "hole": jnp.asarray(hole[..., None], jnp.float32),
        }
        targets = {"style": style, "masks": hole_masks, "fixed": fixed}
        if init is None:
            if run_cfg.init == "random":
                start = rng.uniform(0, 1, img.shape)
            else:
                start = smooth + rng.uniform(-NOISE, NOISE, img.shape)
            start = np.where(hole[..., None], np.clip(start, 0, 1), img).astype(np.float32)
            init = pixels.from_rgb01(jnp.asarray(start), run_cfg.pixel_space)[None]
        batch = jax.tree.map(lambda a: jnp.asarray(a)[None], targets)
        return api.Problem(run_cfg, network, batch, init)

    result = multiscale.solve(build, scales, run_cfg, callback=callback, boundaries=boundaries)[0]
    full = imageio.resize_to(result, h0, w0, resample="bicubic")
    out = image_u8.copy()
    out[hole_full] = imageio.to_uint8(np.clip(full, 0.0, 1.0))[hole_full]
    return out


def _replace_size(cfg: Config, size: int) -> Config:
    from jaxstyle.config import replace

    return replace(cfg, size=size)


def inpaint(
    image,
    mask,
    *,
    weights=None,
    preset: str = "gatys",
    network=None,
    callback: Callable | None = None,
    boundaries: Sequence[int] = (),
    **options,
) -> np.ndarray:
    """Fill the white part of ``mask`` in ``image`` (paths or arrays). Returns uint8 H×W×3
    at the image's own size, equal to it outside the mask. ``options``: Config fields;
    ``size`` is the working long side (the image is never enlarged)."""
    from jaxstyle import stylize as api

    cfg = inpaint_config(preset, **options)
    if cfg.init not in ("content", "random"):
        raise UserError("--init for inpainting is 'content' (a smooth fill plus noise) or 'random'")
    image_u8 = api._as_uint8(image, "image")
    hole = read_hole(mask, image_u8.shape[:2])
    if network is None:
        from jaxstyle.weights import load_vgg

        network, _ = load_vgg(weights, model=cfg.model, source=cfg.weights_source)
    return fill(image_u8, hole, cfg, network=network, callback=callback, boundaries=boundaries)
