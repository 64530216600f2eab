"""Loss terms and their gradients equal independent float64 implementations.

Values are checked against numpy (float64) written from the README's formulas;
gradients against PyTorch float64 autograd of separate torch implementations. The
whole objective (``step.loss_terms``) is checked on a tiny VGG19 against a torch VGG with
the same weights, for both presets.
"""

from __future__ import annotations


import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from jaxstyle.objective import losses
from jaxstyle.config import make_config
from jaxstyle.objective.terms import loss_terms, total
from helpers import IMAGENET_MEAN, IMAGENET_STD, caffe_input, layout, ours, prepare, random_weights, reference, single_targets


RNG = np.random.default_rng(0)


# ----------------------------------------------------------------------------- numpy


def np_gram(f, norm):
    h, w, c = f.shape
    m = f.reshape(h * w, c)
    return m.T @ m / (h * w * (c if norm == "chw" else 1))


def np_content(f, target):
    return np.mean((f - target) ** 2)


def np_style(f, target_gram, norm):
    return np.mean((np_gram(f, norm) - target_gram) ** 2)


def np_tv_l1_sum(x):
    return np.abs(np.diff(x, axis=0)).sum() + np.abs(np.diff(x, axis=1)).sum()


def torch_tv_nine_point(x, mode="replicate"):
    """crowsonkb/style-transfer-pytorch's ``TVLoss`` (NCHW), its factor 2 included."""
    x = F.pad(x, (1, 1, 1, 1), mode)
    s1, s2, s3, s4 = slice(1, -1), slice(2, None), slice(None, -1), slice(1, None)
    d1 = (x[..., s1, s2] - x[..., s1, s1]).pow(2).mean() / 3
    d2 = (x[..., s2, s1] - x[..., s1, s1]).pow(2).mean() / 3
    d3 = (x[..., s4, s4] - x[..., s3, s3]).pow(2).mean() / 12
    d4 = (x[..., s4, s3] - x[..., s3, s4]).pow(2).mean() / 12
    return 2 * (d1 + d2 + d3 + d4)


def torch_grad(fn, x):
    t = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    fn(t).backward()
    return t.grad.numpy()


def jax_value_and_grad(fn, x):
    with jax.enable_x64(True):
        value, grad = jax.value_and_grad(fn)(jnp.asarray(x, jnp.float64))
        assert grad.dtype == jnp.float64
        return float(value), np.asarray(grad)


def features(h=5, w=7, c=6):
    return RNG.standard_normal((h, w, c))


# ----------------------------------------------------------------------------- single terms


@pytest.mark.parametrize("norm", ["hw", "chw"])
def test_gram(norm):
    f = features()
    with jax.enable_x64(True):
        got = np.asarray(losses.gram(jnp.asarray(f), norm))
    np.testing.assert_allclose(got, np_gram(f, norm), rtol=1e-12)
    # float32 features, as the pipeline runs: accumulated in float32, close to float64.
    got32 = np.asarray(losses.gram(jnp.asarray(f, jnp.float32), norm))
    np.testing.assert_allclose(got32, np_gram(f, norm), rtol=1e-5, atol=1e-6)


def test_content_loss_and_gradient():
    f, target = features(), features()
    value, grad = jax_value_and_grad(lambda x: losses.content_loss(x, jnp.asarray(target)), f)
    np.testing.assert_allclose(value, np_content(f, target), rtol=1e-12)
    ref = torch_grad(lambda t: ((t - torch.from_numpy(target)) ** 2).mean(), f)
    np.testing.assert_allclose(grad, ref, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("norm", ["hw", "chw"])
def test_gram_style_loss_and_gradient(norm):
    f, other = features(), features()
    target = np_gram(other, norm)

    def torch_style(t):
        m = t.reshape(-1, t.shape[-1])
        g = m.T @ m / (m.shape[0] * (m.shape[1] if norm == "chw" else 1))
        return ((g - torch.from_numpy(target)) ** 2).mean()

    value, grad = jax_value_and_grad(lambda x: losses.gram_style_loss(x, jnp.asarray(target), norm), f)
    np.testing.assert_allclose(value, np_style(f, target, norm), rtol=1e-12)
    ref = torch_grad(torch_style, f)
    np.testing.assert_allclose(grad, ref, rtol=1e-10, atol=1e-14 * np.abs(ref).max())


def test_tv_l1_sum_and_its_gradient_at_flat_regions():
    # Quantised pixels: many neighbour differences are exactly 0, where the gradient of
    # |d| must be sign(0) = 0 (torch's abs), not 1.
    x = np.round(RNG.uniform(0, 1, (9, 11, 3)) * 3) / 3
    assert np.sum(np.diff(x, axis=0) == 0) > 20
    value, grad = jax_value_and_grad(losses.tv_l1_sum, x)
    np.testing.assert_allclose(value, np_tv_l1_sum(x), rtol=1e-12)
    ref = torch_grad(lambda t: (t[1:] - t[:-1]).abs().sum() + (t[:, 1:] - t[:, :-1]).abs().sum(), x)
    np.testing.assert_array_equal(grad, ref)  # small integers: exact
    flat = np.full((4, 5, 3), 0.5)
    assert jax_value_and_grad(losses.tv_l1_sum, flat)[1].tolist() == np.zeros_like(flat).tolist()


@pytest.mark.parametrize("wrap", [False, True])
def test_tv_l2_nine_point_matches_crowsonkb_stencil(wrap):
    x = RNG.uniform(0, 1, (9, 11, 3))
    mode = "circular" if wrap else "replicate"
    to_nchw = lambda t: t.permute(2, 0, 1)[None]  # noqa: E731
    value, grad = jax_value_and_grad(lambda x: losses.tv_l2_nine_point(x, wrap=wrap), x)
    ref_value = float(torch_tv_nine_point(to_nchw(torch.from_numpy(x)), mode))
    np.testing.assert_allclose(value, ref_value, rtol=1e-12)
    ref = torch_grad(lambda t: torch_tv_nine_point(to_nchw(t), mode), x)
    np.testing.assert_allclose(grad, ref, rtol=1e-10, atol=1e-16)
    # A constant image has no variation, even at the border.
    assert float(losses.tv_l2_nine_point(jnp.full((4, 5, 3), 0.3), wrap=wrap)) == 0.0


def test_blend_is_a_normalised_weighted_sum():
    from jaxstyle.engine.compiled import blend_style

    a, b = RNG.standard_normal((4, 4)), RNG.standard_normal((4, 4))
    with jax.enable_x64(True):
        got = blend_style([{"gram": jnp.asarray(a)}, {"gram": jnp.asarray(b)}], jnp.asarray([3.0, 1.0]))
        np.testing.assert_allclose(np.asarray(got["gram"]), 0.75 * a + 0.25 * b, rtol=1e-14)
        one = blend_style([{"gram": jnp.asarray(a)}], jnp.asarray([5.0]))
        np.testing.assert_allclose(np.asarray(one["gram"]), a, rtol=1e-14)


# ----------------------------------------------------------------------------- whole objective


def torch_objective(seq, names, cfg, to_input, content, styles, blend):
    """neural-style's objective written directly in torch: returns a function of x (HWC)."""

    def feats(x_hwc, wanted):
        out, h = {}, to_input(x_hwc)
        for name, layer in zip(names, seq):
            h = layer(h)
            if name in wanted:
                out[name] = h[0].permute(1, 2, 0)  # HWC
            if not set(wanted) - out.keys():
                return out

    def gram(f):
        m = f.reshape(-1, f.shape[-1])
        return m.T @ m / (m.shape[0] * (m.shape[1] if cfg.gram_norm == "chw" else 1))

    with torch.no_grad():
        c_feats = feats(torch.from_numpy(content), cfg.content_layers)
        s_grams = {n: 0 for n in cfg.style_layers}
        for style, w in zip(styles, np.asarray(blend) / np.sum(blend)):
            sf = feats(torch.from_numpy(style), cfg.style_layers)
            for n in cfg.style_layers:
                s_grams[n] = s_grams[n] + float(w) * gram(sf[n])
    lw = np.ones(len(cfg.style_layers)) if cfg.style_layer_weights is None else np.asarray(cfg.style_layer_weights)
    if cfg.normalize_layer_weights:
        lw = lw / lw.sum()

    def objective(x):
        f = feats(x, cfg.all_layers)
        terms = {"content": cfg.content_weight * sum(((f[n] - c_feats[n]) ** 2).mean() for n in cfg.content_layers)}
        for n, w in zip(cfg.style_layers, lw):
            terms[f"style:{n}"] = cfg.style_weight * float(w) * ((gram(f[n]) - s_grams[n]) ** 2).mean()
        if cfg.tv_weight:
            terms["tv"] = cfg.tv_weight * ((x[1:] - x[:-1]).abs().sum() + (x[:, 1:] - x[:, :-1]).abs().sum())
        return terms

    return objective


@pytest.mark.parametrize("preset", ["gatys", "nspt"])
def test_loss_terms_and_gradient_on_tiny_vgg19(preset):
    weights = random_weights("vgg19", True, seed=3)
    names = [n for n, _, _ in layout("vgg19", True)]
    convention = "caffe" if preset == "nspt" else "torchvision"
    content = RNG.uniform(0, 1, (20, 24, 3))
    styles = [RNG.uniform(0, 1, (20, 24, 3)), RNG.uniform(0, 1, (20, 24, 3))]  # one shape: one compile
    blend = (3.0, 1.0)
    cfg = make_config(preset, style_blend_weights=blend, init="content")
    if preset == "nspt":
        # Pixels live in Caffe space; the torch network takes them unchanged.
        probe = caffe_input(RNG.uniform(0, 1, content.shape))[0].transpose(1, 2, 0)
        to_input = lambda x: x.permute(2, 0, 1)[None]  # noqa: E731
        torch_images = [caffe_input(i)[0].transpose(1, 2, 0).copy() for i in (content, *styles)]
    else:
        probe = RNG.uniform(0, 1, content.shape)
        mean, std = torch.from_numpy(IMAGENET_MEAN), torch.from_numpy(IMAGENET_STD)
        to_input = lambda x: ((x - mean) / std).permute(2, 0, 1)[None]  # noqa: E731
        torch_images = [content, *styles]
    seq = reference("vgg19", weights, True)
    objective = torch_objective(seq, names, cfg.recipe, to_input, torch_images[0], torch_images[1:], blend)
    x = torch.tensor(probe, requires_grad=True)
    ref_terms = objective(x)
    sum(ref_terms.values()).backward()
    ref_grad = x.grad.numpy()

    with jax.enable_x64(True):
        network = ours("vgg19", weights, convention=convention)
        for name, (w, b) in weights.items():  # the same weights, in float64
            conv = getattr(network, name)
            conv.kernel.set_value(jnp.asarray(w.transpose(2, 3, 1, 0), jnp.float64))
            conv.bias.set_value(jnp.asarray(b, jnp.float64))
        problem = prepare(network, jnp.asarray(content), [jnp.asarray(s) for s in styles], cfg)
        targets = single_targets(problem)

        def objective_jax(x):
            terms = loss_terms(x, targets, network, cfg.recipe)
            return total(terms), terms

        (value, terms), grad = jax.jit(jax.value_and_grad(objective_jax, has_aux=True))(jnp.asarray(probe))
        assert grad.dtype == jnp.float64

    assert set(terms) == set(ref_terms)
    for k, v in ref_terms.items():
        np.testing.assert_allclose(float(terms[k]), v.item(), rtol=1e-10, err_msg=k)
    np.testing.assert_allclose(float(value), sum(ref_terms.values()).item(), rtol=1e-10)
    assert np.abs(np.asarray(grad) - ref_grad).max() <= 1e-9 * np.abs(ref_grad).max()
