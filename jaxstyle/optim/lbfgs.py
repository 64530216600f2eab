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
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
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
        h_diag = jnp.where(push, ys / jnp.vdot(y, y), state.h_diag)

        direction = jnp.where(first, -g, _two_loop(-g, s_mem, y_mem, rho, pushed, h_diag))
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


def _two_loop(q, s_mem, y_mem, rho, pushed, h_diag):
    """H·q by the standard two-loop recursion, newest pair first, over the ring buffer."""
    history = rho.shape[0]
    order = (pushed - 1 - jnp.arange(history)) % history  # newest → oldest

    def backward(q, idx):
        alpha = rho[idx] * jnp.vdot(s_mem[idx], q)
        return q - alpha * y_mem[idx], alpha

    q, alphas = jax.lax.scan(backward, q, order)
    r = q * h_diag

    def forward(r, idx_alpha):
        idx, alpha = idx_alpha
        beta = rho[idx] * jnp.vdot(y_mem[idx], r)
        return r + s_mem[idx] * (alpha - beta), None

    r, _ = jax.lax.scan(forward, r, (order[::-1], alphas[::-1]))
    return r
