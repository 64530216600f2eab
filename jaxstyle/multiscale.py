"""Coarse-to-fine optimisation, as crowsonkb/style-transfer-pytorch does it
(``style_transfer.py`` @e7e2c71: ``gen_scales``, ``size_to_fit``, ``scale_adam``, ``stylize``).

- Scales: long sides from ``min(min_scale, size)`` to ``size``, each √2 larger, computed
  downwards from ``size`` as round(size / 2^(i/2)) so the last one is ``size`` exactly.
- Steps: ``initial_steps`` at the first scale, ``steps`` at each later one.
- Each new scale starts from the previous scale's bias-corrected EMA iterate, upsampled
  bicubically (torch's ``F.interpolate``: a = −0.75, half-pixel centres, edges clamped) and
  clamped to the pixel box; the EMA restarts there. Content and style targets are recomputed
  from the original images at the new size (the caller's ``build``).
- Adam's moments are resized too, so the optimiser does not restart: the first moment
  bicubically, the second bilinearly and clipped at 0; the step count carries on (torch
  keeps ``step`` in the state it reloads). Other optimisers start afresh at each scale.

Deviation: with ``wrap`` (tileable textures) the resampling wraps around instead of
clamping at the edges, so the texture stays periodic from scale to scale.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxstyle import pixels
from jaxstyle.config import Config
from jaxstyle.step import StepState, init_state, result_image


def gen_scales(start: int, end: int) -> list[int]:
    """Long sides from ``start`` to ``end``, ×√2 apart, ending at ``end`` exactly."""
    scales, i, scale = set(), 0, end
    while scale >= start:
        scales.add(scale)
        i += 1
        scale = round(end / 2 ** (i / 2))
    return sorted(scales)


def size_to_fit(width: int, height: int, max_dim: int, scale_up: bool = False) -> tuple[int, int]:
    """(width, height) with the long side ``max_dim``, the short side rounded; never
    enlarged unless ``scale_up``."""
    if not scale_up and max(width, height) <= max_dim:
        return width, height
    if height > width:
        return round(max_dim * width / height), max_dim
    return max_dim, round(max_dim * height / width)


@dataclass(frozen=True)
class Scale:
    size: int  # long side, px
    height: int
    width: int
    steps: int


def schedule(width: int, height: int, cfg: Config, min_side: int = 1) -> list[Scale]:
    """The scales for an image of ``width``×``height`` (any size: each scale resizes it).

    Deviation: scales whose short side is below ``min_side`` (the network's minimum) are
    left out, and the first one left gets ``initial_steps``; crowsonkb stops with an error.
    """
    if not cfg.min_scale:
        w, h = size_to_fit(width, height, cfg.size, scale_up=True)
        return [Scale(cfg.size, h, w, cfg.steps)]
    sizes = gen_scales(min(cfg.min_scale, cfg.size), cfg.size)
    fits = [size_to_fit(width, height, size, scale_up=True) for size in sizes]
    keep = [k for k, (w, h) in enumerate(fits) if min(w, h) >= min_side] or [len(sizes) - 1]
    first = cfg.steps if cfg.initial_steps is None else cfg.initial_steps
    return [Scale(sizes[k], fits[k][1], fits[k][0], first if k == keep[0] else cfg.steps) for k in keep]


def total_steps(cfg: Config, width: int | None = None, height: int | None = None, min_side: int = 1) -> int:
    """Steps over all scales, for an image of that shape (default: square)."""
    return sum(s.steps for s in schedule(width or cfg.size, height or cfg.size, cfg, min_side))


# ------------------------------------------------------------------------- resampling


def _cubic(x: np.ndarray, a: float = -0.75) -> np.ndarray:
    # Keys' cubic convolution kernel with torch's a = -0.75.
    x = np.abs(x)
    near = ((a + 2) * x - (a + 3)) * x * x + 1
    far = ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
    return np.where(x <= 1, near, np.where(x < 2, far, 0.0))


def resample_taps(n_in: int, n_out: int, kind: str, wrap: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(indices, weights), each (n_out, taps), of torch's ``F.interpolate(mode=kind,
    align_corners=False)`` along one axis; ``wrap`` reads indices modulo ``n_in``."""
    real = (n_in / n_out) * (np.arange(n_out) + 0.5) - 0.5
    if kind == "bicubic":
        base = np.floor(real)
        t = real - base
        idx = base[:, None] + np.arange(-1, 3)[None]
        w = _cubic(t[:, None] - np.arange(-1, 3)[None])
    elif kind == "bilinear":
        if not wrap:
            real = np.maximum(real, 0.0)  # torch clamps the source coordinate at 0
        base = np.floor(real)
        t = real - base
        idx = base[:, None] + np.arange(2)[None]
        w = np.stack([1 - t, t], axis=1)
    else:
        raise ValueError(f"unknown resampling {kind!r}")
    idx = idx.astype(np.int64)
    idx = np.mod(idx, n_in) if wrap else np.clip(idx, 0, n_in - 1)
    return idx, w


def resize(x: jax.Array, height: int, width: int, kind: str, wrap: bool = False) -> jax.Array:
    """Resize (…, H, W, C) to (…, height, width, C), separably, as torch's interpolate."""

    def along(y, axis, n_out):
        idx, w = resample_taps(y.shape[axis], n_out, kind, wrap)
        out = 0.0
        for k in range(idx.shape[1]):
            tap = jnp.take(y, jnp.asarray(idx[:, k]), axis=axis)
            shape = [1] * y.ndim
            shape[axis] = n_out
            out = out + tap * jnp.asarray(w[:, k], y.dtype).reshape(shape)
        return out

    return along(along(x, x.ndim - 3, height), x.ndim - 2, width)


# -------------------------------------------------------------------- carrying state


def upsampled_result(state: StepState, height: int, width: int, cfg: Config, wrap: bool = False) -> jax.Array:
    """The batched EMA image, bicubically resized to the next scale and clamped to the box."""
    images = jax.vmap(lambda s: result_image(s, cfg))(state)
    lo, hi = pixels.bounds(cfg.pixel_space)
    return jnp.clip(resize(images, height, width, "bicubic", wrap), lo, hi)


def resize_optimizer(opt_state, height: int, width: int, wrap: bool = False):
    """Adam's moments at the new size: m bicubic, v bilinear and ReLU; the count kept."""

    def fix(node):
        if isinstance(node, optax.ScaleByAdamState):
            mu = resize(node.mu, height, width, "bicubic", wrap)
            nu = jax.nn.relu(resize(node.nu, height, width, "bilinear", wrap))
            return node._replace(mu=mu, nu=nu)
        return node

    return jax.tree.map(fix, opt_state, is_leaf=lambda n: isinstance(n, optax.ScaleByAdamState))


def carry_state(previous: StepState, init: jax.Array, cfg: Config, wrap: bool = False) -> StepState:
    """A batched state that starts at ``init`` with a fresh EMA and, for Adam, the previous
    scale's moments resized."""
    fresh = jax.vmap(lambda x: init_state(x, cfg))(init)
    if cfg.optimizer != "adam":
        return fresh
    h, w = init.shape[1:3]
    return fresh._replace(opt_state=resize_optimizer(previous.opt_state, h, w, wrap))


# --------------------------------------------------------------------------- the loop


def run(
    build: Callable[[Scale, jax.Array | None], object],
    scales: Sequence[Scale],
    cfg: Config,
    *,
    chunk: int | None = None,
    boundaries: Sequence[int] = (),
    wrap: bool = False,
) -> Iterator:
    """Optimise scale by scale, yielding :class:`jaxstyle.stylize.Progress` with step counts
    over the whole schedule. ``build(scale, init)`` returns the scale's ``Problem``; ``init``
    is None at the first scale (the problem's own start), else the upsampled average.
    Returns (via ``StopIteration.value``) the last ``(problem, state)``."""
    from jaxstyle import stylize

    total = sum(s.steps for s in scales)
    offset, spent, compiled = 0, 0.0, 0.0
    problem = state = None
    for scale in scales:
        if state is None:
            problem, start = build(scale, None), None
        else:
            init = upsampled_result(state, scale.height, scale.width, cfg, wrap)
            problem = build(scale, init)
            start = carry_state(state, problem.init, cfg, wrap)
        local = [b - offset for b in boundaries if offset < b < offset + scale.steps]
        last = None
        for p in stylize.iterate(problem, chunk=chunk, boundaries=local, steps=scale.steps, state=start):
            last = p
            yield dataclasses.replace(
                p, step=offset + p.step, total=total, seconds=spent + p.seconds,
                compile_seconds=compiled + p.compile_seconds,
            )
        if last is None:  # a scale of 0 steps
            state = start if start is not None else jax.vmap(lambda x: init_state(x, cfg))(problem.init)
        else:
            state, spent, compiled = last.state, spent + last.seconds, compiled + last.compile_seconds
        offset += scale.steps
    return problem, state


def solve(build, scales, cfg, *, callback=None, chunk=None, boundaries=(), wrap=False) -> np.ndarray:
    """Run :func:`run` to the end; the final (B, H, W, 3) RGB [0,1] images (the EMA when
    the recipe averages)."""
    from jaxstyle.stylize import final_images

    gen = run(build, scales, cfg, chunk=chunk, boundaries=boundaries, wrap=wrap)
    while True:
        try:
            progress = next(gen)
        except StopIteration as stop:
            problem, state = stop.value
            return final_images(problem, state)
        if callback is not None:
            callback(progress)
