"""Texture synthesis (plain and tileable) and inpainting, through the API and the CLI."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import write_image
from PIL import Image

from jaxstyle.api import inpaint as I
from jaxstyle.api import texture as T
from jaxstyle.errors import UserError
from jaxstyle.engine import targets as T_engine
from jaxstyle.objective.terms import Targets, loss_terms, total


def smooth_style(h=40, w=40, seed=4):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / 10
    img = np.stack([np.sin(a * xx + b * yy + p) for a, b, p in rng.uniform(-1.5, 1.5, (3, 3))], -1)
    return (np.clip(0.5 + 0.4 * img, 0, 1) * 255).astype(np.uint8)


def test_texture_style_loss_falls_and_has_the_asked_size(net):
    seen = []
    out = T.texture(smooth_style(), size=(40, 24), network=net, steps=20, callback=seen.append, chunk=1)
    assert out.shape == (24, 40, 3) and out.dtype == np.float32
    style = [sum(float(v[0]) for k, v in p.terms.items() if k.startswith("style:")) for p in seen]
    assert style[-1] < 0.2 * style[0], style
    assert "content" not in seen[-1].terms


def seams(img):
    """(wrap-around difference, mean interior neighbour difference), rows and columns."""
    x = img.astype(np.float64)
    rows = (np.abs(x[0] - x[-1]).mean(), np.abs(np.diff(x, axis=0)).mean())
    cols = (np.abs(x[:, 0] - x[:, -1]).mean(), np.abs(np.diff(x, axis=1)).mean())
    return rows, cols


def test_tileable_texture_has_no_seam(net):
    # Smoothed by TV so that neighbours are alike; its wrap-around is part of --tileable.
    opts = dict(size=48, network=net, steps=60, seed=3, tv_loss="l2_nine_point", tv_weight=1e3, chunk=1)
    tiled = T.texture(smooth_style(), tileable=True, **opts)
    for wrap, interior in seams(tiled):
        assert wrap <= 1.1 * interior, (wrap, interior)
    # The same synthesis without wrap-around has seams: the measure can fail.
    plain = T.texture(smooth_style(), **opts)
    assert all(wrap > 2 * interior for wrap, interior in seams(plain)), seams(plain)


def test_tileable_loss_does_not_see_the_image_edge(net):
    cfg = T.texture_config(tileable=True, size=48)
    targets = Targets(style=_targets(net, cfg))
    x = jnp.asarray(np.random.default_rng(0).uniform(0, 1, (32, 48, 3)), jnp.float32)
    value = float(total(loss_terms(x, targets, net, cfg.recipe)))
    shifted = float(total(loss_terms(jnp.roll(x, (16, 16), (0, 1)), targets, net, cfg.recipe)))
    assert abs(shifted - value) <= 1e-5 * value
    plain = T.texture_config(size=48)
    assert abs(float(total(loss_terms(jnp.roll(x, (16, 16), (0, 1)), targets, net, plain.recipe)))
               - float(total(loss_terms(x, targets, net, plain.recipe)))) > 1e-3 * value


def _targets(net, cfg):
    return T_engine.style_targets(net, [smooth_style() / np.float32(255)], cfg.recipe)


def test_texture_size_parsing_and_errors():
    assert T.parse_size("64") == (64, 64) and T.parse_size("96x48") == (96, 48)
    assert T.tile_shape(50, 70, 16) == (48, 64)
    with pytest.raises(UserError, match="WxH"):
        T.parse_size("12by3")
    with pytest.raises(UserError, match="content image"):
        T.texture_config(preserve_color="luminance")


def hole_mask(h, w):
    m = np.zeros((h, w), np.uint8)
    m[15:33, 20:47] = 255
    return m


def test_inpaint_changes_only_the_hole(net, tmp_path):
    image = np.asarray(Image.open(write_image(tmp_path / "img.png", 50, 70, 8)))
    mask = hole_mask(50, 70)
    out = I.inpaint(image, mask, network=net, size=32, steps=10, chunk=1)  # works at 32 px, writes 70×50
    assert out.shape == image.shape and out.dtype == np.uint8
    hole = mask >= 128
    assert np.array_equal(out[~hole], image[~hole])
    assert np.abs(out[hole].astype(int) - image[hole]).mean() > 5


def test_inpaint_errors(net):
    image = np.full((40, 40, 3), 100, np.uint8)
    with pytest.raises(UserError, match="nothing to fill"):
        I.inpaint(image, np.zeros((40, 40)), network=net, steps=1)
    with pytest.raises(UserError, match="white everywhere"):
        I.inpaint(image, np.ones((40, 40)), network=net, steps=1)


def test_pull_push_fills_smoothly_from_the_border():
    img = np.zeros((16, 16, 3))
    img[:, :8], img[:, 8:] = 0.2, 0.8
    known = np.ones((16, 16), bool)
    known[4:12, 4:12] = False
    filled = I.pull_push(img * known[..., None], known)
    assert np.array_equal(filled[known], img[known])
    assert 0.2 - 1e-12 <= filled[~known].min() and filled[~known].max() <= 0.8 + 1e-12
    assert filled[8, 4, 0] < filled[8, 11, 0]  # the left of the hole takes the left's colour


# ------------------------------------------------------------------------------- CLI


def run_cli(args):
    from jaxstyle.cli.main import main

    return main(args + ["--weights", "random:0", "-q", "--chunk", "1"])


def test_cli_texture_tileable(tmp_path):
    write_image(tmp_path / "style.png", 40, 40, 6)
    out = tmp_path / "tex.png"
    assert run_cli(["texture", str(tmp_path / "style.png"), "-o", str(out), "--size", "48x32", "--tileable",
                    "--steps", "5"]) == 0
    assert Image.open(out).size == (48, 32)


def test_cli_inpaint_keeps_every_other_pixel(tmp_path):
    src = write_image(tmp_path / "img.png", 50, 70, 9)
    Image.fromarray(hole_mask(50, 70)).save(tmp_path / "mask.png")
    out = tmp_path / "filled.png"
    assert run_cli(["inpaint", str(src), "--mask", str(tmp_path / "mask.png"), "-o", str(out), "--size", "48",
                    "--steps", "5"]) == 0
    a, b = np.asarray(Image.open(src).convert("RGB")), np.asarray(Image.open(out).convert("RGB"))
    hole = hole_mask(50, 70) >= 128
    assert b.shape == a.shape and np.array_equal(a[~hole], b[~hole]) and not np.array_equal(a[hole], b[hole])


def test_chroma_term_in_the_step_matches_numpy_and_wraps_for_tileable(net):
    """``Targets.chroma``: weight · mean over the mask of |ΔCb|² + |ΔCr|² (BT.601, 0-255
    units), the Laplacian read periodically when the padding is circular."""
    from jaxstyle.objective.chroma import Chroma

    rng = np.random.default_rng(7)
    img = rng.uniform(0, 1, (16, 24, 3))
    rows = np.array([[-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]])  # JPEG's Cb, Cr
    cc = 255 * img @ rows.T
    for tileable, mode in ((False, "edge"), (True, "wrap")):
        cfg = T.texture_config(tileable=tileable, size=24, style_layers=("relu1_1",))
        targets = Targets(style=_targets(net, cfg), chroma=Chroma(jnp.float32(3.0), jnp.ones((16, 24, 1))))
        x = jnp.asarray(img, jnp.float32)
        from jaxstyle.model import pixels
        got = float(loss_terms(pixels.from_rgb01(x, cfg.recipe.pixel_space), targets, net, cfg.recipe)["chroma"])
        p = np.pad(cc, ((1, 1), (1, 1), (0, 0)), mode=mode)
        lap = p[:-2, 1:-1] + p[2:, 1:-1] + p[1:-1, :-2] + p[1:-1, 2:] - 4 * cc
        np.testing.assert_allclose(got, 3.0 * np.sum(lap ** 2) / (16 * 24), rtol=1e-4)
