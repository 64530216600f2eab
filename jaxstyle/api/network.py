"""The one place the API gets its network: a passed one, or loaded for the config — raw, or
Gatys' normalised version when the weights are not the ones the preset was tuned on.

Reading the weights (:func:`arrays`) needs numpy only, so a command can start it in a thread
(:func:`prefetch`) while JAX and Flax are still importing; building the Flax module from the
arrays (:func:`load`) is what needs JAX.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING

from jaxstyle.config import Config, with_network
from jaxstyle.model import normalize
from jaxstyle.model.weights import WeightsInfo, cached_path, load_arrays

if TYPE_CHECKING:
    from jaxstyle.model.vgg import VGG


def arrays(weights, cfg: Config, *, progress: bool = False, calibrate: bool = True
           ) -> tuple[dict | None, WeightsInfo, str]:
    """``(arrays, info, "raw" | "normalized")`` for ``weights`` (a path, ``"random:SEED"``, or
    None for the cached pretrained download of the preset's source); ``arrays`` is None for
    untrained weights, which stay raw. ``calibrate=False``: ``LookupError`` where normalising
    would first have to measure the network (no cached factors), which needs JAX."""
    found, info = load_arrays(weights, model=cfg.recipe.model, source=cfg.weights_source, progress=progress)
    if found is None:
        return None, info, "raw"
    kind = normalize.network_for(cfg.weights_source, info)
    if kind == "normalized":
        found = normalize.normalized(found, info, calibrate=calibrate)
    return found, info, kind


def prefetch(weights, cfg: Config) -> Future | None:
    """:func:`arrays` started in a thread, or None where reading could download or print (not
    cached yet, random weights): those stay in order on the caller's thread, after its own
    checks. The thread never touches JAX (a first normalisation, which must run the network,
    is left to :func:`load`: the result is then None). Its error, if any, is raised by
    ``result()``."""
    if weights is None:
        local = cached_path(cfg.recipe.model, cfg.weights_source).is_file()
    else:
        local = not str(weights).startswith("random:") and Path(weights).expanduser().is_file()
    if not local:
        return None
    future: Future = Future()

    def work():
        try:
            future.set_result(arrays(weights, cfg, calibrate=False))
        except LookupError:
            future.set_result(None)
        except BaseException as e:  # noqa: BLE001 - handed to whoever asks for the result
            future.set_exception(e)

    threading.Thread(target=work, name="jaxstyle-weights", daemon=True).start()
    return future


def load(weights, cfg: Config, *, progress: bool = False, prefetched: Future | None = None
         ) -> tuple[VGG, WeightsInfo, str]:
    """(network, info, "raw" | "normalized") for the weights ``weights`` names; ``prefetched``:
    :func:`prefetch` of the same weights and config, used instead of reading them again."""
    from jaxstyle.model.vgg import build_vgg

    got = prefetched.result() if prefetched is not None else None
    found, info, kind = got if got is not None else arrays(weights, cfg, progress=progress)
    if found is None:  # untrained: raw, always
        return build_vgg(info.model, seed=int(info.source.split(":", 1)[1])), info, "raw"
    return build_vgg(info.model, found, convention=info.convention), info, kind


def resolve(network: VGG | None, weights, cfg: Config, *, progress: bool = False, prefetched: Future | None = None
            ) -> tuple[VGG, WeightsInfo | None, Config]:
    """``(network, info, cfg)``: ``network`` as given (info None, ``cfg`` unchanged), else
    loaded by :func:`load`, with ``cfg`` moved to that network's loss weights (options that
    were asked for explicitly still win: :func:`jaxstyle.config.with_network`)."""
    if network is not None:
        return network, None, cfg
    network, info, kind = load(weights, cfg, progress=progress, prefetched=prefetched)
    return network, info, with_network(cfg, kind)


__all__ = ["arrays", "load", "prefetch", "resolve"]
