"""The benchmark's PyTorch baseline and jaxstyle compute the same thing.

``bench/run.py`` refuses to time a case whose loss terms disagree; this runs that same check
(``bench.run.agreement``) on a tiny case, plus the two hand-written gradients the speed work
added (max pooling, Gram) against PyTorch and numpy float64.
"""

from __future__ import annotations

import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the bench/ folder

from bench import torch_ref  # noqa: E402
from bench.run import CHECK, agreement  # noqa: E402
from helpers import iterate, prepare  # noqa: E402
from jaxstyle.objective import losses  # noqa: E402
from jaxstyle.config import make_config  # noqa: E402
from jaxstyle.model.vgg import conv_specs, max_pool_2x2  # noqa: E402
from jaxstyle.model.weights import WeightsInfo, load_vgg, save_weights  # noqa: E402


# Blocks 1–3 of the full-width VGG19 (content relu3_2, style relu1_1…relu3_1): every kind of
# layer the benchmark's network has (conv, ReLU, max pooling, Gram and content losses) at a
# fraction of its compile time.
LAYERS = dict(content_layers=("relu3_2",), style_layers=("relu1_1", "relu2_1", "relu3_1"))


@pytest.fixture(scope="module")
def weights_path(tmp_path_factory):
    """VGG19 random weights written once by jaxstyle, read by both frameworks from this file.

    The full width, not TINY_WIDTHS: with 4–8 channels a few steps of Adam are chaotic
    enough (sign flips of near-zero gradients) that float32 rounding alone moves the
    terms by 1e-2 after 5 steps; full width agrees to ~1e-5.
    """
    rng = np.random.default_rng(3)
    arrays = {}
    for name, cin, cout in conv_specs("vgg19"):  # He-normal, as build_vgg's random init
        arrays[f"{name}.kernel"] = (rng.standard_normal((3, 3, cin, cout)) * np.sqrt(2 / (9 * cin))).astype(np.float32)
        arrays[f"{name}.bias"] = rng.uniform(-0.05, 0.05, cout).astype(np.float32)
    path = tmp_path_factory.mktemp("w") / "tiny.safetensors"
    save_weights(path, arrays, WeightsInfo("vgg19", "torchvision", "random", False, "random:3", ""))
    return path


def pictures(h=32, w=40):
    rng = np.random.default_rng(5)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    content = np.stack([0.5 + 0.4 * np.sin(7 * xx + 3 * yy + p) for p in (0, 2, 4)], -1)
    content = np.clip(content + 0.05 * rng.standard_normal((h, w, 3)), 0, 1)
    return content.astype(np.float32), rng.uniform(0, 1, (32, 32, 3)).astype(np.float32)


def jax_trace(path, cfg, content, style, n):
    network, _ = load_vgg(path)
    problem = prepare(network, content, [style], cfg)
    trace = []
    for progress in iterate(problem, cfg, chunk=1):
        trace.append({k: v for k, v in progress.terms.items()})
        if len(trace) == n:
            break
    return trace


def torch_trace(path, cfg, content, style, n):
    weights, meta = torch_ref.load_weights(path)
    objective = torch_ref.Objective(torch_ref.TorchVGG(weights), cfg, content, [style])
    run = torch_ref.Run(objective, content, cfg)
    return [{k: v.numpy().copy() for k, v in run.step().items()} for _ in range(n)]


@pytest.mark.parametrize("optimizer,remat", [("adam", "none"), ("lbfgs", "none"), ("adam", "blocks")])
def test_baseline_and_jaxstyle_agree(weights_path, optimizer, remat):
    n, rtol = CHECK[optimizer]
    cfg = make_config("gatys", optimizer=optimizer, steps=n + 1, remat=remat, **LAYERS)
    content, style = pictures()
    ours = jax_trace(weights_path, cfg, content, style, n + 1)
    theirs = torch_trace(weights_path, cfg, content, style, n + 1)
    result = agreement(ours, theirs, [0, n], rtol)  # the benchmark's gate, as it runs it
    assert result["ok"], result
    assert agreement(ours, theirs, [0], 1e-5, rtol0=1e-5)["ok"]  # one evaluation: float32 rounding only
    assert ours[n]["total"][0] < ours[0]["total"][0]  # and both actually optimised


@pytest.mark.parametrize("optimizer", ["adam", "lbfgs"])
def test_clamped_recipes_agree(weights_path, optimizer):
    # time_to_image --clamp runs clamped recipes: the baseline must project onto the pixel box as
    # jaxstyle does (after the update, outside L-BFGS's history). The content has pixels at 0
    # and 1, so the first updates push some of them out and the projection matters: the
    # unclamped baseline must not pass the same gate. L-BFGS: two steps (its first one is
    # t = 1/|g|_1, too short to leave the box; the second leaves it by far).
    n, rtol = CHECK[optimizer]
    n = max(n, 2)
    cfg = make_config("gatys", optimizer=optimizer, steps=n + 1, clamp=True, **LAYERS)
    content, style = pictures()
    ours = jax_trace(weights_path, cfg, content, style, n + 1)
    theirs = torch_trace(weights_path, cfg, content, style, n + 1)
    assert agreement(ours, theirs, [0, n], rtol)["ok"], agreement(ours, theirs, [0, n], rtol)
    unclamped = torch_trace(weights_path, make_config("gatys", optimizer=optimizer, steps=n + 1, **LAYERS), content, style, n + 1)
    assert not agreement(ours, unclamped, [n], rtol)["ok"]


def test_agreement_check_refuses_a_different_recipe(weights_path):
    # The gate must fail when the baseline runs something else (here: style weight ×1.01).
    cfg = make_config("gatys", optimizer="adam", steps=2, **LAYERS)
    content, style = pictures()
    ours = jax_trace(weights_path, cfg, content, style, 1)
    theirs = torch_trace(weights_path, make_config("gatys", optimizer="adam", style_weight=1010.0, **LAYERS), content, style, 1)
    assert not agreement(ours, theirs, [0], 1e-3)["ok"]


@pytest.mark.parametrize("shape", [(1, 6, 8, 3), (2, 7, 9, 2)])
def test_max_pool_gradient_routes_like_torch(shape):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 3, shape).astype(np.float32)  # many ties within windows
    g = rng.standard_normal((shape[0], shape[1] // 2, shape[2] // 2, shape[3])).astype(np.float32)
    y, vjp = jax.vjp(max_pool_2x2, jnp.asarray(x))
    (ours,) = vjp(jnp.asarray(g))
    tx = torch.from_numpy(x.transpose(0, 3, 1, 2).copy()).requires_grad_(True)
    ty = torch.nn.functional.max_pool2d(tx, 2, 2)
    ty.backward(torch.from_numpy(g.transpose(0, 3, 1, 2).copy()))
    np.testing.assert_array_equal(np.asarray(y), ty.detach().numpy().transpose(0, 2, 3, 1))
    np.testing.assert_array_equal(np.asarray(ours), tx.grad.numpy().transpose(0, 2, 3, 1))


def test_gram_gradient_matches_float64_formula():
    rng = np.random.default_rng(1)
    f = rng.standard_normal((5, 6, 7))
    w = rng.standard_normal((7, 7))  # not symmetric
    with jax.enable_x64(True):
        grad = jax.grad(lambda x: jnp.sum(jnp.asarray(w) * losses.gram(x, "chw")))(jnp.asarray(f))
    flat = f.reshape(30, 7)
    expected = (flat @ (w + w.T) / (30 * 7)).reshape(5, 6, 7)
    np.testing.assert_allclose(np.asarray(grad), expected, rtol=1e-12)
