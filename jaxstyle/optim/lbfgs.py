"""L-BFGS without line search, step for step as ``torch.optim.LBFGS`` takes it.

Both published recipes we reproduce (neural-style-pt, pystiche) run torch's L-BFGS with
lr 1, history 100 and no line search. ``optax.lbfgs(linesearch=None)`` is close but not the
same algorithm: it scales the first step by the L2 norm instead of the L1 norm, and it keeps
curvature pairs that torch drops (yᵀs ≤ 1e-10). Those differences change the trajectory
(the oracle traces overshoot differently), so this module implements torch's rule as an
Optax ``GradientTransformation`` over one array (the image), written for a single image so
``vmap`` batches it.

Per update, with gradient g_k:
- k = 0: d = −g, t = min(1, 1/‖g‖₁)·lr.
- k ≥ 1: s = t·d_prev, y = g_k − g_prev; if yᵀs > 1e-10 push (s, y) and set
  H₀ = yᵀs / yᵀy; d = two-loop recursion on −g; t = lr.
- Torch stops (no update) when max|g| ≤ tolerance_grad or gᵀd > −tolerance_change; here
  the run stays stopped, as torch's repeated ``.step()`` calls would.

Deviation, only with ``precondition`` (jaxstyle's, off by default and in every published
recipe): the initial inverse Hessian of the two-loop recursion is H₀ = γ·M⁻¹ with
M⁻¹ = I + Σ_k c_k G_k, G_k a Gaussian blur of σ = 2^(k-1) px (symmetric, its spectrum
in (0, 1], so M⁻¹ is positive definite), and γ = yᵀs / yᵀM⁻¹y (the scalar rule in M's
metric). It makes every step move coarse structure as readily as single pixels, as a
multiscale (Laplacian-pyramid) parameterisation of the image would. Blurs, not block means
repeated back: those are tied to a fixed grid, and the image showed the 8 px blocks.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax


class TorchLBFGSState(NamedTuple):
    count: jax.Array  # updates taken
    pushed: jax.Array  # curvature pairs ever stored (ring-buffer head)
    prev_grad: jax.Array
    prev_step: jax.Array  # t·d of the last update
    h_diag: jax.Array
    s_mem: jax.Array  # (history, P)
    y_mem: jax.Array  # (history, P)
    rho: jax.Array  # (history,), 0 for empty slots so they drop out of the recursion
    stopped: jax.Array


def torch_lbfgs(
    learning_rate: float = 1.0,
    history: int = 100,
    tolerance_grad: float = 1e-7,
    tolerance_change: float = 1e-9,
    precondition: tuple[float, ...] = (),
) -> optax.GradientTransformation:
    def init(params: jax.Array) -> TorchLBFGSState:
        p = params.size
        zeros = jnp.zeros((p,), params.dtype)
        return TorchLBFGSState(
            count=jnp.zeros((), jnp.int32),
            pushed=jnp.zeros((), jnp.int32),
            prev_grad=zeros,
            prev_step=zeros,
            h_diag=jnp.ones((), params.dtype),
            s_mem=jnp.zeros((history, p), params.dtype),
            y_mem=jnp.zeros((history, p), params.dtype),
            rho=jnp.zeros((history,), params.dtype),
            stopped=jnp.zeros((), bool),
        )

    def update(grads: jax.Array, state: TorchLBFGSState, params=None):
        del params
        g = grads.reshape(-1)

        def pre(v):
            return pyramid(v.reshape(grads.shape), precondition).reshape(-1)

        first = state.count == 0
        y = g - state.prev_grad
        s = state.prev_step
        ys = jnp.vdot(y, s)
        push = jnp.logical_and(~first, ys > 1e-10)
        slot = state.pushed % history
        # Write one row (the old one back when not pushing): a where() over the whole
        # memory would copy history×P floats every step.
        s_mem = state.s_mem.at[slot].set(jnp.where(push, s, state.s_mem[slot]))
        y_mem = state.y_mem.at[slot].set(jnp.where(push, y, state.y_mem[slot]))
        rho = state.rho.at[slot].set(jnp.where(push, 1.0 / ys, state.rho[slot]))
        pushed = state.pushed + push.astype(jnp.int32)
        h_diag = jnp.where(push, ys / jnp.vdot(y, pre(y)), state.h_diag)

        direction = jnp.where(first, -g, _two_loop(-g, s_mem, y_mem, rho, pushed, h_diag, pre))
        t = jnp.where(first, jnp.minimum(1.0, 1.0 / jnp.sum(jnp.abs(g))) * learning_rate, learning_rate)
        stop = (
            state.stopped
            | (jnp.max(jnp.abs(g)) <= tolerance_grad)
            | (jnp.vdot(g, direction) > -tolerance_change)
        )
        step = jnp.where(stop, 0.0, t * direction).astype(grads.dtype)
        new = TorchLBFGSState(
            count=state.count + 1,
            pushed=pushed,
            prev_grad=g,
            prev_step=step,
            h_diag=h_diag,
            s_mem=s_mem,
            y_mem=y_mem,
            rho=rho,
            stopped=stop,
        )
        return step.reshape(grads.shape), new

    return optax.GradientTransformation(init, update)


def gaussian_taps(sigma: float) -> np.ndarray:
    """The normalised 1-D Gaussian of ``sigma`` px, truncated at 3σ."""
    r = int(np.ceil(3 * sigma))
    t = np.arange(-r, r + 1, dtype=np.float64)
    w = np.exp(-0.5 * (t / sigma) ** 2)
    return w / w.sum()


def _blur(x: jax.Array, taps: np.ndarray, axis: int) -> jax.Array:
    """``x`` convolved with symmetric ``taps`` along ``axis``, zeros beyond the edges (so the
    operator is a symmetric matrix)."""
    r = len(taps) // 2
    n = x.shape[axis]
    pad = [(0, 0)] * x.ndim
    pad[axis] = (r, r)
    xp = jnp.pad(x, pad)
    return sum(float(w) * jax.lax.slice_in_dim(xp, i, i + n, axis=axis) for i, w in enumerate(taps))


def pyramid(x: jax.Array, weights: tuple[float, ...]) -> jax.Array:
    """x + Σ_k weights[k-1]·G_k x for an H×W×C ``x``, G_k the Gaussian blur of σ = 2^(k-1) px
    over H and W (zeros beyond the edges); x itself for no weights."""
    out = x
    for k, c in enumerate(weights, start=1):
        if not c:
            continue
        taps = gaussian_taps(2.0 ** (k - 1))
        out = out + c * _blur(_blur(x, taps, x.ndim - 3), taps, x.ndim - 2)
    return out


def _two_loop(q, s_mem, y_mem, rho, pushed, h_diag, pre=lambda v: v):
    """H·q by the standard two-loop recursion, newest pair first, over the ring buffer, with
    H₀ = h_diag·pre."""
    history = rho.shape[0]
    # Only the pairs stored so far, as torch's loop does: an empty slot would add exact zeros
    # (rho = 0), but visiting it costs two passes over the image per slot per step.
    filled = jnp.minimum(pushed, history)

    def slot(i):  # the i-th newest pair
        return (pushed - 1 - i) % history

    def backward(i, carry):
        q, alphas = carry
        idx = slot(i)
        alpha = rho[idx] * jnp.vdot(s_mem[idx], q)
        return q - alpha * y_mem[idx], alphas.at[i].set(alpha)

    q, alphas = jax.lax.fori_loop(0, filled, backward, (q, jnp.zeros_like(rho)))
    r = pre(q) * h_diag

    def forward(k, r):  # oldest stored pair first
        i = filled - 1 - k
        idx = slot(i)
        beta = rho[idx] * jnp.vdot(y_mem[idx], r)
        return r + s_mem[idx] * (alphas[i] - beta)

    return jax.lax.fori_loop(0, filled, forward, r)
