"""Executables kept on disk (``jaxstyle.engine.executables``): a second process runs the
compiled program without tracing it, gets the same numbers as the plain jit, and never runs a
program compiled for other static arguments, shapes or dtypes.

A "second process" is simulated in-process by a fresh :class:`Kept` around a fresh jit (no
in-memory cache of either); the CLI's own two-process check is in ``tests/test_startup.py``.
"""

from __future__ import annotations

import pickle

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxstyle.config import Recipe
from jaxstyle.engine import executables
from jaxstyle.engine.executables import Kept


@pytest.fixture
def cache_dir(tmp_path):
    """JAX's persistent cache pointed at a fresh folder for the test (Kept follows it)."""
    before = jax.config.values["jax_compilation_cache_dir"]
    jax.config.update("jax_compilation_cache_dir", str(tmp_path / "xla"))
    try:
        yield tmp_path / "xla" / executables.SUBDIRECTORY
    finally:
        jax.config.update("jax_compilation_cache_dir", before)


def make(traces: list):
    """A fresh Kept program (as a new process would have): static (recipe, power), one array."""

    def program(recipe: Recipe, power: int, x, y):
        traces.append(power)  # runs only while tracing
        return {"out": jnp.tanh(x) ** power * recipe.style_weight + jnp.sum(y), "n": x.shape[0]}

    return Kept(jax.jit(program, static_argnums=(0, 1)), (0, 1))


def reference(recipe, power, x, y):
    x64 = np.asarray(x, np.float64)
    return np.tanh(x64) ** power * recipe.style_weight + np.sum(np.asarray(y, np.float64))


def test_second_process_loads_without_tracing_and_agrees(cache_dir):
    x = jnp.linspace(-2.0, 2.0, 24, dtype=jnp.float32).reshape(4, 6)
    y = jnp.arange(3.0, dtype=jnp.float32)
    recipe = Recipe()
    traces: list = []
    first = make(traces)(recipe, 3, x, y)
    assert traces == [3] and len(list(cache_dir.glob("*.exe"))) == 1
    again: list = []
    second = make(again)(recipe, 3, x, y)
    assert again == [], "the second process traced the program instead of loading it"
    np.testing.assert_array_equal(np.asarray(second["out"]), np.asarray(first["out"]))
    np.testing.assert_allclose(np.asarray(second["out"]), reference(recipe, 3, x, y), rtol=1e-5)
    assert int(second["n"]) == 4


def test_other_static_arguments_shapes_and_dtypes_never_reuse_a_program(cache_dir):
    x = jnp.linspace(-1.0, 1.0, 6, dtype=jnp.float32)
    y = jnp.ones(2, jnp.float32)
    calls = [
        (Recipe(), 2, x, y),
        (Recipe(style_weight=7.0), 2, x, y),  # a Recipe field: another key
        (Recipe(), 3, x, y),  # another static int
        (Recipe(), 2, x[:5], y),  # another shape
        (Recipe(), 2, x.astype(jnp.bfloat16), y),  # another dtype
    ]
    for i, (recipe, power, a, b) in enumerate(calls):
        traces: list = []
        got = make(traces)(recipe, power, a, b)
        assert traces == [power], f"call {i} loaded another call's program"
        np.testing.assert_allclose(np.asarray(got["out"], np.float64), reference(recipe, power, a, b),
                                   rtol=1e-2 if a.dtype == jnp.bfloat16 else 1e-5)
    assert len(list(cache_dir.glob("*.exe"))) == len(calls)


def test_network_static_attributes_change_the_key():
    # The network's GraphDef is a static argument of every program; what the key sees of it is
    # its pickle, which must tell the input conventions and the models apart.
    from flax import nnx

    from jaxstyle.model.vgg import build_vgg

    def pickled(**kw):
        return pickle.dumps(nnx.split(build_vgg(seed=0, widths=(4, 4, 4, 4, 4), **kw))[0])

    assert pickled(convention="caffe") != pickled(convention="torchvision")
    assert pickled(model="vgg16") != pickled(model="vgg19")
    assert pickled(convention="caffe") == pickled(convention="caffe")


def test_damaged_file_is_recompiled_not_trusted(cache_dir):
    x = jnp.arange(5.0, dtype=jnp.float32)
    y = jnp.zeros(1, jnp.float32)
    make([])(Recipe(), 1, x, y)
    (path,) = cache_dir.glob("*.exe")
    path.write_bytes(b"not an executable")
    traces: list = []
    got = make(traces)(Recipe(), 1, x, y)
    assert traces == [1]
    np.testing.assert_allclose(np.asarray(got["out"]), reference(Recipe(), 1, x, y), rtol=1e-6)
    assert path.read_bytes() != b"not an executable"


def test_off_without_a_compile_cache_and_inside_other_traces(tmp_path):
    assert jax.config.values["jax_compilation_cache_dir"] in (None, "")
    assert executables.directory() is None
    traces: list = []
    program = make(traces)
    x = jnp.ones(3, jnp.float32)
    program(Recipe(), 2, x, x)
    program(Recipe(), 2, x, x)
    assert traces == [2]  # the plain jit: traced once, cached in memory
    # Inside another transformation the arguments are tracers: the jit is inlined, nothing kept.
    before = jax.config.values["jax_compilation_cache_dir"]
    jax.config.update("jax_compilation_cache_dir", str(tmp_path / "xla"))
    try:
        grad = jax.grad(lambda v: program(Recipe(), 2, v, v)["out"].sum())(x)
    finally:
        jax.config.update("jax_compilation_cache_dir", before)
    expected = 2 * np.tanh(1.0) * (1 - np.tanh(1.0) ** 2) * Recipe().style_weight + 3.0
    np.testing.assert_allclose(np.asarray(grad), np.full(3, expected), rtol=1e-5)
    assert not (tmp_path / "xla").exists()


def test_donated_state_is_still_donated(cache_dir):
    def program(n: int, state):
        return state * 2.0 + n

    x = jnp.arange(4.0, dtype=jnp.float32)
    kept = Kept(jax.jit(program, static_argnums=(0,), donate_argnums=(1,)), (0,))
    out = kept(1, x)
    np.testing.assert_array_equal(np.asarray(out), np.arange(4.0) * 2 + 1)
    x2 = jnp.arange(4.0, dtype=jnp.float32)
    loaded = Kept(jax.jit(program, static_argnums=(0,), donate_argnums=(1,)), (0,))
    out2 = loaded(1, x2)
    np.testing.assert_array_equal(np.asarray(out2), np.arange(4.0) * 2 + 1)
    assert x2.is_deleted(), "the loaded program no longer donates its input"
