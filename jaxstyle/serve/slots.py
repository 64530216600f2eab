"""The one door from ``jaxstyle serve`` into the engine: every engine call goes through here.

The engine's internals are being reworked; keeping all of its names in this module means a
change there costs one file. The scheduler sees four things: a prepared job (its targets
and optimiser state, batch axis 1), the key of its compiled program, one compiled chunk of
steps for a stack of jobs, and the images of a stacked state.

Grouping: jobs share a compiled step when their compiled config (the recipe: every field
that enters the program: :class:`jaxstyle.config.Recipe`) and the *exact*
content shape after resizing agree. Style images may differ in size: their statistics
(Gram or W2) have a per-layer shape set by the channel count alone. Exact shape only, no
padding or resizing to bucket sizes: padding would change the Gram statistics and the
content loss, and resizing would change the size the user asked for.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxstyle.config import Config, Recipe
from jaxstyle.engine import loop
from jaxstyle.engine.targets import Problem, batch_problem
from jaxstyle.errors import UserError
from jaxstyle.model.vgg import min_size
from jaxstyle.plan import inputs
from jaxstyle.plan.scales import schedule


@dataclass
class Prepared:
    """One job on the device: everything a slot needs, each leaf with a leading axis of 1."""

    key: tuple  # jobs with equal keys run in one compiled program
    cfg: Config
    targets: Any  # a Targets with every field batched (axis 1)
    state: Any  # the optimiser state (a StepState), batch axis 1
    steps: int
    finish: Any  # result RGB [0, 1] → the image to save (colour preservation)


def load_network(weights: str | None, cfg: Config):
    """(network, one-line description, "raw" | "normalized") for a weights spec, as the CLI
    loads it: Gatys' normalised network when the weights are not the preset's own."""
    from jaxstyle.api.network import load

    network, info, kind = load(weights, cfg)
    label = info.source if info.pretrained else f"{info.source} (random, not pretrained)"
    return network, label, kind


def check_supported(cfg: Config) -> None:
    """Refuse, in one line, what a slot cannot run: several scales, init files."""
    if cfg.run.min_scale:
        raise UserError(f"coarse-to-fine (min_scale={cfg.run.min_scale}) is not available in serve yet; "
                        "send min_scale=0")
    if cfg.run.init not in ("content", "random"):
        raise UserError("init must be 'content' or 'random' in serve")


def prepare_job(network, content_u8: np.ndarray, styles_u8: Sequence[np.ndarray], cfg: Config) -> Prepared:
    """The job's problem exactly as ``jaxstyle.stylize`` builds it (one scale), batch of one."""
    check_supported(cfg)
    originals = inputs.read(content_u8, list(styles_u8), cfg)
    (scale,) = schedule(*originals.shape, cfg, min_size(cfg.recipe.all_layers))
    inputs.check_memory(cfg, (scale.height, scale.width), originals.styles)
    at = inputs.at_scale(originals, scale, cfg)
    init = inputs.initial_image(at.content.shape[:2], cfg, at.content, at.init)[None]
    problem = batch_problem(network, cfg.recipe, [at.content], [at.styles], init,
                            blend_weights=cfg.run.style_blend_weights)
    # A batch of one holds its targets once (Problem.shared); give them the batch axis so
    # that jobs stack along it.
    targets = problem.targets._replace(**{
        k: jax.tree.map(lambda a: jnp.asarray(a)[None], getattr(problem.targets, k)) for k in problem.shared})
    state = loop.init_state(problem)
    content_rgb = at.content_rgb

    def finish(rgb: np.ndarray) -> np.ndarray:
        return originals.colours.finish(rgb, content_rgb)

    return Prepared((cfg.recipe, (scale.height, scale.width)), cfg, targets, state, scale.steps, finish)


def stack(trees: Sequence) -> Any:
    """Concatenate batch-axis trees (each leaf (b, ...)) into one along axis 0.

    Exact: under vmap each job's slice of the state is computed from its own slice alone.
    """
    if len(trees) == 1:
        return trees[0]
    return jax.tree.map(lambda *xs: jnp.concatenate(xs, axis=0), *trees)


def split(tree, count: int) -> list:
    """The inverse of :func:`stack` for trees of batch-axis-1 members."""
    if count == 1:
        return [tree]
    return [jax.tree.map(lambda a, i=i: a[i:i + 1], tree) for i in range(count)]


def run_chunk(network, recipe: Recipe, targets, state, n: int):
    """``n`` steps of the stacked jobs in one compiled call → (state, {term: (B,) float64}).

    ``state`` is donated: the caller must use the returned one.
    """
    problem = Problem(recipe, network, targets, None, ())
    state, terms = loop.run_chunk(problem, state, n)
    return state, {k: np.asarray(v[-1], np.float64) for k, v in terms.items()}


def images(recipe: Recipe, state) -> np.ndarray:
    """(B, H, W, 3) float32 RGB in [0, 1] of a (stacked) state."""
    return loop.final_images(Problem(recipe, None, None, None), state)


def default_chunk(cfg: Config) -> int:
    return loop.default_chunk(cfg.run.chunk)


def devices() -> list[str]:
    return [f"{d.platform}:{d.id}" for d in jax.devices()]


__all__ = ["Prepared", "check_supported", "default_chunk", "devices", "images", "load_network",
           "prepare_job", "run_chunk", "split", "stack"]
