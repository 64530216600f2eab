"""jaxstyle: neural style transfer (Gatys et al.) as one jit-compiled JAX program.

The public API: :func:`stylize`, :func:`texture`, :func:`inpaint`, :func:`stylize_video`,
:func:`run_batch` / :func:`stylize_batch`, the config (:func:`make_config`, :class:`Config`,
:class:`Recipe`, :class:`RunSettings`, :data:`PRESETS`), images (:func:`load_image`,
:func:`save_image`) and the network (:func:`load_vgg`, :func:`build_vgg`).

Names are imported on first use: ``import jaxstyle`` (and so every ``jaxstyle`` command,
``--help`` included) does not pay for JAX until something needs it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.2.0"

_EXPORTS = {
    "stylize": "jaxstyle.api.transfer",
    "texture": "jaxstyle.api.texture",
    "inpaint": "jaxstyle.api.inpaint",
    "stylize_video": "jaxstyle.api.video",
    "run_batch": "jaxstyle.api.batch",
    "stylize_batch": "jaxstyle.api.batch",
    "PRESETS": "jaxstyle.config",
    "Config": "jaxstyle.config",
    "Recipe": "jaxstyle.config",
    "RunSettings": "jaxstyle.config",
    "make_config": "jaxstyle.config",
    "Progress": "jaxstyle.engine.loop",
    "UserError": "jaxstyle.errors",
    "load_image": "jaxstyle.io.image",
    "save_image": "jaxstyle.io.image",
    "VGG": "jaxstyle.model.vgg",
    "build_vgg": "jaxstyle.model.vgg",
    "load_vgg": "jaxstyle.model.weights",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'jaxstyle' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


if TYPE_CHECKING:  # for type checkers and IDEs: the same names, eagerly
    from jaxstyle.api.batch import run_batch, stylize_batch
    from jaxstyle.api.inpaint import inpaint
    from jaxstyle.api.texture import texture
    from jaxstyle.api.transfer import stylize
    from jaxstyle.api.video import stylize_video
    from jaxstyle.config import PRESETS, Config, Recipe, RunSettings, make_config
    from jaxstyle.engine.loop import Progress
    from jaxstyle.errors import UserError
    from jaxstyle.io.image import load_image, save_image
    from jaxstyle.model.vgg import VGG, build_vgg
    from jaxstyle.model.weights import load_vgg
