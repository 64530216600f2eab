"""``jaxstyle.stylize``: one content image in the style of one or more style images."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import numpy as np

from jaxstyle.api.network import resolve
from jaxstyle.config import Config, make_config
from jaxstyle.engine import loop, scales
from jaxstyle.engine.targets import Problem, batch_problem
from jaxstyle.errors import UserError
from jaxstyle.model.vgg import VGG, min_size
from jaxstyle.objective import guided
from jaxstyle.plan import inputs
from jaxstyle.plan.scales import schedule


def stylize(
    content,
    style,
    *,
    weights=None,
    preset: str = "gatys",
    callback: Callable[[loop.Progress], None] | None = None,
    network: VGG | None = None,
    boundaries: Sequence[int] = (),
    masks: Sequence | None = None,
    **options,
) -> np.ndarray:
    """Stylize ``content`` with ``style`` (a path/array, or a list of them to blend).

    ``options`` are the flat option names of :func:`jaxstyle.config.make_config` (``steps=``,
    ``size=``, ``optimizer=``, …; the CLI's names without dashes); defaults come from the
    preset. ``weights`` is a path, ``"random:SEED"`` or ``None`` for the cached pretrained
    weights (or pass a loaded ``network``). ``callback`` sees a
    :class:`~jaxstyle.engine.loop.Progress` after every compiled chunk of steps and at each
    step number in ``boundaries``. ``masks``: one mask (path or H×W array in [0, 1]) per
    style, white where it applies. Returns H×W×3 float32 RGB in [0, 1].
    """
    cfg = make_config(preset, **options)
    styles = list(style) if isinstance(style, (list, tuple)) else [style]
    originals = inputs.read(content, styles, cfg, masks=masks)
    plan = schedule(*originals.shape, cfg, min_size(cfg.recipe.all_layers))
    inputs.check_memory(cfg, (plan[-1].height, plan[-1].width), originals.styles)
    network, _, cfg = resolve(network, weights, cfg)
    return run(network, originals, cfg, plan, callback=callback, boundaries=boundaries)


def problem(network: VGG, content_rgb01: np.ndarray, styles_rgb01: Sequence[np.ndarray], cfg: Config,
            init=None, **extra_targets) -> Problem:
    """One content image (float32 RGB [0, 1]) and its styles as a problem of one, starting
    from ``init`` (H×W×3 in the recipe's pixel space; default: from ``cfg.run.init``)."""
    if init is None:
        init = inputs.initial_image(content_rgb01.shape[:2], cfg, content_rgb01)
    return batch_problem(network, cfg.recipe, [content_rgb01], [list(styles_rgb01)],
                         jax.device_put(np.asarray(init)[None]),  # host-side: no program for the new axis
                         blend_weights=cfg.run.style_blend_weights, **extra_targets)


def run(network: VGG, originals: inputs.Originals, cfg: Config, plan: Sequence[scales.Scale], *,
        callback=None, boundaries: Sequence[int] = ()) -> np.ndarray:
    """Solve one prepared content image over its scales; the finished H×W×3 RGB [0, 1]."""
    recipe = cfg.recipe
    last = {}

    def build(scale: scales.Scale, init):
        at = inputs.at_scale(originals, scale, cfg)
        last["rgb"] = at.content_rgb
        extra = {}
        if at.masks is not None:
            extra["shared_masks"] = guided.layer_masks(np.stack(at.masks), recipe.style_layers)
        start = inputs.initial_image(at.content.shape[:2], cfg, at.content, at.init) if init is None else init[0]
        return problem(network, at.content, at.styles, cfg, start, **extra)

    def check(progress: loop.Progress) -> None:
        # One image: a loss that left the finite numbers ends the run with what to change.
        for _, (name, value) in loop.nonfinite(progress.terms).items():
            raise UserError(loop.nonfinite_advice(name, value, progress.step - 1, recipe))
        if callback is not None:
            callback(progress)

    solved, state = scales.solve(build, plan, recipe, callback=check, chunk=cfg.run.chunk, boundaries=boundaries)
    result = loop.final_images(solved, state)[0]
    return originals.colours.finish(result, last["rgb"])


__all__ = ["problem", "run", "stylize"]
