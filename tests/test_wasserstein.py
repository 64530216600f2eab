"""The W2 style loss against float64 numpy/scipy references, and the quality preset's loss
terms against a PyTorch re-statement of crowsonkb/style-transfer-pytorch's formulas."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg as sl
import torch
import torch.nn.functional as F
from helpers import tiny_net_float64, torch_conv_params, torch_tv, torch_vgg, torch_w2

from jaxstyle.objective import wasserstein as W

RNG = np.random.default_rng(5)


def spd(c: int, cond: float, rng=RNG) -> np.ndarray:
    """A random symmetric positive definite matrix with condition number ``cond``."""
    q, _ = np.linalg.qr(rng.standard_normal((c, c)))
    vals = np.geomspace(1.0, 1.0 / cond, c) * rng.uniform(0.5, 3.0)
    return (q * vals) @ q.T


def test_newton_schulz_matches_scipy_sqrtm():
    mats = np.stack([spd(8, 1.0), spd(8, 30.0), spd(8, 300.0), spd(16, 100.0)[:8, :8] + np.eye(8)])
    with jax.enable_x64(True):
        roots = np.asarray(W.sqrtm_newton_schulz(jnp.asarray(mats)))
    for a, r in zip(mats, roots):
        ref = sl.sqrtm(a).real
        np.testing.assert_allclose(r, ref, rtol=0, atol=1e-10 * np.abs(ref).max())


def test_newton_schulz_float32_is_close():
    a = spd(64, 100.0)
    r = np.asarray(W.sqrtm_newton_schulz(jnp.asarray(a, jnp.float32)))
    ref = sl.sqrtm(a).real
    assert np.abs(r - ref).max() <= 1e-5 * np.abs(ref).max()


def test_sqrtm_gradient_solves_the_sylvester_equation():
    # d<G, A^½>/dA = X with A^½ X + X A^½ = G (A symmetric).
    a, g = spd(8, 50.0), RNG.standard_normal((8, 8))
    with jax.enable_x64(True):
        grad = np.asarray(jax.grad(lambda m: jnp.sum(W.sqrtm_newton_schulz(m) * g))(jnp.asarray(a)))
    root = sl.sqrtm(a).real
    ref = sl.solve_sylvester(root, root, g)
    np.testing.assert_allclose(grad, ref, rtol=0, atol=1e-9 * np.abs(ref).max())


def w2_reference(f: np.ndarray, mean_s: np.ndarray, cov_s: np.ndarray):
    """crowsonkb's W2 loss (eps 1e-4) and its analytic gradient, float64, scipy's sqrtm."""
    n, c = f.shape
    mean = f.mean(axis=0)
    cov = f.T @ f / n - np.outer(mean, mean) + 1e-4 * np.eye(c)
    root_s = sl.sqrtm(cov_s).real
    m = root_s @ cov @ root_s
    root_m = sl.sqrtm(m).real
    loss = np.mean((mean - mean_s) ** 2) + np.trace(cov_s + cov - 2 * root_m) / c
    # dL/dΣ = (I − Σs^½ M^-½ Σs^½)/C, then through Σ = FᵀF/N − μμᵀ and μ = Fᵀ1/N.
    g_cov = (np.eye(c) - root_s @ np.linalg.inv(root_m) @ root_s) / c
    g_cov = (g_cov + g_cov.T) / 2
    grad = 2 / n * (f @ g_cov - np.outer(np.ones(n), g_cov @ mean)) + 2 / (c * n) * np.outer(np.ones(n), mean - mean_s)
    return loss, grad


def features(h, w, c, rng):
    mix = np.eye(c) + 0.3 * rng.standard_normal((c, c))
    return rng.standard_normal((h, w, c)) @ mix + rng.uniform(0, 1, c)


def test_w2_loss_and_gradient_match_float64_reference():
    f = features(12, 10, 6, RNG)
    s = features(9, 14, 6, RNG).reshape(-1, 6)
    mean_s = s.mean(axis=0)
    cov_s = s.T @ s / len(s) - np.outer(mean_s, mean_s) + 1e-4 * np.eye(6)
    ref_loss, ref_grad = w2_reference(f.reshape(-1, 6), mean_s, cov_s)
    # The reference gradient itself, against central differences.
    for idx in [(0, 0), (17, 3), (119, 5)]:
        e = np.zeros((120, 6))
        e[idx] = 1e-6
        fd = (w2_reference(f.reshape(-1, 6) + e, mean_s, cov_s)[0] - w2_reference(f.reshape(-1, 6) - e, mean_s, cov_s)[0]) / 2e-6
        assert abs(fd - ref_grad[idx]) <= 1e-6 * np.abs(ref_grad).max()
    with jax.enable_x64(True):
        target = W.prepare_target(W.moments(jnp.asarray(s.reshape(9, 14, 6))))
        loss, grad = jax.value_and_grad(lambda x: W.w2_loss(x, target))(jnp.asarray(f))
        # Without the precomputed Σs^½ the loss computes it itself: same value.
        bare = W.w2_loss(jnp.asarray(f), {"mean": target["mean"], "raw2": target["raw2"]})
    np.testing.assert_allclose(float(loss), ref_loss, rtol=1e-10)
    np.testing.assert_allclose(float(bare), ref_loss, rtol=1e-10)
    np.testing.assert_allclose(np.asarray(grad).reshape(-1, 6), ref_grad, rtol=0, atol=1e-9 * np.abs(ref_grad).max())


def test_w2_of_a_style_with_itself_is_zero_and_moments_blend_linearly():
    a, b = features(8, 8, 5, RNG), features(8, 8, 5, RNG)
    with jax.enable_x64(True):
        ma, mb = W.moments(jnp.asarray(a)), W.moments(jnp.asarray(b))
        both = W.moments(jnp.asarray(np.concatenate([a, b], axis=0)))
        half = jax.tree.map(lambda x, y: (x + y) / 2, ma, mb)
        # Newton–Schulz converges for this well-conditioned covariance: zero to rounding.
        # (With 12 iterations an ill-conditioned one leaves a small positive floor.)
        white = RNG.standard_normal((16, 16, 5))
        assert abs(float(W.w2_loss(jnp.asarray(white), W.prepare_target(W.moments(jnp.asarray(white)))))) < 1e-12
    for k in ("mean", "raw2"):
        np.testing.assert_allclose(np.asarray(both[k]), np.asarray(half[k]), rtol=1e-12)


# ------------------------------------------------- the quality preset, term by term


@pytest.mark.slow
def test_quality_terms_and_gradient_match_crowsonkb_formulas(images):
    from jaxstyle.io import image as imageio
    from helpers import prepare, single_targets
    from jaxstyle.config import make_config
    from jaxstyle.objective.terms import loss_terms, total

    content = imageio.to_float(imageio.load_image(images[0]))
    style = imageio.to_float(imageio.load_image(images[1]))
    probe = np.clip(content + RNG.uniform(-0.2, 0.2, content.shape), 0, 1)
    cfg = make_config("quality", min_scale=0)
    with jax.enable_x64(True):
        net = tiny_net_float64(3)
        prob = prepare(net, content.astype(np.float64), [style.astype(np.float64)], cfg)
        targets = single_targets(prob)

        def objective(x):
            terms = loss_terms(x, targets, net, cfg.recipe)
            return total(terms), terms

        (value, terms), grad = jax.jit(jax.value_and_grad(objective, has_aux=True))(jnp.asarray(probe))
        kernels, biases = torch_conv_params(net)

    nchw = lambda a: torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)[None], np.float64))  # noqa: E731
    layers = ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"]
    fs = torch_vgg(nchw(style), kernels, biases, set(layers))
    fc = torch_vgg(nchw(content), kernels, biases, {"relu4_2"})
    x = nchw(probe).requires_grad_()
    fx = torch_vgg(x, kernels, biases, set(layers) | {"relu4_2"})
    ref = {"content": 0.015 * F.mse_loss(fx["relu4_2"], fc["relu4_2"])}
    for name, w in zip(layers, (256, 64, 16, 4, 1)):
        t = fs[name][0]
        srm = torch.einsum("chw,dhw->cd", t, t) / (t.shape[1] * t.shape[2])
        ref[f"style:{name}"] = w / 341 * torch_w2(fx[name], t.mean([-2, -1]), srm)
    ref["tv"] = 2.0 * torch_tv(x)
    ref_total = sum(ref.values())
    ref_total.backward()
    for k, v in ref.items():
        np.testing.assert_allclose(float(terms[k]), v.item(), rtol=1e-9, err_msg=k)
    np.testing.assert_allclose(float(value), ref_total.item(), rtol=1e-9)
    ref_grad = x.grad[0].numpy().transpose(1, 2, 0)
    np.testing.assert_allclose(np.asarray(grad), ref_grad, rtol=0, atol=1e-8 * np.abs(ref_grad).max())
