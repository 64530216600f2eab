"""Helpers shared by the tests (not fixtures, which are in conftest.py): tiny inputs, tiny
weights, and the independent PyTorch references that several test files compare against.

Test modules import this module, never each other.
"""

from __future__ import annotations

from pathlib import Path

import io

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from jaxstyle.model.vgg import build_vgg, conv_specs
from jaxstyle.model.weights import WeightsInfo, save_weights

# Narrow VGG19 for fast tests: same layers and names, few channels.
TINY_WIDTHS = (4, 8, 8, 8, 8)
BLOCKS19 = (2, 2, 4, 4, 4)

# Shallow layers compile in about half the time of the default five; batch tests use these
# options where they can, so the compiled steps are shared between tests.
LAYERS = dict(content_layers=("relu2_2",), style_layers=("relu1_1", "relu2_1"))
OPTS = dict(size=32, steps=4, **LAYERS)
CLI_OPTS = ["--size", "32", "--steps", "4", "--content-layers", "relu2_2", "--style-layers", "relu1_1,relu2_1"]


def write_image(path, h: int, w: int, seed: int = 0):
    """A smooth random RGB image (structure at several scales, like a photo)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    img = np.stack([np.sin(6 * xx + 3 * yy + p) for p in rng.uniform(0, 6, 3)], -1)
    img = 0.5 + 0.35 * img + 0.15 * rng.standard_normal((h, w, 3))
    Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8)).save(path)
    return path


# ------------------------------------------------------------------------ tiny weights


def tiny_net(seed: int = 0):
    """The narrow VGG19 (conftest's ``net`` fixture is this with seed 0)."""
    return build_vgg("vgg19", widths=TINY_WIDTHS, seed=seed)


def tiny_net_float64(seed: int):
    """The narrow VGG19 with float64 parameters; call inside ``jax.enable_x64(True)``."""
    import jax.numpy as jnp

    network = tiny_net(seed)
    for name, _, _ in conv_specs("vgg19", TINY_WIDTHS):
        conv = getattr(network, name)
        conv.kernel.set_value(jnp.asarray(conv.kernel[...], jnp.float64))
        conv.bias.set_value(jnp.asarray(conv.bias[...], jnp.float64))
    return network


def torch_conv_params(network) -> tuple[dict, dict]:
    """``({conv: OIHW kernel tensor}, {conv: bias tensor})`` of a narrow VGG19, for torch_vgg."""
    kernels = {n: torch.from_numpy(np.array(getattr(network, n).kernel[...]).transpose(3, 2, 0, 1).copy())
               for n, _, _ in conv_specs("vgg19", TINY_WIDTHS)}
    biases = {n: torch.from_numpy(np.array(getattr(network, n).bias[...])) for n in kernels}
    return kernels, biases


def net_arrays(network) -> dict[str, np.ndarray]:
    """``{conv.kernel: HWIO, conv.bias}`` of a built VGG19 of TINY_WIDTHS."""
    arrays = {}
    for name, _, _ in conv_specs("vgg19", TINY_WIDTHS):
        conv = getattr(network, name)
        arrays[f"{name}.kernel"] = np.asarray(conv.kernel[...])
        arrays[f"{name}.bias"] = np.asarray(conv.bias[...])
    return arrays


def tiny_weights_file(path, seed: int = 0) -> Path:
    """A safetensors file of the narrow VGG19 in jaxstyle's own layout, for ``--weights PATH``."""
    save_weights(path, net_arrays(tiny_net(seed)), WeightsInfo("vgg19", "torchvision", "torchvision", False, "tiny-test", ""))
    return Path(path)


def tiny_state_dict(widths=TINY_WIDTHS, seed=0) -> dict[str, np.ndarray]:
    """A narrow VGG19 in torchvision's layout: ``features.N.weight`` (OIHW) and ``.bias``."""
    rng = np.random.default_rng(seed)
    state, index, cin = {}, 0, 3
    for convs, width in zip(BLOCKS19, widths):
        for _ in range(convs):
            state[f"features.{index}.weight"] = (rng.standard_normal((width, cin, 3, 3)) * np.sqrt(2 / (9 * cin))).astype(np.float32)
            state[f"features.{index}.bias"] = np.zeros(width, np.float32)
            index, cin = index + 2, width  # conv, relu
        index += 1  # pool
    return state


def save_state(path: Path, state) -> Path:
    from safetensors.numpy import save_file

    save_file(state, str(path))
    return path


# ------------------------------------- PyTorch VGG reference (torchvision's layer layout)


# torchvision.models.vgg.cfgs: channel counts, "M" = max pool.
CFGS = {
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "vgg19": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}
# Fewer channels, same layout: TINY_WIDTHS, so compiled shapes are shared.
NARROW = dict(zip((64, 128, 256, 512), TINY_WIDTHS[:4]))
CAFFE_MEAN_BGR = np.array([103.939, 116.779, 123.68])
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406])
IMAGENET_STD = np.array([0.229, 0.224, 0.225])


def layout(model: str, narrow: bool):
    """[(paper name, kind, out channels)] in torchvision ``features`` order."""
    out, block, i = [], 1, 0
    for v in CFGS[model]:
        if v == "M":
            out.append((f"pool{block}", "pool", None))
            block, i = block + 1, 0
        else:
            i += 1
            width = NARROW[v] if narrow else v
            out += [(f"conv{block}_{i}", "conv", width), (f"relu{block}_{i}", "relu", None)]
    return out


def random_weights(model: str, narrow: bool, seed: int = 0):
    """{conv name: (OIHW weight, bias)}, He-normal weights and small random biases."""
    rng = np.random.default_rng(seed)
    weights, cin = {}, 3
    for name, kind, cout in layout(model, narrow):
        if kind == "conv":
            w = rng.standard_normal((cout, cin, 3, 3)) * np.sqrt(2.0 / (9 * cin))
            weights[name] = (w, 0.1 * rng.standard_normal(cout))
            cin = cout
    return weights


def ours(model, weights, **kwargs):
    arrays = {}
    for name, (w, b) in weights.items():
        arrays[f"{name}.kernel"] = w.transpose(2, 3, 1, 0).astype(np.float32)  # OIHW -> HWIO
        arrays[f"{name}.bias"] = b.astype(np.float32)
    return build_vgg(model, arrays, **kwargs)


class Scaled(nn.Module):
    def __init__(self, module, scale):
        super().__init__()
        self.module, self.scale = module, scale

    def forward(self, x):
        return self.module(x) * self.scale


def reference(model, weights, narrow, *, pooling="max", avg_scale=1.0, padding=lambda name: "zeros"):
    """torchvision's ``features`` Sequential (float64), with the given pooling and padding."""
    layers, cin = [], 3
    for name, kind, cout in layout(model, narrow):
        if kind == "conv":
            conv = nn.Conv2d(cin, cout, 3, padding=1, padding_mode=padding(name)).double()
            w, b = weights[name]
            with torch.no_grad():
                conv.weight.copy_(torch.from_numpy(w))
                conv.bias.copy_(torch.from_numpy(b))
            layers.append(conv)
            cin = cout
        elif kind == "relu":
            layers.append(nn.ReLU())
        else:
            layers.append(nn.MaxPool2d(2, 2) if pooling == "max" else Scaled(nn.AvgPool2d(2, 2), avg_scale))
    return nn.Sequential(*layers)


def run_reference(seq, x_nchw):
    """Output of every layer, by index."""
    outs, h = [], torch.from_numpy(x_nchw)
    with torch.no_grad():
        for layer in seq:
            h = layer(h)
            outs.append(h[0].numpy().transpose(1, 2, 0))  # CHW -> HWC
    return outs


def torchvision_input(x):
    return ((x - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1)[None]


def caffe_input(x):
    # Caffe preprocessing, done by hand: RGB [0,1] -> BGR [0,255] minus the mean pixel.
    return (x[..., ::-1] * 255.0 - CAFFE_MEAN_BGR).transpose(2, 0, 1)[None].copy()



# ----------------------- PyTorch re-statement of crowsonkb/style-transfer-pytorch's terms


class _SqrtmNSLyap(torch.autograd.Function):
    """Newton–Schulz square root with the Lyapunov backward, as crowsonkb's sqrtm.py."""

    @staticmethod
    def forward(ctx, a):
        z = _ns(a)
        ctx.save_for_backward(z)
        return z

    @staticmethod
    def backward(ctx, g):
        (z,) = ctx.saved_tensors
        nz = z.pow(2).sum().sqrt()
        a, q = z / nz, g / nz
        eye3 = 3 * torch.eye(z.shape[-1], dtype=z.dtype)
        for i in range(12):
            e = eye3 - a @ a
            q = (q @ e - a.T @ (a.T @ q - q @ a)) / 2
            if i < 11:
                a = a @ e / 2
        return q / 2


def _ns(a):
    na = a.pow(2).sum().sqrt()
    y, z = a / na, torch.eye(a.shape[-1], dtype=a.dtype)
    eye3 = 3 * z
    for _ in range(12):
        t = (eye3 - z @ y) / 2
        y, z = y @ t, t @ z
    return y * na.sqrt()


def torch_w2(feat, mean_s, srm_s):
    c = feat.shape[1]
    eye = torch.eye(c, dtype=feat.dtype)
    cov_s = srm_s - torch.outer(mean_s, mean_s) + 1e-4 * eye
    root_s = _ns(cov_s)
    mean = feat.mean([-2, -1])[0]
    srm = torch.einsum("chw,dhw->cd", feat[0], feat[0]) / (feat.shape[2] * feat.shape[3])
    cov = srm - torch.outer(mean, mean) + 1e-4 * eye
    cross = _SqrtmNSLyap.apply(root_s @ cov @ root_s)
    return torch.mean((mean - mean_s) ** 2) + torch.diagonal(cov_s + cov - 2 * cross).mean()


def torch_tv(x):
    x = F.pad(x, (1, 1, 1, 1), "replicate")
    s1, s2, s3, s4 = slice(1, -1), slice(2, None), slice(None, -1), slice(1, None)
    d1 = (x[..., s1, s2] - x[..., s1, s1]).pow(2).mean() / 3
    d2 = (x[..., s2, s1] - x[..., s1, s1]).pow(2).mean() / 3
    d3 = (x[..., s4, s4] - x[..., s3, s3]).pow(2).mean() / 12
    d4 = (x[..., s4, s3] - x[..., s3, s4]).pow(2).mean() / 12
    return 2 * (d1 + d2 + d3 + d4)


def torch_vgg(x, kernels, biases, wanted):
    """torchvision-layout VGG19 trunk, replicate padding in conv1_1, AvgPool2d(2)·2."""
    mean = torch.tensor([0.485, 0.456, 0.406], dtype=x.dtype)[:, None, None]
    std = torch.tensor([0.229, 0.224, 0.225], dtype=x.dtype)[:, None, None]
    h, out = (x - mean) / std, {}
    for b, n in enumerate((2, 2, 4, 4, 4), start=1):
        for i in range(1, n + 1):
            name = f"conv{b}_{i}"
            pad = "replicate" if name == "conv1_1" else "zeros"
            h = F.conv2d(F.pad(h, (1, 1, 1, 1), pad) if pad == "replicate" else h, kernels[name], biases[name],
                         padding=0 if pad == "replicate" else 1)
            h = F.relu(h)
            out[f"relu{b}_{i}"] = h
            if wanted <= out.keys():
                return out
        h = F.avg_pool2d(h, 2) * 2


# ------------------------------------------------------------------ one-scale problems
# What jaxstyle.stylize does for a single scale, step by step, for tests that look inside.


def load_inputs(content, styles, cfg):
    """(content, styles, init) float32 RGB [0, 1] at the run's one scale, as stylize reads them."""
    from jaxstyle.model.vgg import min_size
    from jaxstyle.plan import inputs
    from jaxstyle.plan.scales import schedule

    originals = inputs.read(content, styles, cfg)
    scale = schedule(*originals.shape, cfg, min_size(cfg.recipe.all_layers))[-1]
    at = inputs.at_scale(originals, scale, cfg, check=False)
    return at.content, at.styles, at.init


def prepare(net, content, styles, cfg, init_image=None, **extra_targets):
    """The problem of one content image (checked against the network, as stylize does)."""
    from jaxstyle.api import transfer
    from jaxstyle.plan import inputs

    inputs.check_size(content.shape, cfg.recipe, "content")
    for s in styles:
        inputs.check_size(s.shape, cfg.recipe, "style")
    init = inputs.initial_image(content.shape[:2], cfg, content, init_image)
    return transfer.problem(net, content, styles, cfg, init, **extra_targets)


def iterate(problem, cfg, **options):
    """The engine's loop over ``cfg.run.steps`` steps."""
    from jaxstyle.engine import loop

    return loop.iterate(problem, steps=cfg.run.steps, **options)


def single_targets(problem, index: int = 0):
    """The targets of one image of a problem (shared targets are held without a batch axis)."""
    import jax

    return problem.targets._replace(**{
        k: jax.tree.map(lambda a: a[index], v)
        for k, v in problem.targets._asdict().items() if v is not None and k not in problem.shared
    })


# ---------------------------------------------------------------- server tests


def png(seed: int, h: int = 40, w: int = 40) -> bytes:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    img = 0.5 + 0.3 * np.stack([np.sin(5 * xx + 4 * yy + p) for p in rng.uniform(0, 6, 3)], -1)
    img = np.clip(img + 0.1 * rng.standard_normal((h, w, 3)), 0, 1)
    buf = io.BytesIO()
    Image.fromarray((img * 255).astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def tiny_arrays(seed: int = 0) -> dict[str, np.ndarray]:
    """A narrow VGG19's parameters from numpy (He-scaled), which builds without JAX's
    per-layer random-init compiles."""
    from jaxstyle.model.vgg import conv_specs

    rng = np.random.default_rng(seed)
    arrays = {}
    for name, cin, cout in conv_specs("vgg19", TINY_WIDTHS):
        arrays[f"{name}.kernel"] = (rng.standard_normal((3, 3, cin, cout)) * np.sqrt(2 / (9 * cin))).astype(np.float32)
        arrays[f"{name}.bias"] = (0.01 * rng.standard_normal(cout)).astype(np.float32)
    return arrays


def start_server(db, weights: str, max_batch: int = 2):
    """A real ``jaxstyle serve`` process on 127.0.0.1 (a free port): (process, base URL, its
    stderr lines). stderr is drained by a thread so the server never blocks on a full pipe."""
    import os
    import re
    import subprocess
    import sys
    import threading
    import time

    env = {**os.environ, "JAXSTYLE_COMPILE_CACHE": "off"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "jaxstyle", "serve", "--host", "127.0.0.1", "--port", "0", "--db", str(db),
         "--weights", weights, "--max-batch", str(max_batch)],
        stderr=subprocess.PIPE, text=True, env=env)
    lines: list[str] = []
    deadline = time.time() + 180
    for line in proc.stderr:
        lines.append(line)
        m = re.search(r"serving on (http://127\.0\.0\.1:\d+)/", line)
        if m:
            threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True).start()
            return proc, m.group(1), lines
        if time.time() > deadline:
            break
    proc.kill()
    proc.wait()
    raise AssertionError("server did not start:\n" + "".join(lines))
