"""The one coarse-to-fine loop, as crowsonkb/style-transfer-pytorch does it
(``style_transfer.py`` @e7e2c71), used by stylize, batch, texture and inpaint alike; one
scale is the plain run.

- Each new scale starts from the previous scale's result (the bias-corrected EMA when the
  recipe averages), upsampled bicubically (torch's ``F.interpolate``: a = −0.75, half-pixel
  centres, edges clamped) and clamped to the pixel box; the EMA restarts there. Targets are
  recomputed from the original images at the new size (the caller's ``build``).
- Adam's moments are resized too, so the optimiser does not restart (see
  :mod:`jaxstyle.optim.optimizers`); other optimisers start afresh at each scale.

Deviation: with ``wrap`` (tileable textures) the resampling wraps around instead of
clamping at the edges, so the texture stays periodic from scale to scale.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import jax

from jaxstyle.config import Recipe
from jaxstyle.engine import compiled, loop
from jaxstyle.engine.targets import Problem
from jaxstyle.optim.step import StepState


@dataclass(frozen=True)
class Scale:
    size: int  # long side, px
    height: int
    width: int
    steps: int


# build(scale, init) -> the scale's Problem; init is None at the first scale (the problem's
# own start), else the previous result at this scale's size, in the recipe's pixel space.
Build = Callable[[Scale, "jax.Array | None"], Problem]


def run(build: Build, scales: Sequence[Scale], recipe: Recipe, *, mesh=None, chunk: int = 0,
        boundaries: Sequence[int] = (), wrap: bool = False) -> Iterator[loop.Progress]:
    """Optimise scale by scale, yielding :class:`~jaxstyle.engine.loop.Progress` with step
    counts over the whole schedule. Returns (as ``StopIteration.value``) the last
    ``(problem, state)``."""
    total = sum(s.steps for s in scales)
    offset, spent, compiled_s = 0, 0.0, 0.0
    problem: Problem | None = None
    state: StepState | None = None
    for scale in scales:
        if state is None:
            problem, start = build(scale, None), None
        else:
            init = compiled.carry_image(recipe, scale.height, scale.width, wrap, state)
            problem = build(scale, init)  # it may change the start (inpainting re-fixes it)
            start = compiled.carry_state(recipe, wrap, state, problem.init)
        local = [b - offset for b in boundaries if offset < b < offset + scale.steps]
        last = None
        for p in loop.iterate(problem, steps=scale.steps, state=start, mesh=mesh, chunk=chunk, boundaries=local):
            last = p
            yield dataclasses.replace(p, step=offset + p.step, total=total, seconds=spent + p.seconds,
                                      compile_seconds=compiled_s + p.compile_seconds)
        if last is not None:
            state, spent, compiled_s = last.state, spent + last.seconds, compiled_s + last.compile_seconds
        else:  # a scale of 0 steps
            state = start if start is not None else loop.init_state(problem, mesh)
        offset += scale.steps
    return problem, state


def solve(build: Build, scales: Sequence[Scale], recipe: Recipe, *, callback: Callable | None = None,
          **options) -> tuple[Problem, StepState]:
    """:func:`run` to the end, calling ``callback(progress)`` on the way; the last
    ``(problem, state)`` (images: :func:`jaxstyle.engine.loop.final_images`)."""
    gen = run(build, scales, recipe, **options)
    while True:
        try:
            progress = next(gen)
        except StopIteration as stop:
            return stop.value
        if callback is not None:
            callback(progress)


__all__ = ["Build", "Scale", "run", "solve"]
