"""The one place the API gets its network: a passed one, or loaded for the config."""

from __future__ import annotations

from jaxstyle.config import Config
from jaxstyle.model.vgg import VGG
from jaxstyle.model.weights import WeightsInfo, load_vgg


def resolve(network: VGG | None, weights, cfg: Config, *, progress: bool = False) -> tuple[VGG, WeightsInfo | None]:
    """``network`` when given (its info unknown: None), else the weights ``weights`` names
    (a path, ``"random:SEED"``, or None for the cached pretrained download of the preset's
    source) loaded for ``cfg``'s model."""
    if network is not None:
        return network, None
    return load_vgg(weights, model=cfg.recipe.model, source=cfg.weights_source, progress=progress)


__all__ = ["resolve"]
