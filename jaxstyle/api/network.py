"""The one place the API gets its network: a passed one, or loaded for the config — raw, or
Gatys' normalised version when the weights are not the ones the preset was tuned on."""

from __future__ import annotations

from jaxstyle.config import Config, with_network
from jaxstyle.model import normalize
from jaxstyle.model.vgg import VGG, build_vgg
from jaxstyle.model.weights import WeightsInfo, load_arrays


def load(weights, cfg: Config, *, progress: bool = False) -> tuple[VGG, WeightsInfo, str]:
    """(network, info, "raw" | "normalized") for the weights ``weights`` names (a path,
    ``"random:SEED"``, or None for the cached pretrained download of the preset's source)."""
    arrays, info = load_arrays(weights, model=cfg.recipe.model, source=cfg.weights_source, progress=progress)
    if arrays is None:  # untrained: raw, always
        return build_vgg(info.model, seed=int(info.source.split(":", 1)[1])), info, "raw"
    kind = normalize.network_for(cfg.weights_source, info)
    if kind == "normalized":
        arrays = normalize.normalized(arrays, info)
    return build_vgg(info.model, arrays, convention=info.convention), info, kind


def resolve(network: VGG | None, weights, cfg: Config, *, progress: bool = False
            ) -> tuple[VGG, WeightsInfo | None, Config]:
    """``(network, info, cfg)``: ``network`` as given (info None, ``cfg`` unchanged), else
    loaded by :func:`load`, with ``cfg`` moved to that network's loss weights (options that
    were asked for explicitly still win: :func:`jaxstyle.config.with_network`)."""
    if network is not None:
        return network, None, cfg
    network, info, kind = load(weights, cfg, progress=progress)
    return network, info, with_network(cfg, kind)


__all__ = ["load", "resolve"]
