"""Executables kept on disk (``jaxstyle.engine.executables``): a second process runs the
compiled program without tracing it, gets the same numbers as the plain jit, and never runs a
program compiled for other static arguments, shapes or dtypes.

A "second process" is simulated in-process by a fresh :class:`Kept` around a fresh jit (no
in-memory cache of either); the CLI's own two-process check is in ``tests/test_startup.py``.
"""

from __future__ import annotations

import pickle
import threading

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

    return Kept(program, (0, 1))


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


@pytest.fixture
def fresh_lists(monkeypatch):
    """This process's record of used files and reads ahead, empty for the test."""
    monkeypatch.setattr(executables, "_USED", [])
    monkeypatch.setattr(executables, "_AHEAD", {})


def test_read_ahead_supplies_the_programs_the_same_tag_used(cache_dir, fresh_lists):
    x = jnp.linspace(-1.0, 1.0, 6, dtype=jnp.float32)
    y = jnp.ones(2, jnp.float32)
    make([])(Recipe(), 2, x, y)
    make([])(Recipe(), 3, x, y)
    executables.remember("run A")
    names = (cache_dir / "runs").glob("*.txt")
    (listed,) = [f.read_text().split() for f in names]
    assert sorted(listed) == sorted(p.name for p in cache_dir.glob("*.exe")) and len(listed) == 2
    executables.read_ahead("another command line")  # lists nothing: reads nothing
    executables.read_ahead("run A")
    for _ in range(200):  # the thread registers both files before loading either
        if len(executables._AHEAD) == 2:
            break
        threading.Event().wait(0.05)
    assert sorted(executables._AHEAD) == sorted(listed)
    traces: list = []
    got = make(traces)(Recipe(), 3, x, y)
    assert traces == [] and len(executables._AHEAD) == 1  # taken from what was read ahead
    np.testing.assert_allclose(np.asarray(got["out"]), reference(Recipe(), 3, x, y), rtol=1e-5)
    got = make(traces)(Recipe(), 2, x, y)
    assert traces == [] and executables._AHEAD == {}
    np.testing.assert_allclose(np.asarray(got["out"]), reference(Recipe(), 2, x, y), rtol=1e-5)


def test_read_ahead_of_a_damaged_file_recompiles(cache_dir, fresh_lists):
    x = jnp.arange(4.0, dtype=jnp.float32)
    make([])(Recipe(), 1, x, x)
    executables.remember("run B")
    (path,) = cache_dir.glob("*.exe")
    path.write_bytes(b"not an executable")
    executables.read_ahead("run B")
    for _ in range(200):
        if path.name in executables._AHEAD:
            break
        threading.Event().wait(0.05)
    traces: list = []
    got = make(traces)(Recipe(), 1, x, x)
    assert traces == [1]
    np.testing.assert_allclose(np.asarray(got["out"]), reference(Recipe(), 1, x, x), rtol=1e-6)


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
    kept = Kept(program, (0,), donate_argnums=(1,))
    out = kept(1, x)
    np.testing.assert_array_equal(np.asarray(out), np.arange(4.0) * 2 + 1)
    x2 = jnp.arange(4.0, dtype=jnp.float32)
    loaded = Kept(program, (0,), donate_argnums=(1,))
    out2 = loaded(1, x2)
    np.testing.assert_array_equal(np.asarray(out2), np.arange(4.0) * 2 + 1)
    assert x2.is_deleted(), "the loaded program no longer donates its input"


@pytest.fixture
def kernels(monkeypatch):
    """Set JAXSTYLE_CPU_KERNELS for the test (compiler_options is read once per process)."""
    def choose(value: str | None, flags: str | None = None):
        if value is None:
            monkeypatch.delenv("JAXSTYLE_CPU_KERNELS", raising=False)
        else:
            monkeypatch.setenv("JAXSTYLE_CPU_KERNELS", value)
        if flags is not None:
            monkeypatch.setattr(executables, "_cpu_flags", lambda: flags)
        executables.compiler_options.cache_clear()
        return executables.compiler_options()

    yield choose
    monkeypatch.delenv("JAXSTYLE_CPU_KERNELS", raising=False)
    executables.compiler_options.cache_clear()


def conv_program():
    def conv(x, k):
        return jax.lax.conv_general_dilated(x, k, (1, 1), ((1, 1), (1, 1)), dimension_numbers=("NHWC", "HWIO", "NHWC"))

    return Kept(conv)


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="XLA:CPU's kernel choice")
def test_cpu_kernels_choice_reaches_the_compiled_program(kernels):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((1, 32, 32, 128)), jnp.float32)
    k = jnp.asarray(rng.standard_normal((3, 3, 128, 128)) * 0.05, jnp.float32)
    x64, k64 = np.asarray(x, np.float64), np.asarray(k, np.float64)
    # numpy float64 reference: the nine shifted windows times the kernel's taps
    xp = np.pad(x64, ((0, 0), (1, 1), (1, 1), (0, 0)))
    expected = sum(np.einsum("nhwc,cd->nhwd", xp[:, i:i + 32, j:j + 32], k64[i, j]) for i in range(3) for j in range(3))
    texts = {}
    for choice in ("eigen", "ynnpack"):
        kernels(choice)
        program = conv_program()
        texts[choice] = program.lower(x, k).compile().as_text()
        np.testing.assert_allclose(np.asarray(program(x, k)), expected, rtol=2e-4, atol=2e-4)
    assert "ynn_fusion" not in texts["eigen"]
    assert "ynn_fusion" in texts["ynnpack"]


def test_cpu_kernels_auto_and_bad_values(kernels):
    from jaxstyle.errors import UserError

    if jax.default_backend() == "cpu":
        eigen = tuple(sorted(executables.CPU_OPTIONS["eigen"].items()))
        assert ("xla_cpu_experimental_ynn_fusion_type", "") in eigen
        assert kernels(None, flags="flags : fpu sse avx avx2 fma") == eigen
        assert kernels("auto", flags="flags : fpu avx2 avx512f avx512bw") == ()
        assert kernels("eigen", flags="flags : avx512f") == eigen
    with pytest.raises(UserError, match="JAXSTYLE_CPU_KERNELS"):
        kernels("fast")
