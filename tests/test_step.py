"""The jitted step: compiled once per shape, deterministic, stops on NaN, and optimises.

All runs use a narrow VGG19 (helpers.TINY_WIDTHS) and images of at most 32 px.
"""

from __future__ import annotations

import numpy as np

import jaxstyle
import pytest
from PIL import Image

from helpers import iterate, load_inputs, prepare, tiny_net, write_image
from jaxstyle.config import make_config
from jaxstyle.engine import loop
from jaxstyle.errors import UserError
from jaxstyle.model.pixels import CAFFE_MEAN_BGR


# Shallow layers keep compiles short where depth is not the point.
SHALLOW = dict(content_layers=("relu3_1",), style_layers=("relu1_1", "relu2_1", "relu3_1"))


def run(content, style, net, **options):
    return jaxstyle.stylize(str(content), str(style), network=net, **options)


def test_compiles_once_per_shape(images, net, count_compiles):
    content, style = images
    compiles = count_compiles  # XLA compiles by jitted function name; the jit caches start empty
    opts = dict(size=32, steps=3, optimizer="adam", content_weight=1.2345, chunk=1, **SHALLOW)
    other = tiny_net(5)  # built before counting: its random init compiles programs of its own
    run(content, style, net, **opts)
    assert compiles("chunk") == 1  # three chunks, one program
    assert compiles("init") == 1
    first = compiles()
    init, features = compiles("init"), compiles("features")
    # Same shapes, other weights (a fresh network object): nothing is compiled again.
    run(content, style, other, **opts)
    assert compiles() == first
    # Nor for options that only steer the run around the step: steps, seed, start, chunk.
    run(content, style, net, **dict(opts, steps=4, seed=3, init="random", chunk=2))
    assert compiles("chunk") == 2  # a chunk of 2 steps is another program
    run(content, style, net, **dict(opts, steps=5, seed=4, init="random", chunk=2))
    assert compiles("chunk") == 2
    assert (compiles("init"), compiles("features")) == (init, features)
    # A new image shape: exactly one more compile of the step and of the initial state.
    run(content, style, net, **dict(opts, size=28))
    assert compiles("chunk") == 3
    assert compiles("init") == 2


def test_same_seed_same_image_other_seed_other_image(images, net):
    content, style = images
    opts = dict(size=24, steps=2, optimizer="adam", init="random", **SHALLOW)
    a = run(content, style, net, seed=7, **opts)
    b = run(content, style, net, seed=7, **opts)
    c = run(content, style, net, seed=8, **opts)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).mean() > 0.05  # independent uniform noise differs by ~1/3 on average


def test_nan_loss_stops_with_a_user_error(images, net):
    content, style = images
    # Adam moves every pixel by ~lr: at 1e30 the features overflow float32 on step 2.
    with pytest.raises(UserError, match=r"loss became (nan|inf).*--lr") as err:
        run(content, style, net, size=24, steps=5, optimizer="adam", lr=1e30, **SHALLOW)
    assert "\n" not in str(err.value)


def test_steps_zero_returns_the_initial_image(images, net):
    content, style = images
    out = run(content, style, net, size=64, steps=0, **SHALLOW)
    want = np.asarray(Image.open(content).convert("RGB"), np.float32) / 255
    np.testing.assert_array_equal(out, want)
    # neural-style-pt's init: randn·0.001 in Caffe space, i.e. the mean pixel.
    grey = run(content, style, net, size=24, steps=0, preset="nspt", **SHALLOW)
    np.testing.assert_allclose(grey, np.broadcast_to(np.array(CAFFE_MEAN_BGR[::-1]) / 255, grey.shape), atol=1e-4)


def test_init_from_an_image_path(tmp_path, images, net):
    content, style = images
    init = write_image(tmp_path / "start.png", 48, 64, seed=9)
    out = run(content, style, net, size=64, steps=0, init=str(init), **SHALLOW)
    np.testing.assert_array_equal(out, np.asarray(Image.open(init), np.float32) / 255)
    # At another size the init image is resized to the content's size (PIL bilinear).
    out = run(content, style, net, size=32, steps=0, init=str(init), **SHALLOW)
    want = np.asarray(Image.open(init).resize((32, 24), Image.Resampling.BILINEAR), np.float32) / 255
    np.testing.assert_array_equal(out, want)
    moved = run(content, style, net, size=32, steps=2, optimizer="adam", init=str(init), **SHALLOW)
    assert moved.shape == (24, 32, 3) and 0 < np.abs(moved - want).max() < 0.1
    with pytest.raises(UserError, match="nope.png"):
        run(content, style, net, size=32, steps=1, init=str(tmp_path / "nope.png"), **SHALLOW)


@pytest.mark.parametrize("optimizer", ["adam", "lbfgs", "lbfgs-zoom"])
def test_loss_falls(images, net, optimizer):
    content, style = images
    cfg = make_config(size=24, steps=20, optimizer=optimizer, **SHALLOW)
    content_f, styles_f, _ = load_inputs(str(content), [str(style)], cfg)
    trace = np.array([float(p.terms["total"][0]) for p in iterate(prepare(net, content_f, styles_f, cfg), cfg, chunk=1)])
    assert len(trace) == 20 and np.isfinite(trace).all()
    assert trace[-1] < 0.1 * trace[0], trace
    if optimizer == "lbfgs-zoom":
        # The zoom line search enforces sufficient decrease: the loss never rises.
        assert np.all(np.diff(trace) <= 1e-6 * trace[0]), trace


def test_ema_result_is_the_bias_corrected_average_of_the_iterates(images, net):
    content, style = images
    decay = 0.8
    cfg = make_config(size=24, steps=5, optimizer="adam", ema_decay=decay, **SHALLOW)
    content_f, styles_f, _ = load_inputs(str(content), [str(style)], cfg)
    problem = prepare(net, content_f, styles_f, cfg)
    iterates = [np.asarray(problem.init[0], np.float64)]
    final = None
    for progress in iterate(problem, cfg, chunk=1):
        iterates.append(np.asarray(progress.state.image[0], np.float64))
        final = progress
    # Adam's bias-corrected moment, applied to the iterates x_0 (the init) ... x_5.
    m = np.zeros_like(iterates[0])
    for x in iterates:
        m = decay * m + (1 - decay) * x
    want = np.clip(m / (1 - decay ** len(iterates)), 0, 1)
    got = loop.final_images(problem, final.state)[0]
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-6)
    assert np.abs(got - np.clip(iterates[-1], 0, 1)).max() > 1e-3  # not just the last iterate


def test_image_too_small_for_the_deepest_layer(net):
    cfg = make_config()  # style up to relu5_1: 16 px
    small = np.zeros((12, 40, 3), np.float32)
    ok = np.zeros((16, 16, 3), np.float32)
    with pytest.raises(UserError, match=r"content image is 40×12.*>= 16 px.*--size"):
        prepare(net, small, [ok], cfg)
    with pytest.raises(UserError, match=r"style image .*>= 16 px"):
        prepare(net, ok, [small], cfg)
    # The message names the layer that needs the size (pool5: 32 px), not a later name.
    deep = make_config(content_layers=("pool5",), style_layers=("relu1_1", "relu5_1"))
    with pytest.raises(UserError, match=r"content image .*layer pool5: each side must be >= 32 px"):
        prepare(net, np.zeros((24, 40, 3), np.float32), [ok], deep)
    with pytest.raises(UserError, match=r"style image .*layer relu5_1: each side must be >= 16 px"):
        prepare(net, np.zeros((32, 32, 3), np.float32), [small], deep)
