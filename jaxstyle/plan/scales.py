"""The scales of a run: one, or crowsonkb's coarse-to-fine schedule (``gen_scales``).

- Scales: long sides from ``min(min_scale, size)`` to ``size``, each √2 larger, computed
  downwards from ``size`` as round(size / 2^(i/2)) so the last one is ``size`` exactly.
- Steps: ``initial_steps`` at the first scale, ``steps`` at each later one.
- Shapes: one scale is the single-image resize (short side truncated, as neural-style-pt);
  several use crowsonkb's rounding. Both come from :func:`jaxstyle.io.image.fit_long_side`.
"""

from __future__ import annotations

from jaxstyle.config import Config
from jaxstyle.engine.scales import Scale
from jaxstyle.io.image import fit_long_side


def gen_scales(start: int, end: int) -> list[int]:
    """Long sides from ``start`` to ``end``, ×√2 apart, ending at ``end`` exactly."""
    scales, i, scale = set(), 0, end
    while scale >= start:
        scales.add(scale)
        i += 1
        scale = round(end / 2 ** (i / 2))
    return sorted(scales)


def schedule(height: int, width: int, cfg: Config, min_side: int = 1) -> list[Scale]:
    """The scales for an image of ``height``×``width`` (each scale resizes the original).

    Deviation: scales whose short side is below ``min_side`` (the network's minimum) are
    left out, and the first one left gets ``initial_steps``; crowsonkb stops with an error.
    """
    run = cfg.run
    if not run.min_scale:
        return [Scale(run.size, *fit_long_side(height, width, run.size), run.steps)]
    sizes = gen_scales(min(run.min_scale, run.size), run.size)
    fits = [fit_long_side(height, width, size, rounding="round") for size in sizes]
    keep = [k for k, hw in enumerate(fits) if min(hw) >= min_side] or [len(sizes) - 1]
    first = run.steps if run.initial_steps is None else run.initial_steps
    return [Scale(sizes[k], *fits[k], first if k == keep[0] else run.steps) for k in keep]


def total_steps(cfg: Config, height: int | None = None, width: int | None = None, min_side: int = 1) -> int:
    """Steps over all scales, for an image of that shape (default: square)."""
    return sum(s.steps for s in schedule(height or cfg.run.size, width or cfg.run.size, cfg, min_side))


__all__ = ["Scale", "gen_scales", "schedule", "total_steps"]
