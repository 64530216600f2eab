"""The one chunk loop: a :class:`~jaxstyle.engine.targets.Problem` of B ≥ 1 images, many
steps per compiled call, progress between calls.

A single image is a batch of one and runs this same loop. With a ``mesh`` of several
devices the batch axis is split over it (``shard_map``: each device runs exactly the
program one device runs for its images, so the numbers do not change with the device
count) and the network and shared targets are replicated.

A non-finite loss is not raised here: it shows in ``Progress.terms`` for its image alone
(:func:`nonfinite`), and the caller decides (one image: an error; a batch: that pair fails).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import jax
import numpy as np
from flax import nnx

from jaxstyle.config import Recipe
from jaxstyle.engine import compiled
from jaxstyle.engine.targets import Problem
from jaxstyle.model import vgg
from jaxstyle.optim.step import StepState


@dataclass
class Progress:
    step: int  # steps done
    total: int
    terms: dict[str, np.ndarray]  # loss terms at the last evaluated image, each (B,)
    seconds: float  # optimisation time so far (excluding the first chunk's compile)
    compile_seconds: float
    state: StepState
    problem: Problem

    def images(self) -> np.ndarray:
        """The current result, (B, H, W, 3) float32 RGB in [0, 1] (a device→host copy)."""
        return final_images(self.problem, self.state)


def default_chunk(chunk: int = 0) -> int:
    """Steps per compiled call: ``chunk`` when given, else per backend. Measured (bench/): on
    XLA:CPU a rolled scan is several times slower than the same step called from Python, so
    unroll there; 4 unrolled steps per call took 12 % less CPU time per step than 1 (256²,
    Adam, 2 cores; then the kernels' transposed copies for the input gradient were made in
    every call, now once per network: :func:`grad_kernels`) and compile in ~3 s (8 took 12 s).
    On accelerators a rolled scan of 10 steps removes the per-step host round trip."""
    if chunk:
        return chunk
    return 4 if jax.default_backend() == "cpu" else 10


def batch_mesh(devices: Sequence | None = None) -> jax.sharding.Mesh:
    """A 1-D mesh named ``"batch"`` over ``devices`` (default: this process's local devices).

    Local, not global, devices: under ``jax.distributed`` each process runs its own share of
    the pairs, so no array ever spans hosts.
    """
    devices = list(devices) if devices is not None else jax.local_devices()
    return jax.make_mesh((len(devices),), (compiled.BATCH_AXIS,), (jax.sharding.AxisType.Auto,), devices=devices)


# (kernel arrays, their grad_kernels), most recent last. Keyed by the kernel arrays themselves
# (held here, so their ids stay theirs): a network whose kernels are replaced or set again
# (``set_value``) gets new arrays, hence new grad kernels, never stale ones.
_GRAD_KERNELS: list[tuple[tuple, dict]] = []


def grad_kernels(network, sharding=None) -> dict:
    """The network's ``compiled.grad_kernels``, made once per set of kernel arrays (and
    placement): the chunk program then never rebuilds them (see ``vgg._conv_pre``)."""
    if not isinstance(network, vgg.VGG):
        return None
    kernels = vgg.conv_kernels(network)
    key = (tuple(kernels.values()), sharding)
    for held, made in _GRAD_KERNELS:
        if len(held[0]) == len(key[0]) and held[1] == sharding and all(a is b for a, b in zip(held[0], key[0])):
            return made
    made = compiled.grad_kernels(kernels)
    if sharding is not None:
        made = jax.device_put(made, sharding)
    _GRAD_KERNELS.append((key, made))
    del _GRAD_KERNELS[:-4]  # a few networks at most (a server holds one per model)
    return made


def _placement(problem: Problem, mesh):
    """(params, targets, init, sharding, grad kernels) placed on ``mesh`` (None: as they are)."""
    graphdef, params = nnx.split(problem.network)
    targets, init = problem.targets, problem.init
    if mesh is None or mesh.size == 1:
        return graphdef, params, targets, init, None, grad_kernels(problem.network)
    if init.shape[0] % mesh.size:
        raise ValueError(f"batch of {init.shape[0]} does not divide over {mesh.size} devices; pad it")
    spec = jax.sharding.PartitionSpec
    sharding = jax.sharding.NamedSharding(mesh, spec(compiled.BATCH_AXIS))
    replicated = jax.sharding.NamedSharding(mesh, spec())
    params = jax.device_put(params, replicated)
    targets = targets._replace(**{
        k: jax.device_put(v, replicated if k in problem.shared else sharding)
        for k, v in targets._asdict().items() if v is not None
    })
    return graphdef, params, targets, jax.device_put(init, sharding), sharding, grad_kernels(problem.network, replicated)


def init_state(problem: Problem, mesh=None) -> StepState:
    """Fresh optimiser states for the problem's starting images."""
    _, _, _, init, sharding, _ = _placement(problem, mesh)
    return compiled.init_states(problem.recipe, sharding, init)


def run_chunk(problem: Problem, state: StepState, n: int, mesh=None, *, unroll: bool | None = None
              ) -> tuple[StepState, dict]:
    """``n`` steps in one compiled call; the state is donated. Terms: {name: (n, B)}.
    ``unroll``: straight-line steps (default on CPU) or a rolled ``lax.scan``."""
    graphdef, params, targets, _, sharding, kernels_t = _placement(problem, mesh)
    unroll = jax.default_backend() == "cpu" if unroll is None else unroll
    return compiled.chunk(graphdef, problem.recipe, n, unroll, problem.shared, sharding, params, targets, state,
                          kernels_t)


def iterate(problem: Problem, *, steps: int, state: StepState | None = None, mesh=None, chunk: int = 0,
            boundaries: Sequence[int] = ()) -> Iterator[Progress]:
    """Run ``steps`` steps from ``state`` (default: fresh), yielding after every chunk and at
    each of ``boundaries``. Nothing is yielded for 0 steps."""
    graphdef, params, targets, init, sharding, kernels_t = _placement(problem, mesh)
    recipe = problem.recipe
    n_chunk = default_chunk(chunk)
    unroll = jax.default_backend() == "cpu"
    if state is None:
        state = compiled.init_states(recipe, sharding, init)
    elif sharding is not None:
        state = jax.device_put(state, sharding)
    stops = sorted({b for b in boundaries if 0 < b < steps} | {steps}) if steps else []
    done, spent, compile_s = 0, 0.0, 0.0
    for stop in stops:
        while done < stop:
            # Two programs at most: the first step alone (the first report comes after one
            # step, not a chunk) and any remainder before a stop one step at a time,
            # everything else in whole chunks; never a third compile for a remainder.
            n = n_chunk if done > 0 and stop - done >= n_chunk else 1
            t0 = time.perf_counter()
            state, terms = compiled.chunk(graphdef, recipe, n, unroll, problem.shared, sharding, params, targets, state,
                                          kernels_t)
            terms = {k: np.asarray(v)[-1] for k, v in terms.items()}  # on the host: no slicing program
            elapsed = time.perf_counter() - t0
            if done == 0:
                compile_s = elapsed  # the first call pays the compile
            else:
                spent += elapsed
            done += n
            yield Progress(done, steps, terms, spent, compile_s, state, problem)


def final_images(problem: Problem, state: StepState) -> np.ndarray:
    """(B, H, W, 3) float32 RGB in [0, 1]."""
    return np.asarray(compiled.finals(problem.recipe, state))


def nonfinite(terms: dict[str, np.ndarray]) -> dict[int, tuple[str, float]]:
    """{image index: (term, value)} for the images whose loss terms are not all finite."""
    bad: dict[int, tuple[str, float]] = {}
    for name, values in terms.items():
        for i in np.flatnonzero(~np.isfinite(np.atleast_1d(values))):
            bad.setdefault(int(i), (name, float(np.atleast_1d(values)[i])))
    return bad


def nonfinite_advice(name: str, value: float, step: int, recipe: Recipe) -> str:
    """One line for a loss that became NaN/inf, with advice that fits the recipe."""
    advice = "lower --lr or the loss weights"
    if recipe.optimizer != "adam":
        advice += ", or use --optimizer adam (it takes bounded steps)"
    elif not recipe.clamp:
        advice += ", or add --clamp"
    return f"the {name} loss became {value} at step {step}; {advice}"


__all__ = ["Progress", "batch_mesh", "default_chunk", "final_images", "init_state", "iterate", "nonfinite",
           "nonfinite_advice", "run_chunk"]
