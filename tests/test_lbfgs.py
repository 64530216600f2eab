"""``jaxstyle.lbfgs.torch_lbfgs`` takes the same steps as ``torch.optim.LBFGS``.

The reference is torch itself: ``LBFGS(lr=1, history_size=H, max_iter=1,
line_search_fn=None)`` with one ``.step(closure)`` per update, which is how
neural-style-pt and pystiche drive it. Everything runs in float64, where both programs
are deterministic, so the iterates must agree to rounding (1e-10).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

from jaxstyle.optim.lbfgs import torch_lbfgs

N = 50


def problem(seed: int = 0):
    """f(x) = 0.05·xᵀAx − bᵀx + Σ(x²−1)² over 50 variables, started near the origin.

    Each (x²−1)² is a double well with negative curvature near 0, so early steps have
    yᵀs < 0 and torch skips those curvature pairs; the quartic keeps the iterates bounded
    without a line search.
    """
    rng = np.random.default_rng(seed)
    m = rng.standard_normal((N, N))
    a = m @ m.T / N + np.eye(N)
    b = 0.3 * rng.standard_normal(N)
    x0 = 0.1 * rng.standard_normal(N)
    return a, b, x0


def torch_run(a, b, x0, steps, history, **tolerances):
    at, bt = torch.tensor(a), torch.tensor(b)
    x = torch.tensor(x0, requires_grad=True)
    opt = torch.optim.LBFGS([x], lr=1, history_size=history, max_iter=1, line_search_fn=None, **tolerances)

    def closure():
        opt.zero_grad()
        loss = 0.05 * x @ at @ x - bt @ x + torch.sum((x**2 - 1) ** 2)
        loss.backward()
        return loss

    xs, gs = [x0.copy()], []
    for _ in range(steps):
        opt.step(closure)
        gs.append(x.grad.detach().numpy().copy())  # gradient at the point the step started from
        xs.append(x.detach().numpy().copy())
    return np.array(xs), np.array(gs)


def jax_run(a, b, x0, steps, history, **tolerances):
    with jax.enable_x64(True):
        a, b = jnp.asarray(a), jnp.asarray(b)

        def f(x):
            return 0.05 * x @ a @ x - b @ x + jnp.sum((x**2 - 1) ** 2)

        opt = torch_lbfgs(1.0, history, **tolerances)

        @jax.jit
        def step(x, state):
            updates, state = opt.update(jax.grad(f)(x), state, x)
            return optax.apply_updates(x, updates), state

        x = jnp.asarray(x0)
        state = opt.init(x)
        xs = [np.asarray(x)]
        for _ in range(steps):
            x, state = step(x, state)
            xs.append(np.asarray(x))
        assert xs[-1].dtype == np.float64
        return np.array(xs), state


def skipped_pairs(xs, gs):
    """How many curvature pairs torch's rule (yᵀs > 1e-10) refused along a trajectory."""
    s = np.diff(xs[:-1], axis=0)  # step k, from xs[k] to xs[k+1]
    y = np.diff(gs, axis=0)  # gradient change over the same step
    return int(np.sum(np.einsum("ij,ij->i", y, s) <= 1e-10))


@pytest.mark.parametrize("history", [3, 100])
def test_matches_torch_lbfgs(history):
    a, b, x0 = problem()
    steps = 40
    # Tolerances off, as neural-style-pt runs it: every call takes a step.
    ref, grads = torch_run(a, b, x0, steps, history, tolerance_grad=-1.0, tolerance_change=-1.0)
    ours, state = jax_run(a, b, x0, steps, history, tolerance_grad=-1.0, tolerance_change=-1.0)
    # The run must exercise what it claims: skipped pairs while still far from the
    # minimum, and (for history 3) a ring buffer that wraps several times.
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-10 * np.abs(ref).max())
    early = skipped_pairs(ref[:15], grads[:14])
    assert early >= 1, "the test problem no longer produces a yᵀs <= 1e-10 skip"
    pushed = int(state.pushed)
    assert pushed == steps - 1 - skipped_pairs(ref, grads)
    if history == 3:
        assert pushed > 2 * history
    assert np.abs(ref[-1] - ref[-2]).max() < 1e-6  # converged: the comparison covered the whole run


def test_first_step_is_l1_scaled_gradient():
    # Torch's first step: -g · min(1, 1/‖g‖₁) · lr (optax.lbfgs uses the L2 norm instead).
    a, b, x0 = problem(1)
    ref, grads = torch_run(a, b, x0, 1, 10)
    g = grads[0]
    np.testing.assert_allclose(ref[1], x0 - g * min(1.0, 1.0 / np.abs(g).sum()), rtol=0, atol=1e-14)
    ours, _ = jax_run(a, b, x0, 1, 10)
    np.testing.assert_allclose(ours[1], ref[1], rtol=0, atol=1e-14)


def test_stops_like_torch_at_tolerances():
    # With torch's default tolerances the run stops once max|g| <= 1e-7 (or the
    # directional derivative vanishes); later .step() calls leave x unchanged.
    a, b, x0 = problem(2)
    steps = 60
    ref, _ = torch_run(a, b, x0, steps, 100, tolerance_grad=1e-7, tolerance_change=1e-9)
    ours, state = jax_run(a, b, x0, steps, 100, tolerance_grad=1e-7, tolerance_change=1e-9)
    assert np.array_equal(ref[-1], ref[-5]), "torch did not stop within the run; lengthen it"
    assert bool(state.stopped)
    np.testing.assert_array_equal(ours[-1], ours[-5])
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-10 * np.abs(ref).max())


# ------------------------------------------------- the multiscale preconditioner (jaxstyle's)


def blur_matrix(shape, weights):
    """M⁻¹ = I + Σ_k c_k G_k as an explicit matrix, from its definition: G_k blurs rows and
    columns of each channel with the normalised Gaussian of σ = 2^(k-1), truncated at 3σ,
    zeros beyond the image's edges."""
    h, w, c = shape
    m = np.eye(h * w * c)
    for k, wk in enumerate(weights, start=1):
        sigma = 2.0 ** (k - 1)
        r = int(np.ceil(3 * sigma))
        taps = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
        taps /= taps.sum()

        def conv(n):
            a = np.zeros((n, n))
            for i in range(n):
                for j in range(max(0, i - r), min(n, i + r + 1)):
                    a[i, j] = taps[j - i + r]
            return a

        m += wk * np.kron(conv(h), np.kron(conv(w), np.eye(c)))
    return m


def reference_preconditioned(a, b, x0, steps, minv):
    """L-BFGS (torch's rules: first step −g scaled by min(1, 1/‖g‖₁), pairs kept when
    yᵀs > 1e-10, unit steps, no line search) with H₀ = γ·M⁻¹, γ = yᵀs / yᵀM⁻¹y of the newest
    kept pair (1 before any): a plain float64 numpy loop over the full history."""

    def grad(x):
        return 0.1 * a @ x - b + 4 * x * (x**2 - 1)

    x, pairs, gamma = x0.copy(), [], 1.0
    xs = [x.copy()]
    g_prev = step_prev = None
    for k in range(steps):
        g = grad(x)
        if k == 0:
            step = -g * min(1.0, 1.0 / np.abs(g).sum())
        else:
            s, y = step_prev, g - g_prev
            if y @ s > 1e-10:
                pairs.append((s, y))
                gamma = (y @ s) / (y @ minv @ y)
            q = -g
            alphas = []
            for s_i, y_i in reversed(pairs):
                alpha = (s_i @ q) / (y_i @ s_i)
                q = q - alpha * y_i
                alphas.append(alpha)
            r = gamma * (minv @ q)
            for (s_i, y_i), alpha in zip(pairs, reversed(alphas)):
                beta = (y_i @ r) / (y_i @ s_i)
                r = r + s_i * (alpha - beta)
            step = r
        x = x + step
        g_prev, step_prev = g, step
        xs.append(x.copy())
    return np.array(xs)


def test_pyramid_is_its_matrix():
    from jaxstyle.optim.lbfgs import pyramid

    rng = np.random.default_rng(2)
    shape, weights = (5, 10, 2), (0.5, 2.0)
    x = rng.standard_normal(shape)
    with jax.enable_x64(True):
        got = np.asarray(pyramid(jnp.asarray(x), weights))
    m = blur_matrix(shape, weights)
    np.testing.assert_allclose(got.ravel(), m @ x.ravel(), rtol=1e-12, atol=1e-12)
    # symmetric and positive definite, as L-BFGS's H₀ must be
    assert np.allclose(m, m.T) and np.linalg.eigvalsh(m).min() > 0.5


def test_preconditioned_lbfgs_matches_a_numpy_loop():
    a, b, x0 = problem(3)
    shape, weights = (5, 10, 1), (0.5, 2.0)  # 50 variables as a 5×10 image
    steps = 12
    want = reference_preconditioned(a, b, x0, steps, blur_matrix(shape, weights))
    with jax.enable_x64(True):
        aj, bj = jnp.asarray(a), jnp.asarray(b)

        def f(img):
            x = img.reshape(-1)
            return 0.05 * x @ aj @ x - bj @ x + jnp.sum((x**2 - 1) ** 2)

        opt = torch_lbfgs(1.0, 100, precondition=weights)
        x = jnp.asarray(x0).reshape(shape)
        state = opt.init(x)
        got = [np.asarray(x).ravel()]
        for _ in range(steps):
            updates, state = opt.update(jax.grad(f)(x), state, x)
            x = optax.apply_updates(x, updates)
            got.append(np.asarray(x).ravel())
    np.testing.assert_allclose(np.array(got), want, rtol=1e-9, atol=1e-10)
    # and it is not plain L-BFGS: the steps differ from torch's after the first
    plain, _ = torch_run(a, b, x0, steps, 100)
    assert np.abs(plain[2:] - want[2:]).max() > 1e-3
