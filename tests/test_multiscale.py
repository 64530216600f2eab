"""The coarse-to-fine schedule of the quality preset, against numbers worked out by hand
from crowsonkb's formula and against a PyTorch re-run of crowsonkb's loop."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import jaxstyle
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from helpers import tiny_net_float64, torch_conv_params, torch_tv, torch_vgg, torch_w2

from jaxstyle.io import image as imageio
from helpers import prepare
from jaxstyle.engine import loop
from jaxstyle.engine import scales as engine_scales
from jaxstyle.engine.resample import resize
from jaxstyle.plan import scales as multiscale
from jaxstyle.config import make_config


def test_gen_scales_by_hand():
    # round(end / 2^(i/2)) for i = 0, 1, … while >= start, e.g. 512/√2 = 362.04, 512/2^1.5 = 181.02.
    assert multiscale.gen_scales(128, 512) == [128, 181, 256, 362, 512]
    assert multiscale.gen_scales(128, 1024) == [128, 181, 256, 362, 512, 724, 1024]
    assert multiscale.gen_scales(128, 500) == [177, 250, 354, 500]  # 500/2^2 = 125 < 128
    assert multiscale.gen_scales(128, 2048) == [128, 181, 256, 362, 512, 724, 1024, 1448, 2048]
    assert multiscale.gen_scales(100, 100) == [100]


def test_quality_schedule_sizes_and_steps():
    cfg = make_config("quality")  # size 512
    scales = multiscale.schedule(427, 640, cfg)
    # Short side round(427·s/640): 85.4, 120.8, 170.8, 241.5, 341.6.
    assert [(s.width, s.height) for s in scales] == [(128, 85), (181, 121), (256, 171), (362, 242), (512, 342)]
    assert [s.steps for s in scales] == [1000, 500, 500, 500, 500]
    assert multiscale.total_steps(cfg) == 3000
    portrait = multiscale.schedule(640, 427, make_config("quality", size=1024))
    assert [(s.width, s.height) for s in portrait][-3:] == [(342, 512), (483, 724), (683, 1024)]  # 341.6, 483.0, 683.2
    assert multiscale.total_steps(make_config("quality", size=1024)) == 4000
    # Below min_scale there is one scale, which gets the initial steps (crowsonkb's min()).
    small = multiscale.schedule(48, 64, make_config("quality", size=64))
    assert [(s.width, s.height, s.steps) for s in small] == [(64, 48, 1000)]
    assert multiscale.schedule(48, 64, make_config("gatys", size=64)) == [multiscale.Scale(64, 48, 64, 500)]
    # A 10:1 panorama: short sides 12.8→13, 18.1→18, 25.6→26, 36.2→36, 51.2→51; the first
    # is below relu5_1's 16 px and left out, the next one gets the initial steps.
    pano = multiscale.schedule(40, 400, cfg, min_side=16)
    assert [(s.width, s.height, s.steps) for s in pano] == [(181, 18, 1000), (256, 26, 500), (362, 36, 500), (512, 51, 500)]
    assert multiscale.total_steps(cfg, 40, 400, 16) == 2500


@pytest.mark.parametrize("kind", ["bicubic", "bilinear"])
@pytest.mark.parametrize("src,dst", [((34, 45), (48, 64)), ((85, 128), (121, 181)), ((7, 9), (7, 9)), ((20, 30), (13, 17))])
def test_resize_matches_torch_interpolate(kind, src, dst):
    x = np.random.default_rng(1).standard_normal((2, *src, 3))
    with jax.enable_x64(True):
        ours = np.asarray(resize(jnp.asarray(x), *dst, kind))
    ref = F.interpolate(torch.from_numpy(x).permute(0, 3, 1, 2), dst, mode=kind, align_corners=False)
    np.testing.assert_allclose(ours, ref.permute(0, 2, 3, 1).numpy(), rtol=0, atol=1e-12)


def test_wrapped_resize_has_no_seam():
    # With wrap-around, resizing commutes with circular shifts (2 of 16 px = 3 of 24 px):
    # no position, the image edge included, is special.
    x = np.random.default_rng(2).standard_normal((1, 16, 10, 3))
    with jax.enable_x64(True):
        for kind in ("bicubic", "bilinear"):
            y = np.asarray(resize(jnp.asarray(x), 24, 15, kind, wrap=True))
            y_shifted = np.asarray(resize(jnp.asarray(np.roll(x, (2, 2), (1, 2))), 24, 15, kind, wrap=True))
            np.testing.assert_allclose(y_shifted, np.roll(y, (3, 3), (1, 2)), rtol=0, atol=1e-12)
            # Without wrap the edges are clamped, so the same shift does not commute.
            z = np.asarray(resize(jnp.asarray(x), 24, 15, kind))
            z_shifted = np.asarray(resize(jnp.asarray(np.roll(x, (2, 2), (1, 2))), 24, 15, kind))
            assert np.abs(z_shifted - np.roll(z, (3, 3), (1, 2))).max() > 0.1


# ---------------------------------------------- crowsonkb's loop, re-run in PyTorch


def crowsonkb_loop(content_u8, style_u8, kernels, biases, sizes, steps):
    """crowsonkb's ``StyleTransfer.stylize`` (quality settings) in float64 torch."""
    layers = ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"]
    to_t = lambda a: torch.from_numpy(a.astype(np.float64).transpose(2, 0, 1)[None] / 255)  # noqa: E731
    pil = lambda a, w, h: np.asarray(Image.fromarray(a).resize((w, h), Image.BICUBIC))  # noqa: E731
    image, opt, ema = to_t(pil(content_u8, *sizes[0])), None, None
    for k, (w, h) in enumerate(sizes):
        content = to_t(pil(content_u8, w, h))
        image = F.interpolate(image.detach(), (h, w), mode="bicubic").clamp(0, 1)
        ema_value, ema_accum = 0.01 * image, 0.99  # EMA(image, 0.99)
        image.requires_grad_()
        fc = torch_vgg(content, kernels, biases, {"relu4_2"})["relu4_2"]
        fs = torch_vgg(to_t(style_u8), kernels, biases, set(layers))  # 40×40 style: never enlarged
        new = torch.optim.Adam([image], lr=0.02, betas=(0.9, 0.99))
        if k:
            state = opt.state_dict()
            for s in state["state"].values():
                s["exp_avg"] = F.interpolate(s["exp_avg"], (h, w), mode="bicubic")
                s["exp_avg_sq"] = F.interpolate(s["exp_avg_sq"], (h, w), mode="bilinear").relu_()
            new.load_state_dict(state)
        opt = new
        for _ in range(steps[k]):
            opt.zero_grad()
            fx = torch_vgg(image, kernels, biases, set(layers) | {"relu4_2"})
            loss = 0.015 * F.mse_loss(fx["relu4_2"], fc) + 2.0 * torch_tv(image)
            for name, lw in zip(layers, (256, 64, 16, 4, 1)):
                t = fs[name][0]
                srm = torch.einsum("chw,dhw->cd", t, t) / (t.shape[1] * t.shape[2])
                loss = loss + lw / 341 * torch_w2(fx[name], t.mean([-2, -1]), srm)
            loss.backward()
            opt.step()
            with torch.no_grad():
                image.clamp_(0, 1)
                ema_accum *= 0.99
                ema_value = 0.99 * ema_value + 0.01 * image.detach()
        with torch.no_grad():
            image = (ema_value / (1 - ema_accum)).clone()
    return image[0].clamp(0, 1).numpy().transpose(1, 2, 0)


@pytest.mark.slow
def test_two_scales_match_crowsonkb_loop(images):
    content_u8, style_u8 = imageio.load_image(images[0]), imageio.load_image(images[1])  # 64×48, 40×40
    cfg = make_config("quality", size=64, min_scale=45, initial_steps=3, steps=2)
    scales = multiscale.schedule(48, 64, cfg)
    assert [(s.width, s.height, s.steps) for s in scales] == [(45, 34, 3), (64, 48, 2)]
    with jax.enable_x64(True):
        net = tiny_net_float64(7)

        def build(scale, init):
            c = imageio.resize_to(content_u8, scale.height, scale.width, resample="bicubic") / np.float64(255)
            problem = prepare(net, c, [style_u8 / np.float64(255)], cfg)
            if init is not None:
                problem.init = init
            return problem

        solved, state = engine_scales.solve(build, scales, cfg.recipe, chunk=1)
        ours = loop.final_images(solved, state)[0]
        kernels, biases = torch_conv_params(net)
    ref = crowsonkb_loop(content_u8, style_u8, kernels, biases, [(45, 34), (64, 48)], [3, 2])
    assert ours.dtype == np.float64
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-9)


def test_the_result_is_the_averaged_iterate(images, net):
    # Record every iterate through the callback and average them independently.
    iterates = []

    def record(p):
        iterates.append(np.array(p.state.image[0], np.float64))

    out = jaxstyle.stylize(images[0], images[1], network=net, preset="quality", size=32, initial_steps=6,
                    callback=record, chunk=1)
    assert len(iterates) == 6
    start = imageio.to_float(imageio.resize_to(imageio.load_image(images[0]), 24, 32, resample="bicubic"))
    value, accum = 0.01 * start.astype(np.float64), 0.99
    for x in iterates:
        value, accum = 0.99 * value + 0.01 * x, accum * 0.99
    ema = np.clip(value / (1 - accum), 0, 1)
    np.testing.assert_allclose(out, ema, rtol=0, atol=2e-6)
    assert np.abs(out - iterates[-1]).max() > 1e-3  # and it is not the last iterate


def test_coarse_to_fine_in_caffe_pixels(images, net):
    # The carry-over between scales clamps to the pixel box inside the compiled program; in
    # Caffe pixels that box is not [0, 1] (a jnp computation there once failed to trace).
    from jaxstyle.model.pixels import bounds

    lo, hi = bounds("caffe")
    np.testing.assert_allclose(lo, -np.array([103.939, 116.779, 123.68], np.float32), rtol=1e-6)
    np.testing.assert_allclose(hi, 255 - np.array([103.939, 116.779, 123.68], np.float32), rtol=1e-6)
    out = jaxstyle.stylize(images[0], images[1], network=net, preset="nspt", size=32, min_scale=16,
                           initial_steps=2, steps=2, chunk=1)
    assert out.shape == (24, 32, 3) and np.isfinite(out).all()
