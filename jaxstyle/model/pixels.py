"""Pixel spaces and the input conventions of VGG weights.

The optimised image lives in a *pixel space*, chosen by the recipe, because optimisers are
not invariant to it: Adam's learning rate and L-BFGS's first step depend on the units.

- ``"rgb01"``: RGB in [0, 1] (pystiche, crowsonkb).
- ``"caffe"``: BGR in [0, 255] minus the mean pixel (neural-style-pt, jcjohnson).

The network's weights expect their own *convention* (the same two names), applied by
:func:`network_input`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxstyle.model.names import CONVENTIONS, SPACES  # noqa: F401  (re-exported: the spaces' names)

# torchvision's ImageNet statistics (RGB, [0,1] units).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Caffe VGG mean pixel, in B, G, R order and [0,255] units.
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


def to_rgb01(x, space: str):
    """Pixels in ``space`` (…, 3) to RGB [0,1]."""
    if space == "rgb01":
        return x
    return (x + jnp.asarray(CAFFE_MEAN_BGR, x.dtype))[..., ::-1] / 255.0


def host(a) -> np.ndarray:
    """``a`` as a host array of the dtype JAX would give it (float32 unless x64 is on), so
    host-side preparation computes what the same jnp operations would."""
    a = np.asarray(a)
    return a.astype(jax.dtypes.canonicalize_dtype(a.dtype), copy=False)


def from_rgb01(r, space: str):
    """RGB [0,1] (…, 3) to pixels in ``space``."""
    if space == "rgb01":
        return r
    if isinstance(r, np.ndarray):  # host input stays on the host (no eager programs at start-up)
        return r[..., ::-1] * r.dtype.type(255.0) - np.asarray(CAFFE_MEAN_BGR, r.dtype)
    return r[..., ::-1] * 255.0 - jnp.asarray(CAFFE_MEAN_BGR, r.dtype)


def network_input(x, space: str, convention: str):
    """What the network sees for pixels ``x`` in ``space``, for weights of ``convention``."""
    if convention == "caffe":
        # Skip the round trip through [0,1] when the spaces agree, so Caffe-space
        # recipes see exactly the numbers their reference implementations see.
        return x if space == "caffe" else from_rgb01(x, "caffe")
    r = to_rgb01(x, space)
    return (r - jnp.asarray(IMAGENET_MEAN, r.dtype)) / jnp.asarray(IMAGENET_STD, r.dtype)


def bounds(space: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel (low, high) of the RGB [0,1] box, expressed in ``space``.

    Plain numpy, so that it is a constant inside a jitted function (a jnp computation there
    would be traced)."""
    lo, hi = np.zeros(3, np.float32), np.ones(3, np.float32)
    if space == "rgb01":
        return lo, hi
    mean = np.asarray(CAFFE_MEAN_BGR, np.float32)
    return lo[::-1] * 255.0 - mean, hi[::-1] * 255.0 - mean
