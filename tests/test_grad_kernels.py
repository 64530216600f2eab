"""The chunk's convs take their input gradient from kernels reversed/transposed once outside
the program (``vgg.grad_kernel``, ``engine.loop.grad_kernels``): same gradients as XLA's own
autodiff, no reverse/transpose left in the compiled chunk, never a stale kernel."""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxstyle.config import make_config
from jaxstyle.engine import compiled, loop
from jaxstyle.engine.targets import batch_problem
from jaxstyle.model import vgg


@pytest.mark.parametrize("padding", ["zeros", "replicate", "circular"])
def test_conv_gradients_match_autodiff(padding):
    rng = np.random.default_rng(0)
    conv = vgg.Conv3x3(5, 7, rngs=nnx.Rngs(0))
    conv.bias = nnx.Param(jnp.asarray(rng.normal(size=7), jnp.float32))
    x = jnp.asarray(rng.normal(size=(2, 9, 6, 5)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(2, 9, 6, 7)), jnp.float32)
    kt = vgg.grad_kernel(conv.kernel[...])
    graphdef, state = nnx.split(conv)

    def loss(x, state, pre):
        return jnp.sum(jnp.tanh(nnx.merge(graphdef, state)(x, padding, kt if pre else None)) * w)

    ref = jax.grad(loss, argnums=(0, 1))(x, state, False)
    got = jax.grad(loss, argnums=(0, 1))(x, state, True)
    for a, b in zip(jax.tree.leaves(ref), jax.tree.leaves(got), strict=True):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-5, atol=1e-5)


def _problem(size=32):
    cfg = make_config("gatys", size=size, steps=4)
    net = vgg.build_vgg("vgg19", widths=(4, 8, 8, 16, 16), seed=0)
    rng = np.random.default_rng(0)
    content = rng.uniform(0, 1, (size, size, 3)).astype(np.float32)
    style = rng.uniform(0, 1, (size, size, 3)).astype(np.float32)
    return batch_problem(net, cfg.recipe, [content], [[style]], jnp.asarray(content)[None])


def test_chunk_same_numbers_and_no_kernel_copies():
    problem = _problem(64)  # at 32 px XLA rewrites block 5's 2×2 convs its own way
    graphdef, params = nnx.split(problem.network)
    kt = loop.grad_kernels(problem.network)
    out = {}
    for name, k in (("inside", None), ("outside", kt)):
        state = loop.init_state(problem)
        args = (graphdef, problem.recipe, 3, True, problem.shared, None, params, problem.targets, state, k)
        text = compiled.chunk.lower(*args).compile().as_text()
        kernel_reversals = re.findall(r"= f32\[3,3,\d+,\d+\]\S* reverse\(", text)
        assert bool(kernel_reversals) == (k is None), kernel_reversals
        state, terms = compiled.chunk(*args)
        out[name] = (np.asarray(state.image), {t: np.asarray(v) for t, v in terms.items()})
    np.testing.assert_allclose(out["outside"][0], out["inside"][0], rtol=1e-6, atol=1e-6)
    for t, v in out["inside"][1].items():
        np.testing.assert_allclose(out["outside"][1][t], v, rtol=1e-5)


def test_grad_kernels_follow_the_kernels():
    problem = _problem()
    a = loop.grad_kernels(problem.network)
    assert loop.grad_kernels(problem.network) is a  # made once
    conv = problem.network.conv2_1
    conv.kernel.set_value(conv.kernel[...] * 2)
    b = loop.grad_kernels(problem.network)
    assert b is not a
    np.testing.assert_array_equal(np.asarray(b["conv2_1"]), np.asarray(vgg.grad_kernel(conv.kernel[...])))
