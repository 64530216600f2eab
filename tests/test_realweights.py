"""The real-weights tier: the pretrained VGG-19 from the package index (Caffe convention).

Run with ``python -m pytest -q -m realweights tests/test_realweights.py``. Everything is
measured with an independent PyTorch VGG-19 forward built here from the safetensors arrays
(not with jaxstyle's loss code), on small images (≤ 128 px) and few steps:

- (a) neural-style-pt's own printed numbers with these weights (``data/nspt_realweights_128.csv``,
  see ``data/REALWEIGHTS.md``): the conversion reproduces row 1 to 1e-5 relative; the
  ``nspt`` preset reproduces the first two rows to 1e-6 and stays within the float32 envelope
  of neural-style-pt's own program after (the trajectory is chaotic from the first curvature
  pair on), and matches a float64 neural-style-pt run to 1e-9 on all 20 rows;
- (b) every preset stylizes: Gatys et al.'s style distance to the style drops ≥ 20× from the
  content image's (quality: to its 200-step floor), the stricter scale-free one to each
  preset's measured floor, and the result stays closer to the content than the style image is;
- (c) texture synthesis matches the style's Gram statistics;
- the Caffe network and its exactly folded torchvision-convention twin give the same
  features after Gatys' normalisation, and different loss scales before it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F

pytestmark = [pytest.mark.realweights, pytest.mark.slow]

DATA = Path(__file__).parent / "data"
CONTENT = DATA / "nspt_realweights_content_128.png"
STYLE = DATA / "nspt_realweights_style_128.png"
STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
BLOCKS19 = (2, 2, 4, 4, 4)
CONVS = [f"conv{b}_{i}" for b, n in enumerate(BLOCKS19, start=1) for i in range(1, n + 1)]
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
IMNET_MEAN, IMNET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


# ----------------------------------------------------------------------------- independent torch VGG


class TorchVGG:
    """VGG-19 to relu5_1 in plain PyTorch (NCHW, float64) from our HWIO arrays."""

    def __init__(self, arrays, convention):
        self.convention = convention
        self.w = {n: (torch.tensor(np.asarray(arrays[f"{n}.kernel"]).transpose(3, 2, 0, 1), dtype=torch.float64),
                      torch.tensor(np.asarray(arrays[f"{n}.bias"]), dtype=torch.float64)) for n in CONVS}

    def __call__(self, rgb01_hwc, layers):
        x = torch.tensor(np.asarray(rgb01_hwc, np.float64)).permute(2, 0, 1)[None]
        if self.convention == "caffe":
            x = x.flip(1) * 255.0 - torch.tensor(CAFFE_MEAN_BGR, dtype=x.dtype).view(1, 3, 1, 1)
        else:
            x = (x - torch.tensor(IMNET_MEAN, dtype=x.dtype).view(1, 3, 1, 1)) / torch.tensor(IMNET_STD, dtype=x.dtype).view(1, 3, 1, 1)
        out, last = {}, max(CONVS.index("conv" + l[4:]) for l in layers)
        for i, n in enumerate(CONVS[: last + 1]):
            x = F.relu(F.conv2d(x, *self.w[n], padding=1))
            if "relu" + n[4:] in layers:
                out["relu" + n[4:]] = x[0]
            if i + 1 < len(CONVS) and CONVS[i + 1][4] != n[4]:
                x = F.max_pool2d(x, 2, 2)
        return out


def gram(f, norm="hw"):
    c = f.shape[0]
    f = f.reshape(c, -1)
    return f @ f.T / (f.shape[1] * (c if norm == "chw" else 1))


def style_distance(net, x, style):
    """Mean over the five style layers of ‖G(x) − G(s)‖² / ‖G(s)‖² (scale-free per layer)."""
    fx, fs = net(x, STYLE_LAYERS), net(style, STYLE_LAYERS)
    return float(np.mean([((gram(fx[l]) - gram(fs[l])) ** 2).sum() / (gram(fs[l]) ** 2).sum() for l in STYLE_LAYERS]))


def paper_style_distance(net, x, style):
    """Gatys et al. (2016) eq. 4–5 on the raw network: Σ_l w_l E_l, w_l = 1/5,
    E_l = ‖G_l(x) − G_l(s)‖² / (4 N_l² M_l²) with unnormalised Grams (N_l channels, M_l
    positions; the style's Gram is rescaled to x's M_l when the sizes differ). On the raw Caffe
    network relu4_1's activations dominate it (measured: 99.5 % of the content image's value)."""
    fx, fs = net(x, STYLE_LAYERS), net(style, STYLE_LAYERS)
    total = 0.0
    for l in STYLE_LAYERS:
        n, m = fx[l].shape[0], fx[l].shape[1] * fx[l].shape[2]
        gx, gs = gram(fx[l]) * m, gram(fs[l]) * m  # unnormalised, at x's number of positions
        total += float(((gx - gs) ** 2).sum() / (4.0 * n * n * m * m)) / len(STYLE_LAYERS)
    return total


def content_distance(net, x, content):
    """‖F(x) − F(c)‖² / ‖F(c)‖² at relu4_2."""
    fx, fc = net(x, ("relu4_2",))["relu4_2"], net(content, ("relu4_2",))["relu4_2"]
    return float(((fx - fc) ** 2).sum() / (fc ** 2).sum())


# ----------------------------------------------------------------------------- fixtures


def load_png(path):
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), np.float32) / 255.0


def resize(img, hw):
    from PIL import Image

    u8 = Image.fromarray((np.clip(img, 0, 1) * 255).round().astype(np.uint8))
    return np.asarray(u8.resize((hw[1], hw[0]), Image.BICUBIC), np.float32) / 255.0


@pytest.fixture(scope="module")
def real(real_weights):
    from jaxstyle.model.weights import read_weights

    arrays, info = read_weights(real_weights)
    assert info.convention == "caffe" and info.pretrained
    return arrays, info


@pytest.fixture(scope="module")
def torch_net(real):
    return TorchVGG(real[0], "caffe")


@pytest.fixture(scope="module")
def normalized_net(real):
    """jaxstyle's normalised network of the real weights (what presets not tuned on them use)."""
    from jaxstyle.model import normalize
    from jaxstyle.model.vgg import build_vgg

    arrays, info = real
    return build_vgg(info.model, normalize.normalized(arrays, info), convention=info.convention)


# ----------------------------------------------------------------------------- (a) neural-style-pt's numbers


def oracle_rows():
    rows = np.genfromtxt(DATA / "nspt_realweights_128.csv", delimiter=",", names=True)
    assert len(rows) == 20
    return rows


def test_conversion_reproduces_nspt_first_evaluation(torch_net):
    """Row 1 = neural-style-pt's loss terms at the content image (init image)."""
    row = oracle_rows()[0]
    c, s = load_png(CONTENT), load_png(STYLE)
    assert c.shape == (97, 128, 3) and s.shape == (128, 128, 3)
    fx = torch_net(c, STYLE_LAYERS + ("relu4_2",))
    fs = torch_net(s, STYLE_LAYERS)
    for i, layer in enumerate(STYLE_LAYERS, start=1):
        term = 100.0 * float(((gram(fx[layer], "chw") - gram(fs[layer], "chw")) ** 2).mean())
        assert term == pytest.approx(row[f"style{i}"], rel=1e-5), layer
    assert row["content1"] == 0.0
    caffe = c[..., ::-1].astype(np.float64) * 255.0 - np.array(CAFFE_MEAN_BGR)
    tv = 1e-3 * (np.abs(np.diff(caffe, axis=0)).sum() + np.abs(np.diff(caffe, axis=1)).sum())
    styles = sum(row[f"style{i}"] for i in range(1, 6))
    assert tv + styles == pytest.approx(row["total"], rel=1e-5)


# Why not ~1e-3 over all twenty rows (REALWEIGHTS.md's expectation): measured with
# ``python -m bench.nspt_replay``, neural-style-pt's own algorithm in plain torch 2.13 on this
# 2-core CPU. That replay is bit-identical to the oracle at iteration 1 and prints the same
# total at 2, yet misses it by 2.0e-1 at 3 and 2.2e-1 at 4 (float32, 1 or 2 threads); without
# oneDNN by 1.5e-1 at 3, in float64 by 1.2e-1 at 3; and the same float32 program run with 1
# instead of 2 threads drifts from 7e-8 at 3 to 2.5e-4 at 10 and 1.4e-2 at 18. The cause: the
# first step is t = 1/‖g‖₁ ≈ 6e-8 (≈ 3e-5 per pixel, a few float32 ulps of Caffe pixels), so
# the first curvature pair's yᵀs is a finite difference dominated by rounding (float64 4.0e-3;
# float32: torch 9.5e-3, torch without oneDNN 4.3e-3, jaxstyle 3.3e-3) and the second step
# scales with 1/yᵀs; later steps amplify any difference ~1.4x per iteration. No independent
# float32 implementation can meet 1e-3 past row 2; the algorithm itself is checked tightly in
# float64 (next test).
NSPT_FLOAT32_ENVELOPE = 0.25  # the largest gap of a faithful float32 torch replay: 2.2e-1 (row 4)


def test_nspt_preset_reproduces_nspt_trajectory(real_weights):
    import jaxstyle

    rows = oracle_rows()
    seen = []

    def record(progress):
        terms = {k: float(np.asarray(v).reshape(-1)[0]) for k, v in progress.terms.items()}
        seen.append((progress.step, terms))

    jaxstyle.stylize(str(CONTENT), str(STYLE), weights=real_weights, preset="nspt", size=128, steps=20,
                     init="content", chunk=1, callback=record)
    by_step = dict(seen)
    assert sorted(by_step) == list(range(1, 21))
    first = by_step[1]
    for i, layer in enumerate(STYLE_LAYERS, start=1):
        assert first[f"style:{layer}"] == pytest.approx(rows[0][f"style{i}"], rel=1e-5), layer
    totals = np.array([by_step[k]["total"] for k in range(1, 21)])
    rel = np.abs(totals - rows["total"]) / rows["total"]
    for k in range(20):
        print(f"iteration {k + 1}: jaxstyle {totals[k]:.9g} neural-style-pt {rows['total'][k]:.9g} rel {rel[k]:.2e}")
    # Before the first curvature pair is used: the start and the first step t = min(1, 1/‖g‖₁)
    # (measured: 8.7e-8 and 0; the decrease of the first step, 776 in the oracle, is resolved
    # to about ±8 by its float32 totals).
    assert rel[0] <= 1e-6 and rel[1] <= 1e-6
    assert totals[0] - totals[1] == pytest.approx(rows["total"][0] - rows["total"][1], rel=0.05)
    # From iteration 3 on the float32 trajectory is chaotic (above). Measured for jaxstyle:
    # 9.3e-5 at 3, <= 6.7e-4 up to 8, 2.1e-3 at 9 growing ~1.4x per iteration to 2.0e-2 at 19 and 20;
    # asserted: within what neural-style-pt's own program reaches under harmless changes.
    assert rel[2:].max() <= NSPT_FLOAT32_ENVELOPE, rel
    assert rows[-1]["total"] < 0.5 * rows[0]["total"]  # the trajectory really moves
    assert totals[-1] < 0.5 * totals[0]


def _nspt_torch_float64(arrays, content_caffe, style_caffe, steps):
    """neural-style-pt's objective and optimizer call, in float64 torch: (steps, 7) terms
    (content, style1..5, total) at each evaluation. Written from its neural_style.py: TV on
    the input, MSE losses, Gram / nelement, max pooling, and ONE ``optimizer.step(feval)`` with
    ``max_iter=steps`` and tolerances -1, as it calls torch's L-BFGS."""
    w = {n: (torch.tensor(np.asarray(arrays[f"{n}.kernel"], np.float64).transpose(3, 2, 0, 1)),
             torch.tensor(np.asarray(arrays[f"{n}.bias"], np.float64))) for n in CONVS}

    def features(x):
        out = {}
        for i, n in enumerate(CONVS[: CONVS.index("conv5_1") + 1]):
            x = F.relu(F.conv2d(x, *w[n], padding=1))
            out["relu" + n[4:]] = x
            if n != "conv5_1" and CONVS[i + 1][4] != n[4]:
                x = F.max_pool2d(x, 2, 2)
        return out

    def grams(f):
        c = f.shape[1]
        flat = f.reshape(c, -1)
        return flat @ flat.T / f.numel()

    with torch.no_grad():
        content_target = features(content_caffe)["relu4_2"]
        style_targets = {n: grams(f) for n, f in features(style_caffe).items() if n in STYLE_LAYERS}
    img = torch.nn.Parameter(content_caffe.clone())
    optimizer = torch.optim.LBFGS([img], max_iter=steps, tolerance_change=-1, tolerance_grad=-1)
    printed = []

    def feval():
        optimizer.zero_grad()
        f = features(img)
        terms = [5.0 * F.mse_loss(f["relu4_2"], content_target)]
        terms += [100.0 * F.mse_loss(grams(f[n]), style_targets[n]) for n in STYLE_LAYERS]
        tv = 1e-3 * ((img[:, :, 1:, :] - img[:, :, :-1, :]).abs().sum() + (img[:, :, :, 1:] - img[:, :, :, :-1]).abs().sum())
        loss = 0
        for t in terms + [tv]:
            loss = loss + t
        loss.backward()
        printed.append([float(t.detach()) for t in terms] + [float(loss.detach())])
        return loss

    optimizer.step(feval)
    return np.array(printed)


def test_nspt_preset_matches_neural_style_pt_float64(real, real_weights):
    """The algorithm, tightly: the same 20 evaluations in float64, where rounding does not
    reach the trajectory (measured: ≤ 9e-12 relative on every term of every row)."""
    import jax
    import jax.numpy as jnp

    from jaxstyle.api import transfer
    from jaxstyle.api.network import resolve
    from jaxstyle.config import make_config
    from jaxstyle.engine import loop
    from jaxstyle.model import pixels

    c, s = load_png(CONTENT), load_png(STYLE)
    def caffe(rgb01):  # 1×3×H×W float64 Caffe pixels
        return torch.tensor(rgb01[..., ::-1].astype(np.float64) * 255.0 - np.array(CAFFE_MEAN_BGR)).permute(2, 0, 1)[None].contiguous()

    ref = _nspt_torch_float64(real[0], caffe(c), caffe(s), 20)
    with jax.enable_x64(True):
        cfg = make_config("nspt", size=128, steps=20, init="content")
        network, _, cfg = resolve(None, real_weights, cfg)
        for name in CONVS:
            conv = getattr(network, name)
            conv.kernel.set_value(jnp.asarray(conv.kernel[...], jnp.float64))
            conv.bias.set_value(jnp.asarray(conv.bias[...], jnp.float64))
        c64, s64 = c.astype(np.float64), s.astype(np.float64)
        prob = transfer.problem(network, c64, [s64], cfg, init=pixels.from_rgb01(jnp.asarray(c64), "caffe"))
        assert prob.init.dtype == jnp.float64
        ours = []
        for progress in loop.iterate(prob, steps=20, chunk=1):
            t = {k: float(np.asarray(v)[0]) for k, v in progress.terms.items()}
            ours.append([t["content"]] + [t[f"style:{n}"] for n in STYLE_LAYERS] + [t["total"]])
    ours = np.array(ours)
    assert ours[-1, -1] < 0.5 * ours[0, -1]
    np.testing.assert_allclose(ours[:, 1:], ref[:, 1:], rtol=1e-9)
    np.testing.assert_allclose(ours[:, 0], ref[:, 0], rtol=1e-9, atol=1e-12)  # content is 0 at row 1


# ----------------------------------------------------------------------------- (b) every preset stylizes


PRESET_RUNS = {
    # Short versions of each preset at 128 px (what a 2-core CI can afford).
    "gatys": {"steps": 100},
    # neural-style-pt's own start (noise).
    "nspt": {"steps": 150},
    # At 128 px fast's coarse-to-fine schedule is one scale: initial_steps is its length.
    "fast": {"initial_steps": 150},
    # crowsonkb's Adam, EMA output and W2 (Newton–Schulz on 512×512 covariances: ~0.4 s a step
    # here) only get 200 of the recipe's 1000 steps at this size.
    "quality": {"initial_steps": 200},
}
# Two measures of "stylized", both by the independent torch network above. Gatys et al.'s own
# style distance (paper_style_distance) must drop >= 20x for every preset run to its length
# here; quality gets 200 of its 1000 steps, so its floor is what 200 steps reach. The stricter
# scale-free measure (style_distance: every layer counts equally) reaches 20x only with gatys:
# neural-style-pt's layer weights on the raw Caffe network leave relu5_1 almost free (3.8x on
# that layer, >= 40x on every other), which nspt and fast reproduce. Measured on the
# package-index VGG-19 at 128 px (2-core CPU), Gatys / scale-free / content distance (style
# image 1.18): gatys 21.1x / 22.5x / 0.67; nspt 104x / 8.6x / 0.60; fast 64x / 8.0x / 0.57;
# quality 12.9x / 7.9x / 0.89 (after its full 1000 steps: 21.3x / 13.1x / 1.04, not run here:
# ~0.5 s a step). Floors are those numbers rounded down: a regression below them fails.
SCALE_FREE_FLOOR = {"gatys": 20.0, "nspt": 8.0, "fast": 7.0, "quality": 7.0}
PAPER_FLOOR = {"gatys": 20.0, "nspt": 20.0, "fast": 20.0, "quality": 12.0}


@pytest.mark.parametrize("preset", sorted(PRESET_RUNS))
def test_every_preset_stylizes_with_the_package_index_weights(preset, real, real_weights, torch_net):
    import jaxstyle
    from jaxstyle.api.network import resolve
    from jaxstyle.config import make_config

    # As a user runs it: the loader picks the network (raw for the preset's own weights,
    # Gatys-normalised otherwise) and the preset's loss weights for it.
    _, _, cfg = resolve(None, real_weights, make_config(preset))
    kind = cfg.network
    assert kind == ("raw" if preset in ("nspt", "fast") else "normalized")
    c, s = load_png(CONTENT), load_png(STYLE)
    out = jaxstyle.stylize(c, s, weights=real_weights, preset=preset, size=128, **PRESET_RUNS[preset])
    assert out.shape == c.shape and np.isfinite(out).all()
    paper = paper_style_distance(torch_net, c, s) / paper_style_distance(torch_net, out, s)
    scale_free = style_distance(torch_net, c, s) / style_distance(torch_net, out, s)
    style_as_content = content_distance(torch_net, resize(s, c.shape[:2]), c)
    kept = content_distance(torch_net, out, c)
    print(f"\n{preset} ({kind}): style distance drops {paper:.1f}x (Gatys), {scale_free:.1f}x (scale-free); "
          f"content distance {kept:.4g} (style image: {style_as_content:.4g})")
    assert paper >= PAPER_FLOOR[preset]
    assert scale_free >= SCALE_FREE_FLOOR[preset]
    assert kept < style_as_content


# ----------------------------------------------------------------------------- (c) texture


def test_texture_matches_the_style_gram_statistics(real_weights, torch_net):
    from jaxstyle.api.texture import texture

    s = load_png(STYLE)
    out = texture(s, size=96, weights=real_weights, steps=60, seed=0)
    noise = np.random.default_rng(0).uniform(0, 1, out.shape).astype(np.float32)
    small = resize(s, out.shape[:2])
    # Measured: 0.103 against 2.58 for uniform noise at 96 px after 60 steps (25x closer).
    assert style_distance(torch_net, out, small) <= style_distance(torch_net, noise, small) / 20.0


# ----------------------------------------------------------------------------- convention independence


def fold_caffe_to_torchvision(arrays):
    """An exactly equivalent torchvision-convention network (conv1_1 absorbs BGR→RGB, ×255·std
    and the mean shift)."""
    k = np.asarray(arrays["conv1_1.kernel"], np.float64)[:, :, ::-1, :]
    offset = 255.0 * np.array(IMNET_MEAN) - np.array(CAFFE_MEAN_BGR)[::-1]
    out = dict(arrays)
    out["conv1_1.kernel"] = (k * (255.0 * np.array(IMNET_STD))[None, None, :, None]).astype(np.float32)
    out["conv1_1.bias"] = (arrays["conv1_1.bias"] + np.einsum("hwio,i->o", k, offset)).astype(np.float32)
    return out


def test_normalised_caffe_and_folded_torchvision_networks_agree(real):
    from types import SimpleNamespace

    from jaxstyle.model import normalize

    arrays, info = real
    folded = fold_caffe_to_torchvision(arrays)
    c = load_png(CONTENT)
    raw_c, raw_t = TorchVGG(arrays, "caffe"), TorchVGG(folded, "torchvision")
    f_c, f_t = raw_c(c, STYLE_LAYERS), raw_t(c, STYLE_LAYERS)
    # Same function (zero padding aside: the folded net pads with the ImageNet mean colour,
    # within 0.5/255 of Caffe's mean pixel), so only the interior is compared raw.
    np.testing.assert_allclose(f_t["relu1_1"][:, 1:-1, 1:-1].numpy(), f_c["relu1_1"][:, 1:-1, 1:-1].numpy(), rtol=1e-4, atol=1e-3)
    norm_c = normalize.normalized(arrays, info)
    norm_t = normalize.normalized(folded, SimpleNamespace(convention="torchvision", path=None))
    n_c, n_t = TorchVGG(norm_c, "caffe")(c, STYLE_LAYERS), TorchVGG(norm_t, "torchvision")(c, STYLE_LAYERS)
    for layer in STYLE_LAYERS:
        # Whole maps, relative in norm: the padding colour's 0.5/255 difference reaches every
        # position of the deep layers (measured with the features above).
        a, b = n_c[layer].numpy(), n_t[layer].numpy()
        assert np.linalg.norm(b - a) <= 2e-3 * np.linalg.norm(a), layer
        assert 0.05 < float(np.abs(a).mean()) < 20.0
    raw_gram = float(gram(f_c["relu4_1"]).abs().mean())
    norm_gram = float(gram(n_c["relu4_1"]).abs().mean())
    assert raw_gram / norm_gram > 1e3
