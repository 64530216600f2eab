"""The Flax VGG equals a PyTorch VGG built with torchvision's layer layout.

The reference is written here from torchvision's published configuration (``cfgs["E"]``
for VGG19, ``"D"`` for VGG16: 3×3 convs with padding 1, ReLU, 2×2/2 max pooling, in one
``nn.Sequential`` whose indices are those of ``vgg19().features``). torchvision itself
is not imported. Both networks get the same random weights; the reference runs in
float64, ours in float32, and every layer must agree to 1e-4 of its largest activation.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers import caffe_input, layout, ours, random_weights, reference, run_reference, torchvision_input
from jaxstyle import config
from jaxstyle.errors import UserError
from jaxstyle.model.vgg import build_vgg, check_layers, min_size

def image(h=32, w=40, seed=0):
    return np.random.default_rng(seed).uniform(0, 1, (h, w, 3))


def assert_every_layer_matches(model, narrow, net_kwargs, call_kwargs, ref_input, *, x=None, **ref_kwargs):
    weights = random_weights(model, narrow)
    x = image() if x is None else x
    names = [name for name, _, _ in layout(model, narrow)]
    got = ours(model, weights, **net_kwargs)(jnp.asarray(x, jnp.float32), names, **call_kwargs)
    want = run_reference(reference(model, weights, narrow, **ref_kwargs), ref_input(x))
    assert sorted(got) == sorted(names)
    for name, ref in zip(names, want):
        out = np.asarray(got[name], np.float64)
        assert out.shape == ref.shape, name
        err = np.abs(out - ref).max() / np.abs(ref).max()
        assert err <= 1e-4, f"{name}: max relative error {err:.2e}"


def test_torchvision_indices_of_the_layout():
    # The reference's names sit at torchvision's indices (crowsonkb's style layers
    # 1, 6, 11, 20, 29 and content layer 22 are relu1_1 ... relu5_1 and relu4_2).
    names19 = [n for n, _, _ in layout("vgg19", False)]
    assert len(names19) == 37 and len(layout("vgg16", False)) == 31
    assert [names19.index(n) for n in config.GATYS_STYLE_LAYERS] == [1, 6, 11, 20, 29]
    assert names19.index("relu4_2") == 22 and names19[-1] == "pool5"


def test_vgg19_full_width_every_layer():
    assert_every_layer_matches("vgg19", False, {}, {}, torchvision_input)


def test_vgg16_every_layer():
    assert_every_layer_matches("vgg16", True, {}, {}, torchvision_input)


@pytest.mark.parametrize("scale", [1.0, 2.0])
def test_avg_pooling(scale):
    assert_every_layer_matches(
        "vgg19", True, {}, dict(pooling="avg", avg_pool_scale=scale), torchvision_input, pooling="avg", avg_scale=scale
    )


def test_caffe_convention_from_rgb01_pixels():
    assert_every_layer_matches("vgg19", True, dict(convention="caffe"), {}, caffe_input)


def test_caffe_convention_in_caffe_pixel_space():
    # Pixels already in Caffe space go to the network untouched.
    x = caffe_input(image())[0].transpose(1, 2, 0)
    assert_every_layer_matches(
        "vgg19", True, dict(convention="caffe"), dict(pixel_space="caffe"),
        lambda x: x.transpose(2, 0, 1)[None].copy(), x=x,
    )


def test_replicate_first_padding():
    assert_every_layer_matches(
        "vgg19", True, {}, dict(padding="replicate_first"), torchvision_input,
        padding=lambda name: "replicate" if name == "conv1_1" else "zeros",
    )


def test_circular_padding():
    assert_every_layer_matches(
        "vgg19", True, {}, dict(padding="circular"), torchvision_input, padding=lambda name: "circular"
    )


def test_stops_at_the_deepest_requested_layer():
    weights = random_weights("vgg19", True)
    for name in ("conv5_1", "conv5_2", "conv5_3", "conv5_4"):
        w, b = weights[name]
        weights[name] = (np.full_like(w, np.nan), b)
    net = ours("vgg19", weights)
    x = jnp.asarray(image(), jnp.float32)
    for layer in ("relu1_1", "pool3", "relu4_4", "pool4"):
        out = net(x, [layer])
        assert list(out) == [layer] and np.isfinite(np.asarray(out[layer])).all(), layer
    assert np.isnan(np.asarray(net(x, ["relu5_1"])["relu5_1"])).all()  # block 5 is reached when asked
    # The traced program holds only the convolutions it needs.
    for layers, convs in [(["relu1_1"], 1), (["relu2_1", "conv1_2"], 3), (["relu3_1"], 5), (["pool4"], 12)]:
        jaxpr = jax.make_jaxpr(lambda x: net(x, layers))(x)
        assert str(jaxpr).count("conv_general_dilated") == convs, layers


def test_batched_input_matches_single_images():
    weights = random_weights("vgg19", True)
    net = ours("vgg19", weights)
    xs = np.stack([image(seed=1), image(seed=2)]).astype(np.float32)
    batch = net(jnp.asarray(xs), ["relu3_1"])["relu3_1"]
    for i in range(2):
        single = net(jnp.asarray(xs[i]), ["relu3_1"])["relu3_1"]
        np.testing.assert_allclose(np.asarray(batch[i]), np.asarray(single), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("model", ["vgg19", "vgg16"])
def test_min_size(model):
    names = [n for n, _, _ in layout(model, True)]
    for i, name in enumerate(names):
        pools = sum(1 for n in names[: i + 1] if n.startswith("pool"))
        assert min_size([name]) == 2**pools, name  # each 2×2/2 pool floors the side by half
    assert min_size(["relu1_1", "relu5_1", "relu2_1"]) == 16
    assert min_size(["pool5"]) == 32
    # At exactly the minimum every requested layer has at least one pixel.
    net = ours(model, random_weights(model, True))
    out = net(jnp.asarray(image(32, 33), jnp.float32), ["pool5", "relu5_1"])
    assert out["pool5"].shape[:2] == (1, 1) and out["relu5_1"].shape[:2] == (2, 2)


@pytest.mark.parametrize(
    "layers,model,bad",
    [
        (["relu4_2", "relu9_1"], "vgg19", "relu9_1"),
        (["relu4_4"], "vgg16", "relu4_4"),  # VGG16 has three convs in block 4
        (["conv1_1", "relu4-2"], "vgg19", "relu4-2"),
        (["pool6"], "vgg19", "pool6"),
        ([""], "vgg19", ""),
    ],
)
def test_check_layers_names_the_bad_layer(layers, model, bad):
    with pytest.raises(UserError) as err:
        check_layers(layers, model)
    message = str(err.value)
    assert repr(bad) in message and "\n" not in message and "relu4_2" in message


def test_unknown_layer_in_config_is_a_user_error():
    with pytest.raises(UserError, match="relu6_1"):
        config.make_config(style_layers=("relu1_1", "relu6_1"))
    with pytest.raises(UserError, match="relu4_4"):
        config.make_config(model="vgg16", content_layers=("relu4_4",))
    check_layers(["relu4_4"], "vgg19")  # fine for VGG19


def test_weights_with_wrong_shape_or_missing_layer_are_named():
    weights = random_weights("vgg19", True)
    arrays = {}
    for name, (w, b) in weights.items():
        arrays[f"{name}.kernel"] = w.transpose(2, 3, 1, 0).astype(np.float32)
        arrays[f"{name}.bias"] = b.astype(np.float32)
    bad = dict(arrays)
    bad["conv3_2.kernel"] = bad["conv3_2.kernel"][:, :, :5]
    with pytest.raises(UserError, match=r"conv3_2\.kernel"):
        build_vgg("vgg19", bad)
    missing = {k: v for k, v in arrays.items() if not k.startswith("conv4_3.")}
    with pytest.raises(UserError, match=r"conv4_3"):
        build_vgg("vgg19", missing)


@pytest.mark.parametrize("hw", [(1, 1), (2, 2), (2, 4), (3, 3), (2, 8)])
@pytest.mark.parametrize("pad", [0, 1])
def test_convolution_of_inputs_smaller_than_the_kernel(hw, pad):
    """Below 9 pixels the conv is one matrix product (XLA would swap the operands, ~25×
    slower): the same numbers as a float64 numpy convolution, and the same input gradient
    as XLA's own derivative of its convolution."""
    from jaxstyle.model import vgg

    rng = np.random.default_rng(hw[0] * 10 + hw[1] + pad)
    h, w = hw[0] + 2 * (1 - pad), hw[1] + 2 * (1 - pad)  # padding 0: a 3×3 output needs 2 more pixels
    x = rng.standard_normal((2, h, w, 5))
    k = rng.standard_normal((3, 3, 5, 4))
    xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    ho, wo = xp.shape[1] - 2, xp.shape[2] - 2
    want = np.zeros((2, ho, wo, 4))
    for i in range(3):
        for j in range(3):
            want += np.einsum("bhwc,co->bhwo", xp[:, i:i + ho, j:j + wo, :], k[i, j])
    x32, k32 = jnp.asarray(x, jnp.float32), jnp.asarray(k, jnp.float32)
    got = np.asarray(vgg._conv(x32, k32, pad), np.float64)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())
    cot = jnp.asarray(rng.standard_normal(want.shape), jnp.float32)
    plain = lambda v: jax.lax.conv_general_dilated(v, k32, (1, 1), ((pad, pad), (pad, pad)),  # noqa: E731
                                                   dimension_numbers=("NHWC", "HWIO", "NHWC"))
    want_dx = jax.vjp(plain, x32)[1](cot)[0]
    got_dx = jax.vjp(lambda v: vgg._conv_pre(v, k32, vgg.grad_kernel(k32), pad), x32)[1](cot)[0]
    np.testing.assert_allclose(np.asarray(got_dx), np.asarray(want_dx), rtol=1e-5,
                               atol=1e-5 * float(jnp.abs(want_dx).max()))
