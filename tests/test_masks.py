"""Spatial control with masks: alignment with the features (against torch's avg_pool2d),
guided statistics (against numpy float64), and regions that end with their own style."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import jaxstyle
import pytest
import torch
import torch.nn.functional as F

from jaxstyle.objective import guided as M
from jaxstyle.engine.targets import features
from jaxstyle.objective import style, wasserstein
from jaxstyle.config import make_config
from jaxstyle.errors import UserError

RNG = np.random.default_rng(3)
LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1", "pool2", "pool4")


def test_layer_masks_align_with_the_features(net):
    mask = RNG.uniform(0, 1, (2, 45, 37))
    pooled = M.layer_masks(mask, LAYERS)
    feats = features(net, RNG.uniform(0, 1, (45, 37, 3)), LAYERS, make_config().recipe)
    for name in LAYERS:
        assert pooled[name].shape[1:] == feats[name].shape[:2], name
        times = int(name[-3]) - 1 if name.startswith("relu") else int(name[-1])
        ref = torch.from_numpy(mask[None])
        for _ in range(times):
            ref = F.avg_pool2d(ref, 2)
        np.testing.assert_allclose(pooled[name], ref[0].numpy(), rtol=1e-6, err_msg=name)


def test_guided_statistics_match_numpy():
    f = RNG.standard_normal((6, 7, 5))
    m = RNG.uniform(0, 1, (6, 7))
    flat, w = f.reshape(-1, 5), m.reshape(-1) / m.sum()
    with jax.enable_x64(True):
        gram = style.guided_statistics(jnp.asarray(f), jnp.asarray(m), make_config(gram_norm="chw").recipe)["gram"]
        w2 = make_config(style_loss="w2").recipe
        mom = style.guided_statistics(jnp.asarray(f), jnp.asarray(m), w2)
        ones = style.guided_statistics(jnp.asarray(f), jnp.ones((6, 7)), w2)
        plain = wasserstein.moments(jnp.asarray(f))
    np.testing.assert_allclose(gram, (flat * w[:, None]).T @ flat / 5, rtol=1e-12)
    np.testing.assert_allclose(mom["mean"], w @ flat, rtol=1e-12)
    np.testing.assert_allclose(mom["raw2"], (flat * w[:, None]).T @ flat, rtol=1e-12)
    for k in ("mean", "raw2"):  # a full mask gives the unguided statistics
        np.testing.assert_allclose(ones[k], plain[k], rtol=1e-12)


def stripes(h, w):
    """Smooth, warm, horizontal: low frequencies."""
    yy = np.mgrid[0:h, 0:w][0] / h
    img = np.stack([0.8 + 0.15 * np.sin(6 * yy), 0.4 + 0.3 * np.sin(6 * yy), 0.1 + 0.0 * yy], -1)
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


def speckle(h, w, seed=0):
    """Cold, pixel-level noise: high frequencies."""
    rng = np.random.default_rng(seed)
    img = np.stack([rng.uniform(0, 0.3, (h, w)), rng.uniform(0.2, 0.7, (h, w)), rng.uniform(0.5, 1, (h, w))], -1)
    return (img * 255).astype(np.uint8)


def region_grams(net, img, cols, layers, cfg):
    feats = features(net, img, layers, cfg.recipe)
    out = []
    for name in layers:
        f = np.asarray(feats[name], np.float64)
        scale = img.shape[1] / f.shape[1]
        part = f[:, int(cols[0] / scale):int(np.ceil(cols[1] / scale))].reshape(-1, f.shape[-1])
        out.append(part.T @ part / len(part))
    return out


def grams(net, img, layers, cfg):
    feats = features(net, img, layers, cfg.recipe)
    return [np.asarray(feats[n], np.float64).reshape(-1, feats[n].shape[-1]) for n in layers]


def test_two_regions_end_closer_to_their_own_style(net):
    h, w = 48, 64
    content = np.full((h, w, 3), 128, np.uint8)
    a, b = stripes(40, 40), speckle(40, 40)
    left = np.zeros((h, w), np.float32)
    left[:, : w // 2] = 1
    out = jaxstyle.stylize(content, [a, b], network=net, size=64, steps=40, content_weight=0, chunk=1,
                    masks=[left, 1 - left], init="random")
    cfg = make_config()
    layers = ("relu1_1", "relu2_1")
    ga = [f.T @ f / len(f) for f in grams(net, a / np.float32(255), layers, cfg)]
    gb = [f.T @ f / len(f) for f in grams(net, b / np.float32(255), layers, cfg)]
    # Each region, away from the border between them, measured with plain Grams.
    for cols, own, other in (((0, 24), ga, gb), ((40, 64), gb, ga)):
        g = region_grams(net, out, cols, layers, cfg)
        d_own = sum(np.sum((x - y) ** 2) / np.sum(y**2) for x, y in zip(g, own))
        d_other = sum(np.sum((x - y) ** 2) / np.sum(y**2) for x, y in zip(g, other))
        assert d_own < 0.5 * d_other, (cols, d_own, d_other)


def test_mask_errors(net, images):
    with pytest.raises(UserError, match="one --mask per style"):
        jaxstyle.stylize(images[0], [images[1]], network=net, size=32, steps=1, masks=[np.ones((4, 4)), np.ones((4, 4))])
    with pytest.raises(UserError, match="use one"):
        jaxstyle.stylize(images[0], [images[1]], network=net, size=32, steps=1, masks=[np.ones((4, 4))],
                  style_blend_weights=(1,))
    with pytest.raises(UserError, match="black"):
        jaxstyle.stylize(images[0], [images[1]], network=net, size=32, steps=1, masks=[np.zeros((48, 64))])


@pytest.mark.parametrize("preset", ["gatys", "quality"])
def test_blend_weights_one_zero_give_the_first_style_alone(net, images, preset):
    other = np.random.default_rng(0).integers(0, 256, (30, 50, 3), dtype=np.uint8)
    opts = dict(network=net, preset=preset, size=32, steps=4, initial_steps=4, min_scale=0, chunk=1)
    alone = jaxstyle.stylize(images[0], images[1], **opts)
    blended = jaxstyle.stylize(images[0], [images[1], other], style_blend_weights=(1, 0), **opts)
    assert np.array_equal(alone, blended)
    assert not np.array_equal(alone, jaxstyle.stylize(images[0], [images[1], other], style_blend_weights=(1, 1), **opts))
