"""Inpainting by neural patches and local feature statistics: fill the white region of a
mask so that its patches and features are those of the hole's own neighbourhood, and join
their surroundings.

At a working size (long side ``min(size, the image's)``) the hole is the free variable; the
network sees the image's own pixels everywhere else (``Targets.fixed``), so features that
straddle the border, and the TV term, pull the fill into continuity with them. There is no
content term. The result is upsampled to the input's size and only the pixels inside the
mask (mask ≥ ½) are written: every other pixel is the input's, bit for bit.

Why the fill is neither speckle nor a patch that shows (issue 11). Global statistics of the
whole image barely constrain a small hole, and what they leave free, high-frequency colour
noise, costs almost nothing; so the fill is held by its neighbourhood:

- Neural patches (MRF; Li & Wand 2016, for inpainting Yang et al. 2017): every 3×3 patch
  that touches a hole, at relu3_1, relu4_1 and on the pixels themselves
  (:data:`PATCH_LAYERS`), is pulled towards its most similar (normalised cross-correlation)
  patch of *known* positions within :func:`ring_width` ×2 of that hole
  (:func:`patch_targets`), matched anew at every evaluation inside the compiled step
  (``Targets.patches``, :mod:`jaxstyle.objective.patches`). The target patches are read
  from the image's current features, so features that see the hole through their receptive
  field are not fixed at their start values. Deviations: the pixel layer, matched by
  squared distance (correlation ignores brightness: a roof took a patch of sky); each hole's
  error is divided by the detail energy of its own targets (a smooth sky keeps no noise);
  no content network (Yang et al.'s global term is the guided statistics below).
- Statistics: the guided statistics (:mod:`jaxstyle.objective.guided`) of a *ring* of known
  pixels around each hole (:func:`ring_width`), taken at positions whose whole pooling block
  lies in the ring, from the image with its hole smoothly filled. A deep layer with no such
  position falls back to the whole known part.
- Start: the hole filled smoothly from its border (:func:`membrane`: the Laplace
  membrane over the known pixels, solved coarse to fine) plus *luminance-only* Gaussian
  noise as strong as the ring's own fine detail (:func:`grey_noise`). The preset's start
  is not used (nspt's is uniform noise in all three channels): ``init`` defaults to
  ``"content"`` here; ``--init random`` still gives that noise start.
- Several holes: each connected part (:func:`components`) is its own guided region, ring
  and patch group, so a hole in the sky is not asked for the rocks of another.
- Coarse to fine (:func:`coarse_to_fine`): half the working size first, where the deep
  layers see the hole's whole neighbourhood and lay out the fill, then the working size.
- After each scale: the fill's low frequencies are joined to the border
  (:func:`join_border`, membrane cloning), and its finest detail and colour are held to
  its ring's (:func:`settle`), so no seam, speckle or tinted blotch survives.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxstyle.api.network import resolve
from jaxstyle.config import Config, make_config, replace
from jaxstyle.engine import loop, scales
from jaxstyle.engine.scales import Scale
from jaxstyle.engine.targets import Fixed, Problem, Targets, features
from jaxstyle.errors import UserError
from jaxstyle.io import image as imageio
from jaxstyle.io.image import fit_long_side
from jaxstyle.io.masks import load_mask
from jaxstyle.model import pixels
from jaxstyle.model.vgg import min_size
from jaxstyle.objective import guided as guides
from jaxstyle.objective import patches as mrf
from jaxstyle.objective import style as style_kind
from jaxstyle.plan import inputs
from jaxstyle.plan.scales import schedule


def pull_push(image: np.ndarray, known: np.ndarray) -> np.ndarray:
    """``image`` (H×W×3) with the pixels where ``known`` is 0 filled by masked averages
    from coarser levels (a smooth membrane over the hole)."""
    if known.shape[0] < 2 or known.shape[1] < 2 or known.all():
        return np.where(known[..., None] > 0, image, image[known > 0].mean(axis=0) if known.any() else 0.5)
    k = known.astype(np.float64)
    h, w = k.shape
    coarse_image, coarse_known = _halve(image, k)
    coarse = pull_push(np.where(coarse_known[..., None], coarse_image, 0.0), coarse_known)
    up = np.repeat(np.repeat(coarse, 2, axis=0), 2, axis=1)[:h, :w]
    return np.where(k[..., None] > 0, image, up)


def _halve(image: np.ndarray, known: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(masked 2×2 averages of ``image`` over its known pixels, which of them have any):
    the next coarser level, with the odd edge kept (ceil), so every pixel has a parent."""
    k = np.asarray(known, np.float64)
    h, w = k.shape
    pad = ((0, h % 2), (0, w % 2))
    kp = np.pad(k, pad)
    xp = np.pad(image * k[..., None], pad + ((0, 0),))
    k2 = kp[0::2, 0::2] + kp[1::2, 0::2] + kp[0::2, 1::2] + kp[1::2, 1::2]
    x2 = xp[0::2, 0::2] + xp[1::2, 0::2] + xp[0::2, 1::2] + xp[1::2, 1::2]
    return x2 / np.maximum(k2, 1e-12)[..., None], k2 > 0


def membrane(image: np.ndarray, known: np.ndarray, sweeps: int = 60) -> np.ndarray:
    """``image`` with the pixels where ``known`` is False replaced by the harmonic (Laplace)
    membrane over the known ones: each free pixel the average of its four neighbours, so
    along a hole's border it takes the colour of the known pixels right next to it.

    Solved coarse to fine (cascadic multigrid): the membrane of the 2×2-averaged image,
    upsampled, then ``sweeps`` Jacobi sweeps. :func:`pull_push` alone is not this: its
    nearest-neighbour upsampling takes a hole's colour from whichever dyadic block first
    holds known pixels, which can lie far from the hole (a hole under the sky took the
    colour of a tree below it)."""
    known = np.asarray(known, bool)
    h, w = known.shape
    if known.all() or not known.any() or min(h, w) < 16:
        return relax(pull_push(image, known), ~known, 200)
    coarse = membrane(*_halve(image, known), sweeps)
    up = np.repeat(np.repeat(coarse, 2, axis=0), 2, axis=1)[:h, :w]
    return relax(np.where(known[..., None], image, up), ~known, sweeps)


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
    if options.get("init") is None:
        # Not the preset's start: a noise start (nspt's) leaves colour speckle in the hole.
        options["init"] = "content"
    return make_config(preset, content_layers=(), **options)


def read_hole(mask, shape: tuple[int, int]) -> np.ndarray:
    """The hole (bool H×W, mask ≥ ½) from a path or array, at the image's ``shape``."""

    hole = load_mask(mask, shape) >= 0.5
    if not hole.any():
        raise UserError("the inpainting mask has no white pixels, so there is nothing to fill; paint the hole white")
    if hole.all():
        raise UserError("the inpainting mask is white everywhere; leave part of the image black to take the style from")
    return hole


def dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """``mask`` grown by ``radius`` px (chessboard distance), in numpy (no SciPy at runtime)."""
    out = np.asarray(mask, bool)
    for _ in range(radius):
        grown = out.copy()
        grown[1:] |= out[:-1]
        grown[:-1] |= out[1:]
        grown[:, 1:] |= grown[:, :-1].copy()
        grown[:, :-1] |= grown[:, 1:].copy()
        out = grown
    return out


def ring_width(hole: np.ndarray, deepest: int) -> int:
    """How far around a hole the statistics are taken: about half the hole's typical
    extent (so the ring's area is a few times the hole's), and at least a quarter of the
    deepest layer's pooling block. Not more: on a small image a wider ring reaches other
    regions (the hills below a hole in the sky), and the deep layers do without whole
    blocks (see the fallback in :func:`fill`)."""
    area = float(hole.sum())
    return int(max(max(1, deepest // 4), np.ceil(0.5 * np.sqrt(area))))


# Each region is also a patch group, and the patch term has this many group slots.
MAX_REGIONS = mrf.MAX_GROUPS


def components(hole: np.ndarray) -> list[np.ndarray]:
    """The hole's connected parts (8-connected), largest first; beyond ``MAX_REGIONS`` the
    smallest are merged into one. Each part gets its own ring and its own guided region,
    so a hole in the sky is not asked for the statistics of one in the rocks."""
    h, w = hole.shape
    big = h * w
    labels = np.where(hole, np.arange(big).reshape(h, w), big)
    while True:  # propagate the smallest label through each part
        pad = np.pad(labels, 1, constant_values=big)
        low = np.min([pad[1 + dy:1 + dy + h, 1 + dx:1 + dx + w] for dy in (-1, 0, 1) for dx in (-1, 0, 1)], axis=0)
        low = np.where(hole, low, big)
        if np.array_equal(low, labels):
            break
        labels = low
    ids, counts = np.unique(labels[hole], return_counts=True)
    parts = [labels == i for i in ids[np.argsort(-counts, kind="stable")]]
    if len(parts) > MAX_REGIONS:
        parts = parts[:MAX_REGIONS - 1] + [np.any(parts[MAX_REGIONS - 1:], axis=0)]
    return parts


def neighbourhoods(hole: np.ndarray, deepest: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(the hole's parts (:func:`components`), each one's ring of known pixels
    (:func:`ring_width` wide))."""
    parts = components(hole)
    return parts, [dilate(part, ring_width(part, deepest)) & ~hole for part in parts]


# ITU-R BT.601 full range (JPEG's YCbCr): rows Y, Cb, Cr.
YCBCR = np.array([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]])


def grey_noise(img: np.ndarray, ring: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Luminance-only noise (the same on R, G and B: zero Cb/Cr in BT.601) whose size is the
    ring's own fine detail, so the start has the ring's texture energy and no colour speckle."""
    y = img @ YCBCR[0]
    # fine detail: the luminance minus its 3×3 mean
    pad = np.pad(y, 1, mode="edge")
    mean = sum(pad[i:i + y.shape[0], j:j + y.shape[1]] for i in range(3) for j in range(3)) / 9
    sigma = float(np.std((y - mean)[ring])) if ring.any() else 0.02
    n = rng.standard_normal(y.shape) * sigma
    return np.repeat(n[..., None], 3, axis=-1)


def laplacian_energy(channel: np.ndarray, region: np.ndarray) -> float:
    """Mean |4-neighbour Laplacian| of ``channel`` (H×W) over ``region`` (edge-replicated)."""
    p = np.pad(channel, 1, mode="edge")
    lap = p[:-2, 1:-1] + p[2:, 1:-1] + p[1:-1, :-2] + p[1:-1, 2:] - 4 * channel
    return float(np.abs(lap)[region].mean()) if region.any() else 0.0


def blur(channel: np.ndarray) -> np.ndarray:
    """3×3 binomial blur ([1 2 1]/4 each way, edge-replicated)."""
    p = np.pad(channel, 1, mode="edge")
    v = 0.25 * p[:-2] + 0.5 * p[1:-1] + 0.25 * p[2:]
    return 0.25 * v[:, :-2] + 0.5 * v[:, 1:-1] + 0.25 * v[:, 2:]


def settle(result: np.ndarray, img: np.ndarray, parts: list[np.ndarray], rings: list[np.ndarray]) -> np.ndarray:
    """``result`` inside the holes, each hole (``parts[k]``) made no busier and no more
    colourful than its ring of known pixels (``rings[k]``); ``img`` elsewhere.

    Per hole and per YCbCr channel, the fill's finest detail (the channel minus its 3×3
    binomial blur) is scaled down until its mean |Laplacian| is at most the ring's
    (Heeger & Bergen 1995 match a texture's subband energies; here only downwards, so a
    smooth sky keeps no noise and nothing is sharpened into noise), and Cb/Cr are clipped
    to the 1st–99th percentile of the ring's (no colour no pixel around the hole has).

    Deviation (not in Li & Wand / Yang et al.): the statistics and patches leave the
    finest detail and the colour of a hole only loosely held, and what they leave shows
    as speckle or a tinted blotch.
    """
    hole = np.any(parts, axis=0)
    out = np.where(hole[..., None], result, img).astype(np.float64) @ YCBCR.T
    ref = np.asarray(img, np.float64) @ YCBCR.T
    for part, ring in zip(parts, rings):
        if not ring.any():
            continue
        for c in range(3):
            want = laplacian_energy(ref[..., c], ring)
            for _ in range(3):  # the blur's own response shrinks too: a few passes settle it
                have = laplacian_energy(out[..., c], part)
                if have <= want * 1.02 or have == 0.0:
                    break
                detail = out[..., c] - blur(out[..., c])
                out[..., c] = np.where(part, out[..., c] - (1.0 - want / have) * detail, out[..., c])
            if c:
                lo, hi = np.percentile(ref[..., c][ring], [1, 99])
                out[..., c] = np.where(part, np.clip(out[..., c], lo, hi), out[..., c])
    rgb = out @ np.linalg.inv(YCBCR).T
    return np.where(hole[..., None], np.clip(rgb, 0.0, 1.0), img).astype(np.float32)


# Yang et al. 2017 match patches at relu3_1 and relu4_1; "pixels" (the image itself) is an
# addition: no VGG layer holds on to the finest detail, and without it a hole in a smooth
# sky came out 2.5-3x as busy as its surroundings (issue 11's check, 160 px).
PATCH_LAYERS = ("pixels", "relu3_1", "relu4_1")
# The terms are relative errors (÷ the detail around each hole); at 1e6 they weigh about as
# much as nspt's style terms at the start of a solve (measured on the bench photos).
PATCH_WEIGHT = 1e6
MAX_TARGET_PATCHES = 1024  # per layer, shared by the holes
MAX_CENTRES = 4096  # per layer


def patch_targets(shapes: dict, parts: list[np.ndarray], known: np.ndarray, reach: list[int], layers,
                  weight: float) -> dict[str, mrf.Patches] | None:
    """The MRF targets (:mod:`jaxstyle.objective.patches`) of each hole in ``parts`` at
    ``layers`` (feature grids ``shapes[layer]`` = (h, w)): the patches whose cells are
    wholly known and lie within ``reach[k]`` px of hole k, matched only to hole k's own
    patches (a hole in the sky copies sky); where a hole has fewer than 16 within reach,
    the whole known part."""
    out = {}
    for name in layers:
        h, w = shapes[name]
        times = _poolings(name)
        known_share = guides.pool_mask(known, times)[:h, :w]
        targets, tgroups, centres, cgroups, weights = [], [], [], [], []
        per_hole = max(16, MAX_TARGET_PATCHES // len(parts))
        for k, part in enumerate(parts):
            share = guides.pool_mask(part, times)[:h, :w]
            c, wt = mrf.patch_centres(share, 3)
            if not len(c):
                continue
            near = guides.pool_mask(dilate(part, reach[k]), times)[:h, :w] > 0
            t = mrf.source_centres(known_share, near, 3, per_hole)
            if len(t) < 16:
                t = mrf.source_centres(known_share, np.ones((h, w), bool), 3, per_hole)
            if not len(t):
                continue
            targets.append(t)
            tgroups.append(np.full(len(t), k, np.int32))
            centres.append(c)
            cgroups.append(np.full(len(c), k, np.int32))
            weights.append(wt)
        if not centres:
            continue
        c, cg, wt = np.concatenate(centres), np.concatenate(cgroups), np.concatenate(weights)
        if len(c) > MAX_CENTRES:
            keep = np.linspace(0, len(c) - 1, MAX_CENTRES).round().astype(int)
            c, cg, wt = c[keep], cg[keep], wt[keep]
        out[name] = mrf.Patches(jnp.asarray(np.concatenate(targets)), jnp.asarray(np.concatenate(tgroups)),
                                jnp.asarray(c), jnp.asarray(cg), jnp.asarray(wt), jnp.asarray(weight, jnp.float32),
                                jnp.asarray(name == "pixels"))
    return out or None


def _poolings(layer: str) -> int:
    return 0 if layer == "pixels" else int(np.log2(min_size([layer])))


def join_border(result: np.ndarray, img: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """``result`` inside the hole plus a smooth membrane that cancels its offset from the
    known pixels along the hole's border, so the fill's low frequencies meet its
    surroundings without a step; its detail is kept.

    Deviation (not in Li & Wand / Yang et al.): membrane cloning (Farbman et al. 2009,
    "Coordinates for instant image cloning") with the harmonic membrane of
    :func:`membrane` in place of mean-value coordinates. The offset at each border pixel
    of the hole is the smooth fill there (the membrane of the known pixels) minus the
    result.
    """
    known = ~hole
    border = hole & dilate(known, 1)
    if not border.any():
        return result
    smooth = membrane(img, known)
    offset = np.where(border[..., None], smooth - result, 0.0)
    # The border encloses the hole (up to the image's edge, where the sweeps read the edge
    # itself): inside it the membrane depends on the border's offsets only.
    return np.where(hole[..., None], result + membrane(offset, border), img)


def relax(values: np.ndarray, free: np.ndarray, iterations: int = 200) -> np.ndarray:
    """``values`` (H×W×C) with the ``free`` pixels moved towards the harmonic (Laplace)
    membrane over the others: Jacobi sweeps from a pull–push start, whose 2×2 blocks would
    otherwise show as fine detail of their own."""
    v = np.asarray(values, np.float64).copy()
    for _ in range(iterations):
        p = np.pad(v, ((1, 1), (1, 1), (0, 0)), mode="edge")
        avg = 0.25 * (p[:-2, 1:-1] + p[2:, 1:-1] + p[1:-1, :-2] + p[1:-1, 2:])
        v = np.where(free[..., None], avg, v)
    return v


def fill(
    image_u8: np.ndarray,
    hole_full: np.ndarray,
    cfg: Config,
    *,
    network,
    callback: Callable | None = None,
    boundaries: Sequence[int] = (),
    patch_weight: float = PATCH_WEIGHT,
) -> np.ndarray:
    """The inpainted image, uint8 at ``image_u8``'s size; unchanged outside ``hole_full``.

    Only the window around the holes (:func:`window`) is solved, at its own size when that
    is at most ``size``: every term reads pixels near a hole only, and a large photo with a
    small hole is then filled at full resolution instead of being shrunk and its fill
    blurred on the way back up."""
    deepest = min_size(cfg.recipe.style_layers)
    y0, y1, x0, x1 = window(hole_full, deepest)
    if (y1 - y0, x1 - x0) != hole_full.shape:
        out = image_u8.copy()
        out[y0:y1, x0:x1] = fill(image_u8[y0:y1, x0:x1], hole_full[y0:y1, x0:x1], cfg, network=network,
                                 callback=callback, boundaries=boundaries, patch_weight=patch_weight)
        return out
    h0, w0 = image_u8.shape[:2]
    cfg_size = min(cfg.run.size, max(h0, w0))
    run_cfg = cfg if cfg_size == cfg.run.size else replace(cfg, size=cfg_size)
    recipe = run_cfg.recipe
    plan = schedule(h0, w0, run_cfg, deepest)
    if not run_cfg.run.min_scale:
        plan = coarse_to_fine(w0, h0, run_cfg, deepest)
    rng = np.random.default_rng(cfg.run.seed)
    last = {}  # the last scale's holes and rings, for the final settle

    def build(scale: Scale, carried):
        h, w = scale.height, scale.width
        inputs.check_size((h, w), recipe, "inpainting", recipe.style_layers)
        img, hole = _at(image_u8, hole_full, scale)
        known = ~hole
        parts, rings = neighbourhoods(hole, deepest)
        last["neighbourhoods"] = parts, rings
        ring = np.any(rings, axis=0)
        smooth = membrane(img, known).astype(np.float32)
        patch_layers = [name for name in PATCH_LAYERS if patch_weight and min(h, w) >= 3 * 2 ** _poolings(name)]
        feats = features(network, smooth, recipe.style_layers, recipe)
        ring_masks = guides.layer_masks(np.stack(rings).astype(np.float32), recipe.style_layers)
        known_masks = guides.layer_masks(known[None].astype(np.float32), recipe.style_layers)
        hole_masks = guides.layer_masks(np.stack(parts).astype(np.float32), recipe.style_layers)
        loss_kind = style_kind.kind(recipe)
        style_targets = {}
        for name in recipe.style_layers:
            per_part = []
            for k in range(len(parts)):
                # The target: positions whose whole pooling block lies in the part's ring
                # (its neighbourhood: global statistics barely constrain a small hole); a
                # deep layer may have none, then each position weighted by its ring share
                # (features of the smooth fill, so the hole adds no detail), then the
                # whole known part.
                m = ring_masks[name][k]
                whole = (m >= 1 - 1e-6).astype(np.float32)
                if whole.any():
                    m = whole
                elif not m.any():
                    m = known_masks[name][0]
                per_part.append(style_kind.guided_statistics(feats[name], jnp.asarray(m), recipe))
            style_targets[name] = loss_kind.finish(jax.tree.map(lambda *xs: jnp.stack(xs), *per_part))
        fixed = Fixed(pixels.from_rgb01(jnp.asarray(img), recipe.pixel_space), jnp.asarray(hole[..., None], jnp.float32))
        if carried is not None:  # the coarser scale's fill at this size, joined and settled again
            coarse = np.asarray(pixels.to_rgb01(carried[0], recipe.pixel_space))
            start = settle(join_border(coarse, img, hole), img, parts, rings)
        elif run_cfg.run.init == "random":
            start = rng.uniform(0, 1, img.shape)
        else:
            start = smooth + grey_noise(img, ring, rng)
        start = np.where(hole[..., None], np.clip(start, 0, 1), img).astype(np.float32)
        init = pixels.from_rgb01(jnp.asarray(start), recipe.pixel_space)[None]
        reach = [2 * ring_width(part, deepest) for part in parts]
        shapes = {name: guides.pool_mask(known, _poolings(name)).shape for name in patch_layers}
        mrf_targets = patch_targets(shapes, parts, known, reach, patch_layers, patch_weight)
        targets = Targets(style=style_targets, masks=hole_masks, fixed=fixed, patches=mrf_targets)
        shared = ("style", "masks", "fixed") + (("patches",) if mrf_targets else ())
        return Problem(recipe, network, targets, jnp.asarray(init), shared=shared)

    problem, state = scales.solve(build, plan, recipe, callback=callback, boundaries=boundaries, chunk=cfg.run.chunk)
    img, hole = _at(image_u8, hole_full, plan[-1])
    result = settle(join_border(loop.final_images(problem, state)[0], img, hole), img, *last["neighbourhoods"])
    full = imageio.resize_to(result, h0, w0, resample="bicubic")
    out = image_u8.copy()
    out[hole_full] = imageio.to_uint8(np.clip(full, 0.0, 1.0))[hole_full]
    return out


def window(hole: np.ndarray, deepest: int) -> tuple[int, int, int, int]:
    """(y0, y1, x0, x1): the holes' bounding box grown by what the solve reads around them
    (patch sources within twice :func:`ring_width`, of the whole hole here, and one deepest
    pooling block of context), clipped to the image."""
    h, w = hole.shape
    margin = 2 * ring_width(hole, deepest) + deepest
    ys, xs = np.nonzero(hole)
    return (max(0, int(ys.min()) - margin), min(h, int(ys.max()) + 1 + margin),
            max(0, int(xs.min()) - margin), min(w, int(xs.max()) + 1 + margin))


def _at(image_u8: np.ndarray, hole_full: np.ndarray, scale: Scale) -> tuple[np.ndarray, np.ndarray]:
    """The image (RGB [0, 1]) and the hole at a scale; any pixel a hole pixel touches is free."""
    h, w = scale.height, scale.width
    img = imageio.to_float(imageio.resize_to(image_u8, h, w, resample="bicubic"))
    return img, imageio.resize_to(hole_full.astype(np.float32), h, w) > 0


def coarse_to_fine(width: int, height: int, cfg: Config, min_side: int) -> list:
    """Two scales when the recipe has none: half the working size first (the layout of the
    fill, where the deep layers see the hole's whole neighbourhood), then the working size
    (its detail), ``steps`` each. One scale when half would be too small for the network."""
    size, steps = cfg.run.size, cfg.run.steps
    final = Scale(size, *fit_long_side(height, width, size, rounding="round"), steps)
    half = max(1, size // 2)
    h2, w2 = fit_long_side(height, width, half, rounding="round")
    if min(w2, h2) < 2 * min_side or not steps:
        return [final]
    return [Scale(half, h2, w2, steps), final]


def inpaint(
    image,
    mask,
    *,
    weights=None,
    preset: str = "gatys",
    network=None,
    callback: Callable | None = None,
    boundaries: Sequence[int] = (),
    patch_weight: float = PATCH_WEIGHT,
    **options,
) -> np.ndarray:
    """Fill the white part of ``mask`` in ``image`` (paths or arrays). Returns uint8 H×W×3
    at the image's own size, equal to it outside the mask. ``options``: Config fields;
    ``size`` is the working long side (the image is never enlarged); ``patch_weight``: the
    MRF term's weight (0: off)."""
    cfg = inpaint_config(preset, **options)
    if cfg.run.init not in ("content", "random"):
        raise UserError("--init for inpainting is 'content' (a smooth fill plus noise) or 'random'")
    image_u8 = inputs.as_uint8(image, "image")
    hole = read_hole(mask, image_u8.shape[:2])
    network, _, cfg = resolve(network, weights, cfg)
    return fill(image_u8, hole, cfg, network=network, callback=callback, boundaries=boundaries,
                patch_weight=patch_weight)
